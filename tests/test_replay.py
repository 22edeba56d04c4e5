"""`coursestream replay` produces a log into the learner-events topic, keyed and in order."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from online.events import parse_learner_event
from online.sources import write_log
from streams.demo import embedded_env, sample_events
from tests.kafka_io import PROJECT_ROOT, consume

pytestmark = pytest.mark.broker


def test_replay_sends_every_valid_event_keyed_by_user_in_per_learner_order(broker, tmp_path: Path) -> None:
    events = list(sample_events(500))
    log = tmp_path / "history.jsonl"
    write_log(events, log)
    with log.open("a") as extra:
        extra.write('{"kind": "click", "event_id": "broken"}\n')

    env = embedded_env(broker.bootstrap_servers, "http://127.0.0.1:9", tmp_path, app_id=f"r{uuid.uuid4().hex[:8]}")
    done = subprocess.run([sys.executable, "-m", "streams", "replay", str(log)], cwd=PROJECT_ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "sent 500 learner events; skipped 1 invalid rows" in done.stdout

    topic = env["COURSESTREAM_TOPIC_LEARNER_EVENTS"]
    received = consume(broker.bootstrap_servers, topic, lambda r: len(r) >= len(events),
                       decode=lambda m: (m.key.decode(), m.partition, parse_learner_event(m.value)))
    assert len(received) == len(events)
    partition_of: dict[str, int] = {}
    per_user_received = defaultdict(list)
    for key, partition, event in received:
        assert key == event.user_id
        assert partition_of.setdefault(key, partition) == partition  # one learner, one partition
        per_user_received[key].append(event)
    per_user_sent = defaultdict(list)
    for event in events:
        per_user_sent[event.user_id].append(event)
    assert per_user_received == per_user_sent
