"""The Faust app: learner events in, profiles updated, recommendations out; content indexed.

Data flow::

    learner-events --(update_profiles)--> profiles table (changelog) --> recommendations
    rank request (on learner-events) --(update_profiles)--> its answer on recommendations
    course-content --(index_courses)--> encoder service --> Qdrant
    anything malformed --> dead-letter (original bytes, topic/partition/offset, reason)
    learner-events: forget request --(update_profiles)--> the learner's table rows deleted (tombstones)

Learner-keyed topics and the profiles table share one partition count, so a learner's
events are processed in order by the one worker that owns the learner's profile. The learner
agent takes them a batch at a time (:class:`LearnerWindow`: one candidate search for many
lists, each changed table row written once a window of batches).
Delivery is at-least-once; profiles skip events they already applied (see
``online.profile``), and every recommendation names its trigger event so subscribers
can drop a redelivered duplicate.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import random
import time
from collections.abc import Callable, Collection, Iterator, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import TypeVar

import faust
import mode
from faust.types import EventT, Message
from mode.utils.collections import LRUCache
from pydantic import ValidationError

from online.difficulty import sigmoid
from online.events import (
    DEAD_LETTER_KEEPS_BYTES,
    ClickEvent,
    CourseContent,
    CourseIndexed,
    DeadLetter,
    ForgetRequest,
    InvalidEvent,
    ParkedContent,
    QuizEvent,
    RankRequest,
    Recommendation,
    RecommendedItem,
    Trigger,
    VideoEvent,
    parse_course_content,
    parse_learner_message,
    utcnow,
    validation_reason,
)
from online.policies import assign
from online.popularity import DecayedPopularity
from online.prerequisites import PrerequisiteGraph
from online.profile import LearnerProfile
from online.recommender import DIVERSE, Candidate, LearnerEvent, Recommender
from streams import metrics
from streams.auth import Authenticator
from streams.batches import Unwritten, caught_up, take_ready
from streams.encoder_client import EncoderClient, EncoderRejected, EncoderUnavailable
from streams.faust_app import allow_batch_rows, create_app, raw_topic
from streams.faust_fixes import processing
from streams.replica import CatalogueReplica, point_to_bytes
from streams.settings import Settings
from streams.vectorstore import (
    CoursePoint,
    EdgeVectorStore,
    QdrantClientVectorStore,
    StoreUnavailable,
    VectorStore,
    candidates_for,
    course_point,
    is_outage,
)
from streams.web import create_api, serve_api

log = logging.getLogger(__name__)
T = TypeVar("T")
MODEL_VERSION_POLL_S = 30.0
#: How much wider the second candidate search is when the first leaves fewer than k.
WIDER = 5
#: The cyclic garbage collector's thresholds in a worker (see :func:`collect_garbage_less_often`).
GC_THRESHOLDS = (20_000, 20, 100)

settings = Settings()
app = create_app(settings)


def _raw_topic(name: str) -> faust.TopicT:
    return raw_topic(app, name, settings.partitions)


learner_events = _raw_topic(settings.topic_learner_events)
course_content = _raw_topic(settings.topic_course_content)
recommendations = _raw_topic(settings.topic_recommendations)
dead_letters = _raw_topic(settings.topic_dead_letter)
course_indexed = _raw_topic(settings.topic_course_indexed)
content_retry = _raw_topic(settings.topic_content_retry)
course_vectors = _raw_topic(settings.topic_course_vectors)

#: user id (bytes) -> LearnerProfile.to_bytes()
profiles = app.Table("profiles", key_type=bytes, value_type=bytes, partitions=settings.partitions)
#: user id (bytes) -> the latest Recommendation published for the learner (JSON), for the read API
latest_recommendations = app.Table(
    "latest-recommendations", key_type=bytes, value_type=bytes, partitions=settings.partitions
)
#: "partition:model:key" -> JSON state of the models a partition's learners share (question
#: difficulty, popularity, transitions, re-ranker, exploration; see ``online.recommender``).
#: Each partition learns from its own learners' events, so its state recovers exactly with it.
learned = app.Table("learned", key_type=str, partitions=settings.partitions)


#: A row the ``learned`` table does not have.
_ABSENT = object()


class PartitionTable(MutableMapping[str, object]):
    """One model's state of one partition, in the ``learned`` table, held in memory.

    A row is read from the table once; writes stay in memory until :meth:`flush`, which sends
    each changed row once however often the models changed it (re-ranking one event learns up to
    ``k + 1`` examples into one row). Only the worker that owns the partition writes its rows, so
    memory stays true to the table until the partition is revoked; then it is dropped.
    """

    def __init__(self, partition: int, model: str) -> None:
        self.prefix = f"{partition}:{model}:"
        self._rows: dict[str, object] = {}
        self._changed: set[str] = set()

    def __getitem__(self, key: str) -> object:
        value = self.get(key, _ABSENT)
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def get(self, key: str, default: object = None) -> object:
        """The row, or ``default``; without raising and catching KeyError as ``Mapping.get`` does
        (most candidates have no row in most models: ranking asks hundreds of times a list)."""
        if key not in self._rows:
            self._rows[key] = learned.get(self.prefix + key, _ABSENT)
        value = self._rows[key]
        return default if value is _ABSENT else value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _ABSENT) is not _ABSENT

    def __setitem__(self, key: str, value: object) -> None:
        self._rows[key] = value
        self._changed.add(key)

    def __delitem__(self, key: str) -> None:
        self.flush()
        del learned[self.prefix + key]
        self._rows[key] = _ABSENT

    def __iter__(self) -> Iterator[str]:
        self.flush()
        return (key.removeprefix(self.prefix) for key in learned if key.startswith(self.prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def flush(self) -> None:
        """Write the changed rows to the table (its changelog)."""
        for key in self._changed:
            learned[self.prefix + key] = self._rows[key]
        self._changed.clear()


#: partition -> its learning and ranking core, and the tables that hold its models' state
_recommenders: dict[int, tuple[Recommender, list[PartitionTable]]] = {}


def recommender(partition: int) -> Recommender:
    """The learning and ranking core of one partition of learners, its state in ``learned``."""
    if partition not in _recommenders:
        tables: list[PartitionTable] = []

        def table(model: str) -> PartitionTable:
            tables.append(PartitionTable(partition, model))
            return tables[-1]

        engine = Recommender.over(table, settings.explore_share, settings.reranker_learning_rate)
        _recommenders[partition] = (engine, tables)
    return _recommenders[partition][0]


def save_learned(partition: int) -> None:
    """Send what a partition's models learned to the ``learned`` table."""
    for table in _recommenders[partition][1]:
        table.flush()


