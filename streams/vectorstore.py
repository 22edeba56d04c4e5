"""One small vector-store interface with two Qdrant back ends behind it.

- :class:`EdgeVectorStore`: Qdrant's own engine in-process (``qdrant-edge-py``),
  persistent under a local path. The embedded default: 30-700x faster than
  qdrant-client's local mode (see ``../shared/STACK.md``).
- :class:`QdrantClientVectorStore`: ``qdrant-client`` against a Qdrant server
  (production), or its local mode (``location=":memory:"`` or a path) for tests.

Both keep one collection with a named vector per modality, point ids derived from
course ids (re-sending a course overwrites it), and the payload the ranking filters on. A search
with media vectors is one query of a prefetch per named vector (the ranking vector's and each
media modality's), fused by Qdrant with reciprocal rank fusion (RRF): candidates come from every
modality the learner has an interest in.
Calls are blocking: the worker runs them off the event loop.
"""

from __future__ import annotations

import functools
import logging
import shutil
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from online.catalogue import MODALITIES
from online.events import CourseContent

log = logging.getLogger(__name__)

#: Namespace for course point ids: uuid5(namespace, course_id) is stable across runs and stores.
COURSE_NAMESPACE = uuid.UUID("6f1c1d5e-3a0b-4f5e-9a51-2b8d6c7e0a11")
#: Points per page of a full scan.
PAGE = 1000
#: The named vector of each media modality's reduced vector (the encoder service's names).
MEDIA_VECTORS = {modality: f"{modality}_reduced" for modality in MODALITIES}
#: The rank constant of reciprocal rank fusion (Qdrant's default).
RRF_K = 60
#: The HNSW beam width of each nearest search (``hnsw_ef``). Qdrant's default is its index's
#: ``ef_construct`` (100), and it widens the beam to the search's limit, which grows with the
#: learner's history (``online.candidates.nearest_limit``). Over 100,000 courses a search for 60
#: courses at 64 costs about two thirds of one at 100 and finds the same nearest courses (text
#: recall@60 against an exact search 0.990 against 0.992, @10 1.0 both). A catalogue below the
#: engine's indexing threshold is searched exactly.
SEARCH_EF = 64
#: Payload fields with a keyword index: the ones queries filter on.
KEYWORD_FIELDS = ("course_id", "language", "level", "part_of", "skills", "prerequisites", "model_version")


@functools.lru_cache(maxsize=200_000)
def point_id(course_id: str) -> str:
    """The Qdrant point id of a course (cached: every candidate search names dozens).

    >>> point_id("cs101") == point_id("cs101") != point_id("cs102")
    True
    """
    return str(uuid.uuid5(COURSE_NAMESPACE, course_id))


@functools.lru_cache(maxsize=200_000)
def edge_point_id(course_id: str) -> int:
    """The embedded engine's point id of a course: the first 64 bits of :func:`point_id`. An int,
    because the engine parses a UUID string (and builds a ``uuid.UUID`` for each hit) at ten times
    the cost; a collision needs billions of courses.

    >>> edge_point_id("cs101") == int(point_id("cs101").replace("-", "")[:16], 16)
    True
    """
    return uuid.UUID(point_id(course_id)).int >> 64


@dataclass(frozen=True, slots=True)
class CoursePoint:
    """A course as stored: named vectors (float32, L2-normalised) and its payload."""

    course_id: str
    vectors: Mapping[str, np.ndarray]
    payload: Mapping[str, Any] = field(default_factory=dict)


def course_point(
    content: CourseContent, vectors: Mapping[str, np.ndarray], model_version: str, indexed_at: float | None
) -> CoursePoint:
    """A course as the worker stores it: its vectors, and the payload ranking reads and filters on.

    ``indexed_at`` (seconds) makes a course fresh for two weeks of event time; None: never fresh
    (a catalogue that was there before the log began).
    """
    payload = {
        "title": content.title,
        "level": content.level,
        "language": content.language,
        "part_of": content.part_of,
        "skills": content.skills,
        "prerequisites": content.prerequisites,
        "model_version": model_version,
        "indexed_at": indexed_at,
    }
    return CoursePoint(content.course_id, vectors, payload)


def media_of(point: CoursePoint) -> dict[str, np.ndarray]:
    """A point's reduced vector of each media modality it has, by modality."""
    return {modality: point.vectors[name] for modality, name in MEDIA_VECTORS.items() if name in point.vectors}


@dataclass(frozen=True, slots=True)
class Search:
    """One nearest-neighbour search: the ``limit`` courses nearest ``vector`` whose payload has
    every ``match`` value, never the courses in ``exclude``; with ``media`` (named vector -> query
    vector), the ``limit`` best of the RRF fusion of the nearest by each (see the module)."""

    vector: np.ndarray
    limit: int
    match: Mapping[str, str] = field(default_factory=dict)
    exclude: Collection[str] = ()
    media: Mapping[str, np.ndarray] = field(default_factory=dict)


