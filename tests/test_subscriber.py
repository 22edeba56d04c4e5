"""The example subscriber validates against the schema and drops redelivered duplicates."""

from __future__ import annotations

import json
import uuid

import pytest

from streams.tools.processes import embedded_env, settings_from
from streams.subscriber import recommendations
from streams.topics import ensure_topics
from tests.kafka_io import produce

pytestmark = pytest.mark.broker


def rec(event_id: str, user: str = "u1") -> bytes:
    return json.dumps({
        "user_id": user, "generated_at": "2026-01-01T00:00:00Z", "policy": "p", "model_version": "m",
        "trigger": {"event_id": event_id, "kind": "click", "event_time": "2025-12-31T23:00:00Z"},
        "items": [{"course_id": "c1", "rank": 1, "score": 0.9,
                   "reasons": [{"code": "interest_similarity", "text": "close"}]}],
    }).encode()


def test_subscriber_validates_and_drops_duplicates(broker, tmp_path) -> None:
    settings = settings_from(embedded_env(broker.bootstrap_servers, "http://127.0.0.1:9", tmp_path,
                                          app_id=f"s{uuid.uuid4().hex[:8]}"))
    ensure_topics(settings)
    produce(settings.kafka_bootstrap_servers, settings.topic_recommendations,
            [(b"u1", rec("e1")), (b"u1", rec("e2")), (b"u1", rec("e1")), (b"u1", b'{"user_id": "u1"}'),
             (b"u1", b"not json"), (b"u1", rec("e3"))])
    invalid = []
    received = list(recommendations(settings, "example", on_invalid=lambda raw, why: invalid.append(why),
                                    idle_timeout_s=8))
    assert [r["trigger"]["event_id"] for r in received] == ["e1", "e2", "e3"]
    assert len(invalid) == 2 and any("required" in why for why in invalid)
    # The group committed its offsets: a restart resumes after what it read.
    produce(settings.kafka_bootstrap_servers, settings.topic_recommendations, [(b"u1", rec("e4"))])
    again = list(recommendations(settings, "example", idle_timeout_s=12))
    assert [r["trigger"]["event_id"] for r in again] == ["e4"]
