"""The Faust app: learner events in, profiles updated, recommendations out; content indexed.

Data flow::

    learner-events --(update_profiles)--> profiles table (changelog) --> recommendations
    course-content --(index_courses)--> encoder service --> Qdrant
    anything malformed --> dead-letter (original bytes, topic/partition/offset, reason)

Learner-keyed topics and the profiles table share one partition count, so a learner's
events are processed in order by the one worker that owns the learner's profile.
Delivery is at-least-once; profiles skip events they already applied (see
``online.profile``), and every recommendation names its trigger event so subscribers
can drop a redelivered duplicate.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import TypeVar

import faust
import mode
import numpy as np
from faust.types import EventT, Message
from mode.utils.collections import LRUCache

from online.events import (
    CourseContent,
    CourseIndexed,
    DeadLetter,
    InvalidEvent,
    Recommendation,
    Trigger,
    parse_course_content,
    parse_learner_event,
    utcnow,
)
from online.profile import LearnerProfile
from online.ranking import POLICY, Candidate, rank
from streams.encoder_client import EncoderClient, EncoderRejected, EncoderUnavailable
from streams.settings import Settings
from streams.vectorstore import CoursePoint, EdgeVectorStore, QdrantClientVectorStore, VectorStore

log = logging.getLogger(__name__)
T = TypeVar("T")

settings = Settings()
if settings.kafka_embedded:
    from streams.embedded_broker import apply_tansu_workarounds

    apply_tansu_workarounds()

app = faust.App(
    settings.app_id,
    broker=settings.broker_urls(),
    broker_credentials=settings.broker_credentials(),
    store="rocksdb://" if settings.table_store == "rocksdb" else "memory://",
    tabledir=settings.data_dir / "tables",
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication_factor,
    broker_session_timeout=settings.kafka_session_timeout_s,
    broker_heartbeat_interval=settings.kafka_heartbeat_interval_s,
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
)


def _raw_topic(name: str) -> faust.TopicT:
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=settings.partitions
    )


learner_events = _raw_topic(settings.topic_learner_events)
course_content = _raw_topic(settings.topic_course_content)
recommendations = _raw_topic(settings.topic_recommendations)
dead_letters = _raw_topic(settings.topic_dead_letter)
course_indexed = _raw_topic(settings.topic_course_indexed)

#: user id (bytes) -> LearnerProfile.to_bytes()
profiles = app.Table(
    "profiles", key_type=bytes, value_type=bytes, partitions=settings.partitions
)


class CourseIndex(mode.Service):
    """The vector store and the encoder client, with a cache of course vectors.

    Store calls block, so they run on one dedicated thread: off the event loop, and one
    at a time, as the embedded engine wants.
    """

    #: Cached vectors are re-read after this long: another worker may have re-indexed them.
    VECTOR_TTL_S = 60.0

    def __init__(self, config: Settings, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.model_version = "none"
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="vector-store")
        self._store: VectorStore | None = None
        self._vectors: LRUCache[str, tuple[float, np.ndarray | None]] = LRUCache(limit=50_000)
        self.encoder = EncoderClient(
            config.encoder_url,
            token=config.encoder.token.get_secret_value() if config.encoder.token else None,
            timeout_s=config.encoder_timeout_s,
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

    async def _in_store(self, call: Callable[[VectorStore], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: call(self._open_store()))

    async def vector(self, course_id: str) -> np.ndarray | None:
        """The course's ranking vector, or None if it is not indexed."""
        cached = self._vectors.get(course_id)
        if cached is not None and time.monotonic() - cached[0] < self.VECTOR_TTL_S:
            return cached[1]
        using = self.config.ranking_vector
        vector = (await self._in_store(lambda s: s.vectors([course_id], using))).get(course_id)
        self._vectors[course_id] = (time.monotonic(), vector)
        return vector

    async def candidates(self, profile: LearnerProfile, limit: int) -> list[Candidate]:
        if profile.interest is None:
            return []
        interest, using, taken = profile.interest, self.config.ranking_vector, profile.taken
        return await self._in_store(lambda s: s.search(interest, using, limit, exclude=taken))

    async def index(self, contents: Sequence[CourseContent]) -> list[CoursePoint]:
        """Embed courses with the encoder service and upsert them: recommendable at once."""
        result = await self.encoder.embed(contents)
        points = [
            CoursePoint(
                content.course_id,
                embedding.vectors,
                {
                    "title": content.title,
                    "level": content.level,
                    "language": content.language,
                    "part_of": content.part_of,
                    "skills": content.skills,
                    "prerequisites": content.prerequisites,
                    "model_version": result.model_version,
                },
            )
            for content, embedding in zip(contents, result.embeddings, strict=True)
        ]
        dims = {name: len(vector) for name, vector in points[0].vectors.items()}

        def write(store: VectorStore) -> None:
            store.ensure_collection(dims)
            store.upsert(points)

        await self._in_store(write)
        self.model_version = result.model_version
        now = time.monotonic()
        for point in points:
            self._vectors[point.course_id] = (now, point.vectors[self.config.ranking_vector])
        return points

    async def on_stop(self) -> None:
        await self.encoder.aclose()
        if self._store is not None:
            await self._in_store(lambda s: s.close())
        self._executor.shutdown()


