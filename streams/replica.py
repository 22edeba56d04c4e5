"""Every worker's embedded vector store holds the whole catalogue, not only what it indexed.

An embedded store (Qdrant's edge engine, or qdrant-client's local mode) lives inside one worker
process. With several workers, each would hold only the courses whose content partitions it
consumed, and a learner's events would be ranked against part of the catalogue. So the worker
that indexes a course also publishes the point (vectors and payload) on the compacted
``course-vectors`` topic, and every worker with an embedded store follows that topic from its
start, upserting what others indexed. A worker ranks nothing before it has caught up with the
topic as it was when it started, so a restarted, new or rebalanced worker sees the same
catalogue as the others. With a Qdrant server all workers share one store and none of this runs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable, Sequence

import mode
import numpy as np
from aiokafka import AIOKafkaConsumer

from streams import metrics
from streams.settings import Settings
from streams.vectorstore import CoursePoint

log = logging.getLogger(__name__)


def point_to_bytes(point: CoursePoint) -> bytes:
    """A point as JSON: vectors as base64 float32, payload as is."""
    vectors = {name: base64.b64encode(np.asarray(v, dtype=np.float32).tobytes()).decode() for name, v in point.vectors.items()}
    return json.dumps({"course_id": point.course_id, "vectors": vectors, "payload": dict(point.payload)}).encode()


def point_from_bytes(raw: bytes) -> CoursePoint:
    """Inverse of :func:`point_to_bytes`.

    >>> point = CoursePoint("c1", {"text": np.array([0.6, 0.8], dtype=np.float32)}, {"title": "Algebra"})
    >>> copy = point_from_bytes(point_to_bytes(point))
    >>> copy.course_id, copy.vectors["text"].tolist(), copy.payload["title"]
    ('c1', [0.6000000238418579, 0.800000011920929], 'Algebra')
    """
    row = json.loads(raw)
    vectors = {name: np.frombuffer(base64.b64decode(v), dtype=np.float32) for name, v in row["vectors"].items()}
    return CoursePoint(row["course_id"], vectors, row["payload"])


class CatalogueReplica(mode.Service):
    """Follows ``course-vectors`` into this worker's embedded store via ``upsert``.

    ``caught_up`` is set once every partition has been read up to its high watermark as first
    seen (at once when the topic is empty).
    """

    def __init__(self, config: Settings, upsert: Callable[[Sequence[CoursePoint]], Awaitable[None]], **kwargs: object):
        super().__init__(**kwargs)
        self.config = config
        self.upsert = upsert
        self.caught_up = asyncio.Event()

    @mode.Service.task
    async def _follow(self) -> None:
        c = self.config
        consumer = AIOKafkaConsumer(  # no group: every worker reads every partition
            c.topic_course_vectors, bootstrap_servers=c.kafka_bootstrap_servers, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=100, **c.kafka_client_options(),
        )
        await consumer.start()
        try:
            while not self.should_stop:
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                points = []
                for message in (m for batch in batches.values() for m in batch if m.value):
                    try:
                        points.append(point_from_bytes(message.value))
                    except (ValueError, KeyError, TypeError) as error:  # not ours: skip it, say so
                        log.error("unreadable point at %s[%s]@%s: %r", message.topic, message.partition, message.offset, error)
                if points:
                    await self.upsert(points)
                    metrics.catalogue_replica_points.inc(len(points))
                if not self.caught_up.is_set() and await self._at_end(consumer):
                    log.info("catalogue replica caught up with %s", c.topic_course_vectors)
                    self.caught_up.set()
        finally:
            await consumer.stop()

    @staticmethod
    async def _at_end(consumer: AIOKafkaConsumer) -> bool:
        # The high watermark of a fetch response, not ListOffsets: right on every broker.
        assignment = consumer.assignment()
        if not assignment:
            return False
        for tp in assignment:
            highwater = consumer.highwater(tp)
            if highwater is None or await consumer.position(tp) < highwater:
                return False
        return True
