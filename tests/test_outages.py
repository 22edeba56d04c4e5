"""Dependency outages: the worker neither crashes nor loses or skips an event while the vector
store or the broker is away, alerts in its log and metrics, and goes on when they return.
(The encoder service down: ``test_encoder_outage.py``.)"""

from __future__ import annotations

import os
import re
import signal
import time

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.tools.demo import sample_events
from streams.tools.embedded_broker import EmbeddedBroker
from streams.tools.processes import free_port
from tests.qdrant_server_stub import QdrantServerStub, error
from tests.test_pipeline import Pipeline, new_pipeline

pytestmark = [pytest.mark.broker, pytest.mark.model]


def metric(pipeline: Pipeline, name: str, labels: str) -> float | None:
    """A metric's value from the worker's ``/metrics`` (None while the worker does not answer)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{pipeline.env['COURSESTREAM_WEB_PORT']}/metrics", timeout=10).text
    except httpx.TransportError:
        return None
    found = re.search(rf"^{name}\{{{labels}\}} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def wait_for(condition, timeout_s: float, describe) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(describe())
        time.sleep(0.5)


def message_count(servers: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=servers)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    count = sum(consumer.end_offsets(partitions).values()) if partitions else 0
    consumer.close()
    return count


@pytest.mark.parametrize("down", ["refusing connections", "answering 503"])
def test_learner_events_wait_while_the_vector_store_is_down(broker, encoder_service, tmp_path, down: str) -> None:
    """A Qdrant server nobody answers on, or one that answers 503 to every call (a stand-in of
    its REST API: ``tests/qdrant_server_stub.py``)."""
    server = QdrantServerStub(lambda method, path, body: error(503, "Service Unavailable")) if "503" in down else None
    pipeline = new_pipeline(broker, encoder_service, tmp_path)
    s = pipeline.settings
    pipeline.env.update({"COURSESTREAM_VECTOR_STORE": "qdrant",
                         "COURSESTREAM_QDRANT_URL": server.url if server else f"http://127.0.0.1:{free_port()}",
                         "COURSESTREAM_RETRY_INITIAL_S": "0.5", "COURSESTREAM_RETRY_MAX_S": "2"})
    events = list(sample_events(30))
    worker = pipeline.worker()
    try:
        pipeline.send_events(events)
        down = 'dependency="vector-store"'
        wait_for(lambda: (metric(pipeline, "coursestream_dependency_failures_total", down) or 0) >= 4, 120, worker.log)
        assert metric(pipeline, "coursestream_dependency_up", down) == 0.0
        assert "vector store unavailable" in worker.log()
        assert worker.process.poll() is None
        # Nothing skipped, nothing dead-lettered: the events wait.
        assert message_count(s.kafka_bootstrap_servers, s.topic_recommendations) == 0
        assert message_count(s.kafka_bootstrap_servers, s.topic_dead_letter) == 0
        if server:
            assert server.requests, "the worker never asked the server"
    finally:
        worker.stop()
        if server:
            server.close()

    # The store is back (here: the embedded one): the same consumer group picks up every event.
    for name in ("COURSESTREAM_VECTOR_STORE", "COURSESTREAM_QDRANT_URL"):
        del pipeline.env[name]
    worker = pipeline.worker()
    try:
        recs = pipeline.recommendations(lambda r: {x.trigger.event_id for x in r} >= {e.event_id for e in events},
                                        worker)
        assert len({x.trigger.event_id for x in recs}) == len(events)
        assert message_count(s.kafka_bootstrap_servers, s.topic_dead_letter) == 0
    finally:
        worker.stop()


def test_the_worker_survives_a_broker_outage(encoder_service, tmp_path) -> None:
    events = list(sample_events(120))
    before, after = events[:60], events[60:]
    with EmbeddedBroker() as broker:
        pipeline = new_pipeline(broker, encoder_service, tmp_path)
        worker = pipeline.worker()
        try:
            pipeline.send_events(before)
            pipeline.recommendations(lambda r: {x.trigger.event_id for x in r} >= {e.event_id for e in before}, worker)
            os.kill(broker.pid, signal.SIGSTOP)  # unreachable for longer than the 6 s session
            try:
                time.sleep(15)
            finally:
                os.kill(broker.pid, signal.SIGCONT)
            pipeline.send_events(after)
            recs = pipeline.recommendations(
                lambda r: {x.trigger.event_id for x in r} >= {e.event_id for e in events}, worker, timeout_s=180)
            assert {x.trigger.event_id for x in recs} == {e.event_id for e in events}
            assert worker.process.poll() is None, "the worker stopped"
            assert not re.search(r"crashed|Traceback", worker.log()), worker.log()[-3000:]
        finally:
            worker.stop()