class Hits(NamedTuple):
    """A search's hits, nearest first: their course ids, and each one's cosine to the search's
    vector (Qdrant normalises cosine vectors); ``nan`` for the hits of a fused search."""

    course_ids: list[str]
    scores: list[float]


class StoreUnavailable(RuntimeError):
    """The vector store is unreachable, timing out or overloaded: worth waiting for, unlike a bug."""


def is_outage(error: BaseException) -> bool:
    """Whether a store call failed because the Qdrant server is down, slow or overloaded.

    >>> from qdrant_client.http.exceptions import ResponseHandlingException
    >>> is_outage(ResponseHandlingException(ConnectionRefusedError(111, "Connection refused")))
    True
    >>> is_outage(KeyError("course_id"))
    False
    """
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(error, UnexpectedResponse):
        return error.status_code in (429, 502, 503, 504)
    return isinstance(error, (ResponseHandlingException, ConnectionError, TimeoutError))


class VectorStore(Protocol):
    def ensure_collection(self, dims: Mapping[str, int]) -> None:
        """Create the collection with one cosine named vector per entry, if it is missing."""

    def upsert(self, points: Sequence[CoursePoint]) -> None: ...

    def search(self, searches: Sequence[Search], using: str) -> list[Hits]:
        """The hits of every search (``using``: the named vector of :attr:`Search.vector`), in one
        batch of queries, nearest first. They carry no vectors or payloads: moving them out of the
        engine costs several times the search (see :meth:`points`)."""

    def points(self, course_ids: Sequence[str], using: str, also: Collection[str] = ()) -> dict[str, CoursePoint]:
        """The given courses that exist, with their ``using`` vector, those of ``also`` they have
        (whether or not the collection has such a vector), and their payload."""

    def payloads(self) -> Iterator[Mapping[str, Any]]:
        """Every course's payload (a full scan, page by page)."""

    def count(self) -> int: ...

    def close(self) -> None: ...


def _payload(point: CoursePoint) -> dict[str, Any]:
    return {**point.payload, "course_id": point.course_id}


def _hits(course_ids: list[str], scores: list[float], search: Search) -> Hits:
    """Hits, with no cosine for those of a fused search (an RRF score is no similarity)."""
    return Hits(course_ids, [float("nan")] * len(scores) if search.media else scores)


def _point(payload: Mapping[str, Any], vectors: Mapping[str, Sequence[float]]) -> CoursePoint:
    return CoursePoint(
        payload["course_id"], {name: np.asarray(v, dtype=np.float32) for name, v in vectors.items()}, payload
    )