course_index = app.add_dependency(CourseIndex(settings))  # stopped with the app


async def dead_letter(message: Message, reason: str, error_type: str) -> None:
    """Park a message we cannot process, with its original bytes and why."""
    record = DeadLetter(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=base64.b64encode(message.key).decode() if message.key is not None else None,
        value=base64.b64encode(message.value or b"").decode(),
        reason=reason[:2000],
        error_type=error_type,
        failed_at=utcnow(),
    )
    log.warning("dead-lettered %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason[:200])
    await dead_letters.send(key=message.key, value=record.model_dump_json().encode())


def _trigger(event, message: Message) -> Trigger:  # type: ignore[no-untyped-def]
    return Trigger(
        event_id=event.event_id,
        kind=event.kind,
        event_time=event.event_time,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        ingested_at=datetime.fromtimestamp(message.timestamp, timezone.utc) if message.timestamp else None,
    )


@app.agent(learner_events)
async def update_profiles(stream: faust.StreamT) -> None:
    """Learner event -> profile (exactly once in effect) -> fresh recommendations."""
    event: EventT
    async for event in stream.events():
        message = event.message
        try:
            learner_event = parse_learner_event(message.value)
            if message.key != learner_event.user_id.encode():
                raise InvalidEvent("message key must be the user_id (learner topics are keyed by user)")
        except InvalidEvent as error:
            await dead_letter(message, str(error), "InvalidEvent")
            continue
        try:
            stored = profiles.get(message.key)
            profile = (
                LearnerProfile.from_bytes(stored)
                if stored
                else LearnerProfile(half_life_days=settings.interest_half_life_days)
            )
            vector = await course_index.vector(learner_event.course_id)
            if profile.learn_one(learner_event, vector, offset=message.offset):
                profiles[message.key] = profile.to_bytes()
            candidates = await course_index.candidates(profile, limit=settings.recommendations_k)
            recommendation = Recommendation(
                user_id=learner_event.user_id,
                generated_at=utcnow(),
                trigger=_trigger(learner_event, message),
                items=rank(profile, candidates, settings.recommendations_k),
                policy=POLICY,
                model_version=course_index.model_version,
            )
        except Exception as error:  # a bug or an outage must not stop the stream
            log.exception("failed to process %s", learner_event.event_id)
            await dead_letter(message, f"processing failed: {error!r}", type(error).__name__)
            continue
        await recommendations.send(key=message.key, value=recommendation.model_dump_json().encode())


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
        if not valid:
            continue
        try:
            points = await course_index.index([content for _, content in valid])
        except (EncoderUnavailable, EncoderRejected) as error:
            for message, _ in valid:
                await dead_letter(message, str(error), type(error).__name__)
            continue
        log.info("indexed %d courses", len(points))
        for point in points:
            notice = CourseIndexed(
                course_id=point.course_id,
                model_version=course_index.model_version,
                vectors=sorted(point.vectors),
                indexed_at=utcnow(),
            )
            await course_indexed.send(key=point.course_id.encode(), value=notice.model_dump_json().encode())
