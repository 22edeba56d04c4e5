"""``coursestream forget USER``: the learner's rows leave every per-learner table, the changelogs
get tombstones (or never get the rows, when they were not written yet), and neither a second
request nor a worker restarted on empty local state brings anything back."""

from __future__ import annotations

import time

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition
from typer.testing import CliRunner

from streams.cli import cli
from streams.tools.demo import sample_events
from tests.test_pipeline import Pipeline, new_pipeline

pytestmark = [pytest.mark.broker, pytest.mark.model]


def last_values(servers: str, topic: str) -> dict[bytes, bytes | None]:
    """The last value of each key on a topic (None: a tombstone)."""
    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, fetch_max_wait_ms=10)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    end = consumer.end_offsets(partitions)
    rows: dict[bytes, bytes | None] = {}
    while any(consumer.position(tp) < end[tp] for tp in partitions):
        for batch in consumer.poll(timeout_ms=200).values():
            rows.update((message.key, message.value) for message in batch)
    consumer.close()
    return rows


def answer(pipeline: Pipeline, path: str, want: int, timeout_s: float = 90.0) -> httpx.Response:
    """GET the worker's ``path`` until it answers ``want`` (the worker may still be starting)."""
    url = f"http://127.0.0.1:{pipeline.env['COURSESTREAM_WEB_PORT']}{path}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            found = httpx.get(url, timeout=10)
            if found.status_code == want:
                return found
        except httpx.TransportError:
            found = None
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: {found and found.status_code} after {timeout_s}s, not {want}")
        time.sleep(0.5)


def forget(pipeline: Pipeline, user: str, request_id: str) -> None:
    result = CliRunner().invoke(cli, ["forget", user, "--request-id", request_id], env=pipeline.env)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == request_id


def test_forget_removes_the_learner_for_good(broker, encoder_service, tmp_path) -> None:
    pipeline = new_pipeline(broker, encoder_service, tmp_path, partitions=1)
    s, servers = pipeline.settings, pipeline.settings.kafka_bootstrap_servers
    events = list(sample_events(60))
    leaving, staying = events[0].user_id, next(e.user_id for e in events if e.user_id != events[0].user_id)
    worker = pipeline.worker()
    try:
        pipeline.send_events(events)
        pipeline.recommendations(lambda r: {x.trigger.event_id for x in r} >= {e.event_id for e in events}, worker)
        answer(pipeline, f"/profiles/{leaving}", 200)

        forget(pipeline, leaving, "request-1")
        answer(pipeline, f"/profiles/{leaving}", 404)
        # No list kept: the learner is answered as a stranger is, with a cold start.
        assert answer(pipeline, f"/recommendations/{leaving}", 200).json()["cold_start"]
        answer(pipeline, f"/profiles/{staying}", 200)
        forget(pipeline, leaving, "request-2")  # idempotent: nothing left, nothing fails
        metrics = answer(pipeline, "/metrics", 200).text
        assert 'coursestream_forget_requests_total{outcome="deleted"} 1.0' in metrics
        assert 'coursestream_forget_requests_total{outcome="nothing-kept"} 1.0' in metrics
        assert "audit: forget request request-1 handled; removed rows of ['profiles', 'latest-recommendations', 'taken-courses']" in worker.log()
        assert leaving not in "".join(line for line in worker.log().splitlines() if "audit:" in line)
    finally:
        worker.stop()

    for table in ("profiles", "latest-recommendations", "taken-courses"):
        rows = last_values(servers, f"{s.app_id}-{table}-changelog")
        # a tombstone, or no record at all when the row was dropped before the worker wrote it
        assert rows.get(leaving.encode()) is None, f"the {table} changelog still holds the learner"
        assert rows[staying.encode()] is not None

    # A worker with no local state recovers its tables from the changelogs: the learner stays gone.
    pipeline.env["COURSESTREAM_DATA_DIR"] = str(tmp_path / "fresh-state")
    worker = pipeline.worker()
    try:
        answer(pipeline, f"/profiles/{staying}", 200, timeout_s=120)
        answer(pipeline, f"/profiles/{leaving}", 404)
    finally:
        worker.stop()
