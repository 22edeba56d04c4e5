"""Step 6, publish: each list, as the contract's recommendation, serialised once and sent to
the recommendations topic.

The items come from the ranking already in the contract's shape; the document is built as
plain data and written with orjson, without a validation pass on the hot path (the contract
tests validate what the worker publishes against the JSON Schema).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import orjson
from faust.types import EventT, Message

from online.events import RankRequest, utcnow
from online.recommender import LearnerEvent
from streams import metrics
from streams.worker.app import recommendations
from streams.worker.course_index import course_index
from streams.worker.recent import recent_lists


def trigger(value: LearnerEvent | RankRequest, message: Message) -> dict[str, Any]:
    """The message a list answers, as the contract's ``Trigger``."""
    return {
        "event_id": value.event_id,
        "kind": value.kind,
        "event_time": value.event_time,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "ingested_at": datetime.fromtimestamp(message.timestamp, timezone.utc) if message.timestamp else None,
    }


def recommendation(
    value: LearnerEvent | RankRequest,
    message: Message,
    items: list[dict[str, Any]],
    policy: str,
    coalesced: Sequence[tuple[LearnerEvent, Message]] = (),
) -> dict[str, Any]:
    """The contract's ``Recommendation`` of a ranked list, as plain data."""
    return {
        "user_id": value.user_id,
        "generated_at": utcnow(),
        "trigger": trigger(value, message),
        "coalesced": [trigger(v, m) for v, m in coalesced],
        "items": items,
        "policy": policy,
        "model_version": course_index.model_version or "none",
    }


async def publish(event: EventT, document: dict[str, Any]) -> bytes:
    """Send a recommendation, keyed by learner; returns it as sent."""
    published = orjson.dumps(document)
    await recommendations.send(key=event.message.key, value=published)
    recent_lists.add(published)
    metrics.recommendations.labels(document["policy"]).inc()
    metrics.items_shown.labels(document["policy"]).inc(len(document["items"]))
    now = time.time()
    if event.message.timestamp:
        metrics.event_to_recommendation.observe(max(0.0, now - event.message.timestamp))
    for answered in document["coalesced"]:
        if answered["ingested_at"] is not None:
            metrics.event_to_recommendation.observe(max(0.0, now - answered["ingested_at"].timestamp()))
    return published