@app.on_partitions_revoked.connect
async def drop_revoked_models(sender: faust.App, revoked: set, **kwargs: object) -> None:
    """Drop the in-memory state of revoked partitions: another worker may change it meanwhile."""
    for tp in revoked:
        if tp.topic == learner_events.get_topic_name():
            _recommenders.pop(tp.partition, None)


@dataclass(frozen=True)
class CandidateQuery:
    """A learner's candidate search: ``limit`` nearest their interest, and ``ids`` besides."""

    profile: LearnerProfile
    limit: int
    ids: Sequence[str] = ()
    with_vectors: bool = False


class CourseIndex(mode.Service):
    """The vector store and the encoder client, with a cache of course vectors.

    Store calls block, so they run on one dedicated thread: off the event loop, and one
    at a time, as the embedded engine wants. (The embedded engine holds the GIL while it
    searches, so there the loop still waits for a search; a Qdrant server's client does not.)

    Vectors of different encoder models are never compared: ``model_version`` is the
    encoder service's current version (from ``/v1/info`` and every embed response);
    queries only see courses embedded with it, and profiles built with another version
    are rebased (see ``LearnerProfile.rebase``).
    """

    #: Cached vectors are re-read after this long: another worker may have re-indexed them.
    VECTOR_TTL_S = 60.0

    def __init__(self, config: Settings, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.model_version: str | None = None
        self._graph: tuple[float, PrerequisiteGraph] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="vector-store")
        self._store: VectorStore | None = None
        self._vectors: LRUCache[str, tuple[float, CoursePoint | None]] = LRUCache(limit=50_000)
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
                self._store = EdgeVectorStore(c.data_dir / "qdrant-edge")
            else:
                self._store = QdrantClientVectorStore(
                    c.qdrant_collection,
                    url=c.qdrant_url,
                    api_key=c.qdrant_api_key.get_secret_value() if c.qdrant_api_key else None,
                    path=None if c.qdrant_url else c.data_dir / "qdrant-local",
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

    async def points(self, course_ids: Sequence[str]) -> dict[str, CoursePoint]:
        """Those courses that are indexed with the current model: ranking vector and payload."""
        now, found, missing = time.monotonic(), {}, []
        for course_id in course_ids:
            cached = self._vectors.get(course_id)
            if cached is not None and now - cached[0] < self.VECTOR_TTL_S:
                found[course_id] = cached[1]
            else:
                missing.append(course_id)
        if missing:
            using = self.config.ranking_vector
            points = await self._in_store("points", lambda s: s.points(missing, using))
            for course_id in missing:
                found[course_id] = points.get(course_id)
                self._vectors[course_id] = (now, found[course_id])
        version = self.model_version
        return {
            course_id: point
            for course_id, point in found.items()
            if point is not None and version in (None, point.payload.get("model_version"))
        }

    async def candidates(self, queries: Sequence[CandidateQuery]) -> list[list[Candidate]]:
        """Each query's candidates (see :func:`streams.vectorstore.candidates_for`), all in one call
        on the store thread; only vectors of the current model. Vectors, where asked, come from
        :meth:`points`: its cache answers most, and a search that returns them costs several times
        one that does not."""
        using, version = self.config.ranking_vector, self.model_version

        def search(store: VectorStore) -> list[list[Candidate]]:
            return [candidates_for(store, q.profile, using, q.limit, version, q.ids) for q in queries]

        found = await self._in_store("search", search)
        wanted = [candidates for q, candidates in zip(queries, found) if q.with_vectors]
        if wanted:
            points = await self.points(list({c.course_id for candidates in wanted for c in candidates}))
            for candidates in wanted:
                candidates[:] = [replace(c, vector=points[c.course_id].vectors[using]) if c.course_id in points else c
                                 for c in candidates]
        return found

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
        """Write points (the collection sized from their vectors) and refresh the cache with them."""
        dims = {name: len(vector) for name, vector in points[0].vectors.items()}

        def write(store: VectorStore) -> None:
            store.ensure_collection(dims)
            store.upsert(points)

        await self._in_store("upsert", write)
        now, using = time.monotonic(), self.config.ranking_vector
        for point in points:
            self._vectors[point.course_id] = (now, CoursePoint(point.course_id, {using: point.vectors[using]}, point.payload))

    async def on_stop(self) -> None:
        await self.encoder.aclose()
        if self._store is not None:
            await self._in_store("close", lambda s: s.close())
        self._executor.shutdown()


course_index = app.add_dependency(CourseIndex(settings))  # stopped with the app
#: With an embedded vector store, what other workers indexed reaches this one's store.
replica = app.add_dependency(CatalogueReplica(settings, course_index.upsert)) if settings.embedded_vector_store() else None


async def dead_letter(message: Message, reason: str, error_type: str) -> None:
    """Park a message we cannot process, with its original bytes and why."""
    value = message.value or b""
    key = message.key[:DEAD_LETTER_KEEPS_BYTES] if message.key is not None else None
    record = DeadLetter(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=base64.b64encode(key).decode() if key is not None else None,
        value=base64.b64encode(value[:DEAD_LETTER_KEEPS_BYTES]).decode(),
        value_bytes=len(value),
        value_kept_bytes=min(len(value), DEAD_LETTER_KEEPS_BYTES),
        reason=reason[:2000],
        error_type=error_type,
        failed_at=utcnow(),
    )
    metrics.dead_letters.labels(error_type).inc()
    # %r: a reason quotes the message (field names, values), which must not forge log lines.
    log.warning("dead-lettered %s[%s]@%s: %r", message.topic, message.partition, message.offset, reason[:200])
    await dead_letters.send(key=key, value=record.model_dump_json().encode())


def _trigger(event: ClickEvent | VideoEvent | QuizEvent | RankRequest, message: Message) -> Trigger:
    return Trigger(
        event_id=event.event_id,
        kind=event.kind,
        event_time=event.event_time,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        ingested_at=datetime.fromtimestamp(message.timestamp, timezone.utc) if message.timestamp else None,
    )


@dataclass(frozen=True)
class ListToRank:
    """A learner's fresh list to rank: by their partition's engine and their policy, at an event time."""

    engine: Recommender
    profile: LearnerProfile
    policy: str
    time: float
    seed: str
    event: EventT | None = None  # the stream event it answers: its partition's tables hold the engine's state


async def recommend(wanted: Sequence[ListToRank]) -> list[list[RecommendedItem]]:
    """Rank each learner's candidates, searched in one store call for all; when rules leave lists
    short, look once more, wider, for those."""
    k = settings.recommendations_k
    ids = []
    for w in wanted:
        with processing(w.event):
            ids.append(w.engine.candidate_ids(w.profile, k, w.time))
    lists: list[list[RecommendedItem]] = [[] for _ in wanted]
    short = list(range(len(wanted)))
    for limit in (k, WIDER * k):
        queries = [CandidateQuery(wanted[i].profile, limit, ids[i], wanted[i].policy == DIVERSE) for i in short]
        for i, candidates in zip(short, await course_index.candidates(queries)):
            w = wanted[i]
            with processing(w.event):
                lists[i] = w.engine.recommend(w.profile, candidates, k, w.policy, w.time, w.seed)
        short = [i for i in short if len(lists[i]) < k]
        if not short:
            break
    return lists


def coalesce(to_rank: Sequence[tuple[EventT, LearnerEvent, ListToRank]]
             ) -> tuple[list[tuple[EventT, LearnerEvent, ListToRank]], dict[bytes, list[tuple[EventT, LearnerEvent]]]]:
    """Each learner's last list of a segment, in order, and by learner the earlier events it also
    answers: their lists would be stale before anyone read them, and nothing learns from them (an
    event learns from the list published before its batch)."""
    last = {event.message.key: i for i, (event, _, _) in enumerate(to_rank)}
    earlier: dict[bytes, list[tuple[EventT, LearnerEvent]]] = {}
    for i, (event, value, _) in enumerate(to_rank):
        if last[event.message.key] != i:
            earlier.setdefault(event.message.key, []).append((event, value))
    return [to_rank[i] for i in sorted(last.values())], earlier


def last_shown(shown: Recommendation | None, profile: LearnerProfile) -> list[RecommendedItem]:
    """The last list shown to a learner, if none of their events was learned since: what the
    re-ranker learns from at their next event, once (as the offline harness's policy does).

    A list names the message it answered (a learner event, or a rank request) by its offset in the
    learner's partition; one that answered a message before the last event the profile applied is
    spent. When every event publishes a list, the one before each event is always fresh.
    """
    if shown is None or (shown.trigger.offset is not None and shown.trigger.offset < profile.applied_offset):
        return []
    return shown.items


async def load_profile(user: bytes) -> LearnerProfile:
    """A learner's profile (a new one for a newcomer), its interest in the current model's space."""
    stored = profiles.get(user)
    profile = LearnerProfile.from_bytes(stored) if stored else LearnerProfile(half_life_days=settings.interest_half_life_days)
    if course_index.model_version and profile.vector_version != course_index.model_version:
        using = settings.ranking_vector
        points = await course_index.points(profile.recent)
        profile.rebase([points[c].vectors[using] for c in profile.recent if c in points], course_index.model_version)
    return profile


async def answer(request: RankRequest, message: Message, profile: LearnerProfile) -> Recommendation:
    """Rank exactly the request's candidates (those indexed) for the learner, from their
    profile and their partition's state now; nothing is learned."""
    using = settings.ranking_vector
    points = await course_index.points(request.candidates)
    offered = [
        Candidate(course_id, profile.similarity(point.vectors[using]), point.payload, point.vectors[using])
        for course_id in request.candidates
        if (point := points.get(course_id)) is not None
    ]
    policy = assign(request.user_id, settings.policies)
    items = recommender(message.partition).recommend(
        profile, offered, request.k, policy, request.event_time.timestamp(), request.event_id
    )
    return Recommendation(
        user_id=request.user_id,
        generated_at=utcnow(),
        trigger=_trigger(request, message),
        items=items,
        policy=policy,
        model_version=course_index.model_version or "none",
    )


def forget(request: ForgetRequest, unwritten: Collection[str] = ()) -> None:
    """Delete the learner's rows from every per-learner table: the deletes are tombstones on the
    changelogs, so no recovery brings them back. Idempotent. ``unwritten`` names the tables whose
    row for the learner was dropped before it was written. (No vector-store point and no row of
    ``learned`` belongs to one learner: those hold courses and shared models.)"""
    key = request.user_id.encode()
    removed = [table.name for table in (profiles, latest_recommendations)
               if table.pop(key, None) is not None or table.name in unwritten]
    metrics.forget_requests.labels("deleted" if removed else "nothing-kept").inc()
    # The audit line names the request, not the learner: the requester keeps that link.
    log.warning("audit: forget request %s handled; removed rows of %s", request.request_id, removed or "no table")


LearnerMessage = LearnerEvent | RankRequest | ForgetRequest


class LearnerWindow(Unwritten):
    """The learner messages processed since the rows they change were last written: batches taken
    in order, each row they change written once a window (after each batch once the agent has
    caught up; while it lags, at most ``learner_write_interval_ms`` later: see ``streams.batches``).

    Events are learned one by one, in order. Lists are ranked a segment at a time, with one
    candidate search for all of a segment's lists: the learner events since the last ranking,
    then the rank requests after them (a segment ends before a learner event that follows a
    request: a request is answered from the state before it). So a list reflects its learner's
    profile just after the triggering event, and the partition's shared models as of the
    segment's end, at most ``learner_batch_size - 1`` events later. The list an event is taken
    to answer (what the bandit and the re-ranker learn from) is the learner's last one published
    before it: the lists of a burst of events in one batch are published together, after them.
    ``COURSESTREAM_LEARNER_BATCH_SIZE=1`` ranks and publishes each list before the next event is
    learned. Lists are published with their batch; profiles, latest lists and shared-model rows
    wait in memory (where the next batches and the read API find them) until the window is due,
    then are written and handed to the Kafka producer before Faust acks the window's events: a
    crash before then redelivers all of them, and none of their rows was written.
    """

    def __init__(self, interval: float) -> None:
        super().__init__(interval)
        self.profiles: dict[bytes, tuple[bytes, EventT]] = {}  # serialised, as the next event would read it
        self.shown: dict[bytes, tuple[Recommendation, bytes, EventT]] = {}
        self.partitions: dict[int, EventT] = {}
        self.to_rank: list[tuple[EventT, LearnerEvent, ListToRank]] = []
        self.requests: list[tuple[EventT, RankRequest]] = []

    async def process(self, events: Sequence[EventT]) -> None:
        """Dead-letter what does not parse, take the rest in order, rank what is left and publish it."""
        self.add(events)
        parsed: list[tuple[EventT, LearnerMessage]] = []
        for event in events:
            message = event.message
            try:
                value = parse_learner_message(message.value)
                if message.key != value.user_id.encode():
                    raise InvalidEvent("message key must be the user_id (learner topics are keyed by user)")
            except InvalidEvent as error:
                await dead_letter(message, str(error), "InvalidEvent")
                continue
            parsed.append((event, value))
        try:  # one store call for the batch's courses: learning then finds them in the cache
            await course_index.points(list({v.course_id for _, v in parsed if isinstance(v, LearnerEvent)}))
        except Exception:  # each event asks again, and is dead-lettered if it still fails
            log.exception("could not read the courses of a batch")
        for event, value in parsed:
            with processing(event):
                await self.take(event, value)
        await self.rank()

    async def take(self, event: EventT, value: LearnerMessage) -> None:
        """Queue a rank request; carry out a forget request; learn a learner event (its list queued)."""
        key = event.message.key
        if isinstance(value, RankRequest):
            self.requests.append((event, value))
            return
        if isinstance(value, ForgetRequest):
            await self.rank()
            dropped = [table.name for table, rows in ((profiles, self.profiles), (latest_recommendations, self.shown))
                       if rows.pop(key, None) is not None]
            forget(value, dropped)
            return
        try:
            if self.requests:
                await self.rank()
            await self.learn(event, value)
        except Exception as error:  # a bug or an outage must not stop the stream
            log.exception("failed to process %s", value.event_id)
            await dead_letter(event.message, f"processing failed: {error!r}", type(error).__name__)
            return
        metrics.events.labels(value.kind).inc()

    async def profile(self, user: bytes) -> LearnerProfile:
        """The learner's profile as this window has left it so far."""
        return LearnerProfile.from_bytes(self.profiles[user][0]) if user in self.profiles else await load_profile(user)

    async def learn(self, event: EventT, value: LearnerEvent) -> None:
        """Learn a learner event into their profile and their partition's models; their list is ranked later."""
        message = event.message
        profile = await self.profile(message.key)
        shown: list[RecommendedItem] = []
        if not profile.has_taken(value.course_id):  # only a first use learns from the last list: else spare reading it
            if message.key in self.shown:
                shown = last_shown(self.shown[message.key][0], profile)
            elif raw := latest_recommendations.get(message.key):
                shown = last_shown(Recommendation.model_validate_json(raw), profile)
        course = (await course_index.points([value.course_id])).get(value.course_id)
        engine = recommender(message.partition)
        using = settings.ranking_vector
        engine.learn_one(
            profile,
            value,
            course.vectors[using] if course else None,
            course.payload if course else {},
            offset=message.offset,
            shown=shown,
        )
        # Kept even when the event was redelivered and skipped: after a crash the local store can
        # be ahead of the changelog (rows written, not yet sent), and writing the row sends them.
        # Serialised now, as if written: the learner's next event learns from the same
        # (quantised) profile however the events fall into batches.
        self.profiles[message.key] = (profile.to_bytes(), event)
        self.partitions[message.partition] = event
        if settings.recommend_on_event:
            policy = assign(value.user_id, settings.policies)
            when = value.event_time.timestamp()
            self.to_rank.append((event, value, ListToRank(engine, profile, policy, when, value.event_id, event)))

    async def rank(self) -> None:
        """Rank the segment's lists and answer its requests; publish them in order."""
        to_rank, requests = self.to_rank, self.requests
        self.to_rank, self.requests = [], []
        earlier: dict[bytes, list[tuple[EventT, LearnerEvent]]] = {}
        if settings.coalesce_bursts:
            to_rank, earlier = coalesce(to_rank)
        if to_rank:
            try:
                lists = await recommend([wanted for _, _, wanted in to_rank])
            except Exception as error:  # a bug or an outage must not stop the stream
                log.exception("failed to rank the lists of %d events", len(to_rank))
                for event, _, _ in to_rank:
                    for failed, _ in [*earlier.get(event.message.key, ()), (event, None)]:
                        await dead_letter(failed.message, f"processing failed: {error!r}", type(error).__name__)
                lists = []
            for (event, value, wanted), items in zip(to_rank, lists):
                await self.publish(event, Recommendation(
                    user_id=value.user_id,
                    generated_at=utcnow(),
                    trigger=_trigger(value, event.message),
                    coalesced=[_trigger(v, e.message) for e, v in earlier.get(event.message.key, ())],
                    items=items,
                    policy=wanted.policy,
                    model_version=course_index.model_version or "none",
                ))
        for event, request in requests:
            with processing(event):
                try:
                    answered = await answer(request, event.message, await self.profile(event.message.key))
                except Exception as error:
                    log.exception("failed to process %s", request.event_id)
                    await dead_letter(event.message, f"processing failed: {error!r}", type(error).__name__)
                    continue
            metrics.events.labels(request.kind).inc()
            await self.publish(event, answered)

    async def publish(self, event: EventT, recommendation: Recommendation) -> None:
        published = recommendation.model_dump_json().encode()
        self.shown[event.message.key] = (recommendation, published, event)
        await recommendations.send(key=event.message.key, value=published)
        metrics.recommendations.inc()
        now = time.time()
        if event.message.timestamp:
            metrics.event_to_recommendation.observe(max(0.0, now - event.message.timestamp))
        for answered in recommendation.coalesced:
            if answered.ingested_at is not None:
                metrics.event_to_recommendation.observe(max(0.0, now - answered.ingested_at.timestamp()))

    def profile_row(self, user: bytes) -> bytes | None:
        """The learner's profile row, if changed since the last write."""
        return self.profiles[user][0] if user in self.profiles else None

    def shown_row(self, user: bytes) -> bytes | None:
        """The learner's latest list row, if published since the last write."""
        return self.shown[user][1] if user in self.shown else None

    async def write(self, stream: faust.StreamT) -> None:
        """Write each changed row once (shared models, profiles, latest lists), hand them to the
        Kafka producer, then ack the window's events."""
        for partition, event in self.partitions.items():
            with processing(event):
                save_learned(partition)
        for key, (row, event) in self.profiles.items():
            with processing(event):
                profiles[key] = row
        for key, (_, published, event) in self.shown.items():
            with processing(event):
                latest_recommendations[key] = published
        await app.producer.buffer.flush()  # the buffer holds one window's rows at most
        metrics.learner_write_events.observe(len(self.events))
        await self.acked(stream)
        self.profiles.clear()
        self.shown.clear()
        self.partitions.clear()


#: What the learner agent processed and has not written yet.
unwritten = LearnerWindow(settings.learner_write_interval_ms / 1000)


class ReadThrough:
    """A learner table as the read API sees it: a row not written yet first, as the agent reads it."""

    def __init__(self, table: faust.types.TableT, unwritten_row: Callable[[bytes], bytes | None]) -> None:
        self.name = table.name
        self._table = table
        self._unwritten_row = unwritten_row

    def get(self, key: bytes) -> bytes | None:
        row = self._unwritten_row(key)
        return row if row is not None else self._table.get(key)


@app.agent(learner_events)
async def update_profiles(stream: faust.StreamT) -> None:
    """Learner events, a batch at a time -> profiles (exactly once in effect) -> fresh
    recommendations; rank request -> its answer; forget request -> the learner's rows deleted."""
    if replica is not None:
        await replica.caught_up.wait()  # rank against the whole catalogue, as every worker does
    allow_batch_rows(app)
    async for events in take_ready(stream, settings.learner_batch_size, settings.learner_batch_wait_ms / 1000,
                                   idle=unwritten.interval or None):
        if events:
            metrics.learner_batch_events.observe(len(events))
            await unwritten.process(events)
        if unwritten.due(caught_up(stream, events)):
            await unwritten.write(stream)


async def _index_and_announce(contents: Sequence[CourseContent]) -> None:
    points = await course_index.index(contents)
    metrics.courses_indexed.inc(len(points))
    log.info("indexed %d courses", len(points))
    for point in points:
        if replica is not None:
            await course_vectors.send(key=point.course_id.encode(), value=point_to_bytes(point))
        notice = CourseIndexed(
            course_id=point.course_id,
            model_version=point.payload["model_version"],
            vectors=sorted(point.vectors),
            indexed_at=utcnow(),
        )
        await course_indexed.send(key=point.course_id.encode(), value=notice.model_dump_json().encode())


async def park(message: Message, content: CourseContent, parked: ParkedContent | None, error: EncoderUnavailable) -> None:
    """Put content the encoder cannot take now on the retry topic, with a growing, jittered delay;
    after ``content_max_failures`` failures of the encoder on it, to the dead-letter topic instead."""
    attempts = parked.attempts + 1 if parked else 1
    failures = (parked.failures if parked else 0) + error.failed_on_content
    if failures >= settings.content_max_failures:
        reason = f"the encoder failed {failures} times while handling this course (of {attempts} attempts): {error}"
        await dead_letter(message, reason, "EncoderFailed")
        return
    delay = min(settings.retry_max_s, settings.retry_initial_s * 2 ** (attempts - 1)) * random.uniform(0.8, 1.2)
    parked = ParkedContent(content=content, attempts=attempts, failures=failures,
                           retry_at=utcnow() + timedelta(seconds=delay), last_error=str(error)[:1000])
    metrics.courses_parked.inc()
    log.warning("parked course %s (attempt %d, retry in %.0fs): %s", content.course_id, attempts, delay, error)
    await content_retry.send(key=content.course_id.encode(), value=parked.model_dump_json().encode())


async def index_contents(valid: Sequence[tuple[Message, CourseContent]]) -> None:
    """Index a batch of content; one the encoder refuses is tried course by course, so that a bad
    course goes to the dead letters alone; what the encoder cannot take now is parked."""
    try:
        await _index_and_announce([content for _, content in valid])
    except EncoderRejected as error:
        if len(valid) > 1:
            for one in valid:
                await index_contents([one])
        else:
            await dead_letter(valid[0][0], str(error), type(error).__name__)
    except EncoderUnavailable as error:
        for message, content in valid:
            await park(message, content, None, error)


@app.agent(course_content)
async def index_courses(stream: faust.StreamT) -> None:
    """Course content -> encoder service -> Qdrant, a batch per encoder call."""
    async for events in stream.take_events(settings.content_batch_size, within=0.5):
        valid: list[tuple[Message, CourseContent]] = []
        for event in events:
            try:
                valid.append((event.message, parse_course_content(event.message.value)))
            except InvalidEvent as error:
                await dead_letter(event.message, str(error), "InvalidEvent")
        if valid:
            await index_contents(valid)


@app.agent(content_retry)
async def retry_parked_courses(stream: faust.StreamT) -> None:
    """Parked content -> wait until its retry time -> index, or park again (dead-lettered once the
    encoder failed on it ``content_max_failures`` times)."""
    async for event in stream.events():
        try:
            parked = ParkedContent.model_validate_json(event.message.value)
        except ValidationError as error:
            await dead_letter(event.message, validation_reason(error), "InvalidEvent")
            continue
        wait = (parked.retry_at - utcnow()).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            await _index_and_announce([parked.content])
        except EncoderRejected as error:
            await dead_letter(event.message, str(error), type(error).__name__)
        except EncoderUnavailable as error:
            await park(event.message, parked.content, parked, error)


@app.task
async def collect_garbage_less_often() -> None:
    """Run CPython's cyclic garbage collector less often than its defaults (700, 10, 10) do, and
    never over what the worker loaded at start (``gc.freeze``). Ranking allocates thousands of
    short-lived objects a list while the learned state grows: with the defaults, collections took
    15% of the worker's main-thread CPU at saturation (3.8 of 25.9 s; 0.4 s with these)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@app.task
async def follow_model_version() -> None:
    """Learn the encoder's model version at start, and notice when it is upgraded."""
    while not app.should_stop:
        try:
            await course_index.refresh_model_version()
            metrics.dependency_up.labels("encoder").set(1)
        except EncoderUnavailable as error:
            metrics.dependency_up.labels("encoder").set(0)
            metrics.dependency_failures.labels("encoder").inc()
            log.warning("encoder unreachable; model version %s kept: %s", course_index.model_version, error)
        await app.sleep(MODEL_VERSION_POLL_S)


async def describe_profile(user_id: str, profile: LearnerProfile) -> dict[str, object]:
    """A readable summary of a learner: activity, recent courses, what their interest is near."""
    [found] = await course_index.candidates([CandidateQuery(profile, limit=5)])
    near = [c for c in found if not profile.has_taken(c.course_id)][:5]
    knowledge = profile.knowledge
    return {
        "user_id": user_id,
        "events": profile.events,
        "courses_taken": profile.taken_count,
        "recent_courses": profile.recent[::-1],
        "interests": [{"course_id": c.course_id, "title": c.payload.get("title"), "similarity": round(c.similarity, 3)}
                      for c in near],
        "mastery": {
            "overall": round(sigmoid(knowledge.ability), 3),
            "answers": knowledge.answers,
            "by_skill": {skill: round(knowledge.mastery(skill), 3) for skill in reversed(knowledge.skills)},
        },
        "model_version": profile.vector_version,
    }


class _Taken:
    """A profile's taken courses as the container a prerequisite graph asks ``in`` of."""

    def __init__(self, profile: LearnerProfile) -> None:
        self.profile = profile

    def __contains__(self, course_id: object) -> bool:
        return isinstance(course_id, str) and self.profile.has_taken(course_id)


async def learning_path(profile: LearnerProfile, goal: str) -> list[dict[str, object]]:
    """The courses the learner still has to take to reach ``goal``, in order, with titles."""
    graph = await course_index.prerequisite_graph()
    return [{"course_id": c, "title": graph.title(c)} for c in graph.learning_path(goal, _Taken(profile))]


async def cold_start(user_id: str, context: str) -> dict[str, object]:
    """Before a learner's first event: what learners take up in ``context``, as this worker has
    seen it (the most recently active of its partitions' lists for that context).

    The lists are found by a scan of the local ``learned`` rows: outside a stream event, a
    keyed read of Faust's RocksDB store was seen to miss rows that the scan finds.
    """
    suffix = f":popularity:t:{context}"
    lists = [top for key, top in learned.items() if key.endswith(suffix)]
    top = max(lists, key=lambda entries: max(then for _, _, then in entries), default=[])
    state = {f"t:{context}": top, **{f"c:{course_id}": [score, then, then] for course_id, score, then in top}}
    engine = Recommender(popularity=DecayedPopularity(table=state), explore_share=settings.explore_share)
    profile, policy = LearnerProfile(context=context), assign(user_id, settings.policies)
    now = engine.popularity.latest(context) or time.time()  # event time: a replayed history is not old news
    [items] = await recommend([ListToRank(engine, profile, policy, now, user_id)])
    return {
        "user_id": user_id,
        "generated_at": utcnow().isoformat(),
        "cold_start": True,
        "items": [item.model_dump(mode="json") for item in items],
        "policy": policy,
        "model_version": course_index.model_version or "none",
    }


if settings.web_enabled:
    serve_api(app, create_api(app, ReadThrough(profiles, unwritten.profile_row),
                              ReadThrough(latest_recommendations, unwritten.shown_row),
                              describe_profile, learning_path, cold_start, auth=Authenticator.from_settings(settings)))