class EdgeVectorStore:
    """Qdrant's embedded engine, one shard under ``path``.

    Every write goes through this object, so it keeps the payloads it has seen by point id:
    searches ask the engine for ids only (reading the payloads of a search's hits took most of its
    time: 1.5 ms against 0.3 ms for 150 hits), and a payload is read from the engine once per
    course and process (after a restart, at its first hit). Point ids are :func:`edge_point_id`;
    a shard written with UUID point ids (before 2026-12) is re-keyed when it is opened.

    ``qdrant-edge-py`` (0.9) holds the GIL for the whole of each call: another Python thread
    waits while it searches (over 100,000 courses, the worker's searches take 0.5 to 1 ms a list).
    """

    def __init__(self, path: Path, search_ef: int = SEARCH_EF) -> None:
        import qdrant_edge

        self._q = qdrant_edge
        self._params = qdrant_edge.SearchParams(hnsw_ef=search_ef)
        self._path = Path(path)
        self._shard: Any = None
        self._payloads: dict[int, dict[str, Any]] = {}
        if (self._path / "edge_config.json").exists() or any(self._path.glob("segments*")):
            self._shard = qdrant_edge.EdgeShard.load(str(self._path))
            first, _ = self._shard.scroll(qdrant_edge.ScrollRequest(limit=1))
            if first and not isinstance(first[0].id, int):
                self._rekey()

    def _rekey(self) -> None:
        """Copy a shard with UUID point ids into a new one with int ids, then swap them."""
        q, old = self._q, self._shard
        points, offset = [], None
        while True:
            records, offset = old.scroll(q.ScrollRequest(offset=offset, limit=PAGE, with_payload=True, with_vector=True))
            points += [_point(r.payload, r.vector) for r in records]
            if offset is None:
                break
        old.close()
        self._shard, path = None, self._path
        self._path = path.with_name(path.name + ".rekeyed")
        shutil.rmtree(self._path, ignore_errors=True)  # what an interrupted re-keying left
        self.ensure_collection({name: len(vector) for point in points for name, vector in point.vectors.items()})
        self.upsert(points)
        self.close()
        shutil.rmtree(path)
        self._path.rename(path)
        self._path = path  # the payloads cached while copying keep their (int) ids
        self._shard = q.EdgeShard.load(str(path))
        log.warning("re-keyed the %d points of %s to int point ids", len(points), path)

    def ensure_collection(self, dims: Mapping[str, int]) -> None:
        if self._shard is not None:
            return
        q = self._q
        self._path.mkdir(parents=True, exist_ok=True)
        config = q.EdgeConfig(
            vectors={name: q.EdgeVectorParams(size=dim, distance=q.Distance.Cosine) for name, dim in dims.items()}
        )
        self._shard = q.EdgeShard.create(str(self._path), config)
        for name in KEYWORD_FIELDS:
            self._shard.update(q.UpdateOperation.create_field_index(name, q.PayloadSchemaType.Keyword))

    def upsert(self, points: Sequence[CoursePoint]) -> None:
        q = self._q
        self._payloads.update((edge_point_id(p.course_id), _payload(p)) for p in points)
        self._shard.update(
            q.UpdateOperation.upsert_points(
                [
                    q.Point(
                        edge_point_id(p.course_id),
                        {name: vec.astype(np.float32).tolist() for name, vec in p.vectors.items()},
                        _payload(p),
                    )
                    for p in points
                ]
            )
        )

    def optimize(self) -> None:
        """Build the search index now rather than during the first queries (after a bulk load)."""
        if self._shard is not None:
            self._shard.optimize()

    def search(self, searches: Sequence[Search], using: str) -> list[Hits]:
        if self._shard is None or not searches:
            return [Hits([], []) for _ in searches]
        q = self._q
        values: dict[str, set[Any]] = {}
        for search in searches:
            for key, value in search.match.items():
                values.setdefault(key, set()).add(value)
        # a key whose searches ask for different values (a prerequisite) cannot be held by every point
        everywhere = self._held_by_every_point([key for key, asked in values.items() if len(asked) == 1])

        def request(search: Search) -> Any:
            must = [q.FieldCondition(key=k, match=q.MatchValue(v)) for k, v in search.match.items()
                    if everywhere.get(k) != v]
            must_not = [q.HasIdCondition({edge_point_id(c) for c in search.exclude})] if search.exclude else None
            where = q.Filter(must=must or None, must_not=must_not)
            nearest = {using: search.vector, **search.media}
            if not search.media:
                return q.QueryRequest(limit=search.limit, query=q.Query.Nearest(search.vector.astype(np.float32).tolist(),
                                      using=using), filter=where, with_payload=False, params=self._params)
            prefetches = [q.Prefetch(search.limit, query=q.Query.Nearest(vector.astype(np.float32).tolist(), using=name),
                                     filter=where, params=self._params) for name, vector in nearest.items()]
            return q.QueryRequest(limit=search.limit, query=q.Fusion.Rrf(k=RRF_K), prefetches=prefetches, filter=where,
                                  with_payload=False)

        results = self._shard.query_batch(q.QueryBatchRequest([request(search) for search in searches]))
        # not ``set - self._payloads.keys()``: that walks every cached payload (3 ms at 100k courses)
        unknown = {hit.id for hits in results for hit in hits if hit.id not in self._payloads}
        if unknown:
            self._payloads.update((r.id, r.payload) for r in self._shard.retrieve(list(unknown), True, False))
        payloads = self._payloads
        return [_hits([payloads[hit.id]["course_id"] for hit in hits], [hit.score for hit in hits], search)
                for search, hits in zip(searches, results)]

    def _held_by_every_point(self, keys: Collection[str]) -> dict[str, Any]:
        """Of the indexed payload ``keys``, those every stored point holds one same value of (the
        usual ``model_version``, a one-language catalogue's ``language``), and that value, from the
        payload index's counts. A match on it filters nothing, yet the engine would check it at
        every point it visits: about a third of a search's time."""
        q, stored = self._q, self._shard.info().points_count
        everywhere = {}
        for key in set(keys).intersection(KEYWORD_FIELDS):
            hits = self._shard.facet(q.FacetRequest(key, limit=2)).hits
            if len(hits) == 1 and hits[0].count == stored:  # any doubt keeps the filter
                everywhere[key] = hits[0].value
        return everywhere

    def points(self, course_ids: Sequence[str], using: str, also: Collection[str] = ()) -> dict[str, CoursePoint]:
        if self._shard is None or not course_ids:
            return {}
        names = [using, *also]  # all read: asking for a name the collection lacks is an error
        records = self._shard.retrieve([edge_point_id(c) for c in course_ids], True, True if also else [using])
        return {r.payload["course_id"]: _point(r.payload, {n: r.vector[n] for n in names if n in (r.vector or {})})
                for r in records}

    def payloads(self) -> Iterator[Mapping[str, Any]]:
        offset = None
        while self._shard is not None:
            records, offset = self._shard.scroll(self._q.ScrollRequest(offset=offset, limit=PAGE, with_payload=True))
            yield from (r.payload for r in records)
            if offset is None:
                return

    def count(self) -> int:
        return 0 if self._shard is None else self._shard.count(self._q.CountRequest(exact=True))

    def close(self) -> None:
        if self._shard is not None:
            self._shard.flush()
            self._shard.close()
            self._shard = None


