"""The course index: the vector store and the encoder client, with the catalogue ranking reads.

Store calls block, so they run on one dedicated thread: off the event loop, and one at a time,
as the embedded engine wants. (The embedded engine holds the GIL while it searches, so there
the loop still waits for a search; a Qdrant server's client does not.)

Ranking reads courses from :attr:`CourseIndex.catalogue` (``online.catalogue``): the ranking
vector and payload of every course this worker wrote, found or was asked about, as columns.
A course is read from the store once and again after ``VECTOR_TTL_S`` (another worker may have
re-indexed it); a course the store does not have is asked for again after the same time.

Vectors of different encoder models are never compared: ``model_version`` is the encoder
service's current version (from ``/v1/info`` and every embed response); searches and ranking
only see courses embedded with it, and profiles built with another version are rebased (see
``LearnerProfile.rebase``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import mode
import numpy as np

from online.catalogue import MODALITIES, Catalogue
from online.events import CourseContent
from online.prerequisites import PrerequisiteGraph
from streams import metrics
from streams.encoder_client import EncoderClient, EncoderRejected, EncoderUnavailable
from streams.replica import CatalogueReplica
from streams.settings import Settings
from streams.vectorstore import (
    MEDIA_VECTORS,
    CoursePoint,
    EdgeVectorStore,
    QdrantClientVectorStore,
    Search,
    StoreUnavailable,
    VectorStore,
    course_point,
    is_outage,
    media_of,
)
from streams.worker.app import app, settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class CourseIndex(mode.Service):
    """The vector store, the encoder client and the catalogue ranking reads (see the module)."""

    #: Courses read from the store are read again after this long: another worker may have re-indexed them.
    VECTOR_TTL_S = 60.0

    def __init__(self, config: Settings, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.model_version: str | None = None
        #: The encoder's named vectors and their sizes: a collection is created with all of them, so
        #: that a course with an image can follow one without.
        self.vector_dims: dict[str, int] = {}
        self.catalogue = Catalogue()
        self._graph: tuple[float, PrerequisiteGraph] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="vector-store")
        self._store: VectorStore | None = None
        self._absent: dict[str, float] = {}  # course id -> when the store did not have it
        self.encoder = EncoderClient(
            config.encoder_url,
            token=config.encoder.token.get_secret_value() if config.encoder.token else None,
            timeout_s=config.encoder_timeout_s,
            attempts=config.encoder_attempts,
        )

    def _open_store(self) -> VectorStore:
        if self._store is None:
            c = self.config
            if c.vector_store == "edge":
                self._store = EdgeVectorStore(c.data_dir / "qdrant-edge", c.vector_search_ef)
            else:
                self._store = QdrantClientVectorStore(
                    c.qdrant_collection,
                    url=c.qdrant_url,
                    api_key=c.qdrant_api_key.get_secret_value() if c.qdrant_api_key else None,
                    path=None if c.qdrant_url else c.data_dir / "qdrant-local",
                    search_ef=c.vector_search_ef,
                )
        return self._store

    async def _in_store(self, operation: str, call: Callable[[VectorStore], T]) -> T:
        """Run ``call`` on the store thread; while the store is down, wait and try again.

        Waiting (backoff up to ``retry_max_s``) rather than skipping keeps every event and its
        order: the stream stalls, its lag grows, and the log and metrics say why.
        """
        def timed() -> T:
            with metrics.vector_store_seconds.labels(operation).time():
                try:
                    return call(self._open_store())
                except Exception as error:
                    if is_outage(error):
                        raise StoreUnavailable(f"{type(error).__name__}: {error}") from error
                    raise

        delay = self.config.retry_initial_s
        while True:
            try:
                result = await asyncio.get_running_loop().run_in_executor(self._executor, timed)
            except StoreUnavailable as error:
                metrics.dependency_up.labels("vector-store").set(0)
                metrics.dependency_failures.labels("vector-store").inc()
                log.error("vector store unavailable, %s retried in %.1fs: %s", operation, delay, error)
                await asyncio.sleep(delay)
                delay = min(2 * delay, self.config.retry_max_s)
                continue
            metrics.dependency_up.labels("vector-store").set(1)
            return result

    async def refresh_model_version(self) -> None:
        """Ask the encoder service which models it runs (raises EncoderUnavailable if it is down)."""
        info = await self.encoder.info()
        self.model_version = info["model_version"]
        self.vector_dims = dict(info.get("vectors", {}))

    async def ensure(self, course_ids: Sequence[str]) -> None:
        """Read into the catalogue the courses it lacks or read too long ago, in one store call."""
        now, catalogue = time.monotonic(), self.catalogue
        stale = now - self.VECTOR_TTL_S
        rows = catalogue.rows(course_ids)
        outdated = np.flatnonzero((rows < 0) | (catalogue.loaded_at[rows] < stale))
        wanted = [c for c in dict.fromkeys(course_ids[i] for i in outdated.tolist())
                  if self._absent.get(c, -np.inf) < stale]
        if not wanted:
            return
        using = self.config.ranking_vector
        points = await self._in_store("points", lambda s: s.points(wanted, using, also=MEDIA_VECTORS.values()))
        for course_id in wanted:
            point = points.get(course_id)
            if point is None:
                self._absent[course_id] = now
            else:
                self._absent.pop(course_id, None)
                catalogue.put(course_id, point.vectors[using], point.payload, now, media=media_of(point))

    def row(self, course_id: str) -> int | None:
        """The course's catalogue row, if it is known and embedded with the current model."""
        row = self.catalogue.index.get(course_id)
        if row is None or self.model_version not in (None, self.catalogue.payloads[row].get("model_version")):
            return None
        return row

    def vector(self, row: int) -> np.ndarray | None:
        """A catalogue row's ranking vector (None: it has none)."""
        return self.catalogue.vectors[row] if self.catalogue.norms[row] > 0 else None

    def media(self, row: int) -> dict[str, np.ndarray]:
        """A catalogue row's reduced vector of each media modality it has."""
        catalogue = self.catalogue
        return {m: catalogue.media_vectors[m][row] for m in MODALITIES if catalogue.media_norms[m][row] > 0}

    async def search(self, searches: Sequence[Search]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each search's hits as catalogue rows, nearest first, and their cosines (one store call
        for all; hits the catalogue lacks are read into it)."""
        using = self.config.ranking_vector
        found = await self._in_store("search", lambda s: s.search(searches, using))
        await self.ensure([course_id for hits in found for course_id in hits.course_ids])
        return [(self.catalogue.rows(hits.course_ids), np.array(hits.scores, dtype=np.float64)) for hits in found]

    async def prerequisite_graph(self) -> PrerequisiteGraph:
        """The catalogue's prerequisite graph, with titles, re-read after ``VECTOR_TTL_S``."""
        if self._graph is None or time.monotonic() - self._graph[0] > self.VECTOR_TTL_S:
            def read(store: VectorStore) -> PrerequisiteGraph:
                graph = PrerequisiteGraph()
                for payload in store.payloads():
                    graph.titles[payload["course_id"]] = payload.get("title") or payload["course_id"]
                    for prerequisite in payload.get("prerequisites") or ():
                        graph.add(payload["course_id"], prerequisite)
                return graph

            self._graph = (time.monotonic(), await self._in_store("scroll", read))
        return self._graph[1]

    async def index(self, contents: Sequence[CourseContent]) -> list[CoursePoint]:
        """Embed courses with the encoder service and upsert them: recommendable at once."""
        try:
            result = await self.encoder.embed(contents)
        except (EncoderUnavailable, EncoderRejected) as error:
            metrics.encoder_calls.labels(type(error).__name__).inc()
            if isinstance(error, EncoderUnavailable):
                metrics.dependency_up.labels("encoder").set(0)
                metrics.dependency_failures.labels("encoder").inc()
            raise
        metrics.encoder_calls.labels("ok").inc()
        metrics.dependency_up.labels("encoder").set(1)
        if result.model_version != self.model_version:
            await self.refresh_model_version()
        indexed_at = time.time()
        points = [
            course_point(content, embedding.vectors, result.model_version, indexed_at)
            for content, embedding in zip(contents, result.embeddings, strict=True)
        ]
        await self.upsert(points)
        return points

    async def upsert(self, points: Sequence[CoursePoint]) -> None:
        """Write points (the collection sized from the encoder's vectors and theirs) and put them in
        the catalogue."""
        dims = {**self.vector_dims, **{name: len(vector) for point in points for name, vector in point.vectors.items()}}

        def write(store: VectorStore) -> None:
            store.ensure_collection(dims)
            store.upsert(points)

        await self._in_store("upsert", write)
        now, using = time.monotonic(), self.config.ranking_vector
        for point in points:
            self._absent.pop(point.course_id, None)
            self.catalogue.put(point.course_id, point.vectors[using], {**point.payload, "course_id": point.course_id}, now,
                               media=media_of(point))

    async def on_stop(self) -> None:
        await self.encoder.aclose()
        if self._store is not None:
            await self._in_store("close", lambda s: s.close())
        self._executor.shutdown()


course_index = app.add_dependency(CourseIndex(settings))  # stopped with the app
#: With an embedded vector store, what other workers indexed reaches this one's store.
replica = app.add_dependency(CatalogueReplica(settings, course_index.upsert)) if settings.embedded_vector_store() else None