class QdrantClientVectorStore:
    """``qdrant-client``: a Qdrant server by URL, or local mode by ``location``/``path``."""

    def __init__(
        self,
        collection: str,
        url: str | None = None,
        api_key: str | None = None,
        location: str | None = None,
        path: Path | None = None,
        search_ef: int = SEARCH_EF,
    ) -> None:
        from qdrant_client import QdrantClient, models

        self._models = models
        self._params = models.SearchParams(hnsw_ef=search_ef)
        self._collection = collection
        self._server = url is not None  # local mode ignores payload indexes (and warns)
        self._exists = False
        self._client = QdrantClient(url=url, api_key=api_key, location=location, path=str(path) if path else None)

    def ensure_collection(self, dims: Mapping[str, int]) -> None:
        m = self._models
        if self._has_collection():
            return
        self._client.create_collection(
            self._collection,
            vectors_config={name: m.VectorParams(size=dim, distance=m.Distance.COSINE) for name, dim in dims.items()},
        )
        for name in KEYWORD_FIELDS if self._server else ():
            self._client.create_payload_index(self._collection, name, m.PayloadSchemaType.KEYWORD)

    def upsert(self, points: Sequence[CoursePoint]) -> None:
        m = self._models
        self._client.upsert(
            self._collection,
            [
                m.PointStruct(
                    id=point_id(p.course_id),
                    vector={name: vec.astype(np.float32).tolist() for name, vec in p.vectors.items()},
                    payload=_payload(p),
                )
                for p in points
            ],
        )

    def search(self, searches: Sequence[Search], using: str) -> list[Hits]:
        if not searches or not self._has_collection():
            return [Hits([], []) for _ in searches]
        m = self._models

        def request(search: Search) -> Any:
            must = [m.FieldCondition(key=k, match=m.MatchValue(value=v)) for k, v in search.match.items()]
            must_not = [m.HasIdCondition(has_id=[point_id(c) for c in search.exclude])] if search.exclude else None
            where = m.Filter(must=must or None, must_not=must_not)
            if not search.media:
                return m.QueryRequest(query=search.vector.astype(np.float32).tolist(), using=using, limit=search.limit,
                                      filter=where, with_payload=["course_id"], params=self._params)
            nearest = {using: search.vector, **search.media}
            prefetches = [m.Prefetch(query=vector.astype(np.float32).tolist(), using=name, limit=search.limit,
                                     filter=where, params=self._params) for name, vector in nearest.items()]
            return m.QueryRequest(prefetch=prefetches, query=m.RrfQuery(rrf=m.Rrf(k=RRF_K)), limit=search.limit,
                                  filter=where, with_payload=["course_id"])

        responses = self._client.query_batch_points(self._collection, [request(search) for search in searches])
        return [_hits([hit.payload["course_id"] for hit in r.points], [hit.score for hit in r.points], search)
                for search, r in zip(searches, responses)]

    def points(self, course_ids: Sequence[str], using: str, also: Collection[str] = ()) -> dict[str, CoursePoint]:
        if not course_ids or not self._has_collection():
            return {}
        names = [using, *also]  # all read: asking for a name the collection lacks is an error
        records = self._client.retrieve(
            self._collection, [point_id(c) for c in course_ids], with_payload=True, with_vectors=True if also else [using]
        )
        return {r.payload["course_id"]: _point(r.payload, {n: r.vector[n] for n in names if n in (r.vector or {})})
                for r in records}

    def payloads(self) -> Iterator[Mapping[str, Any]]:
        offset = None
        while self._has_collection():
            records, offset = self._client.scroll(self._collection, limit=PAGE, offset=offset, with_payload=True)
            yield from (r.payload for r in records)
            if offset is None:
                return

    def _has_collection(self) -> bool:
        self._exists = self._exists or self._client.collection_exists(self._collection)
        return self._exists

    def count(self) -> int:
        if not self._has_collection():
            return 0
        return self._client.count(self._collection, exact=True).count

    def close(self) -> None:
        self._client.close()
