"""The encoder service down or too slow: content is parked on the retry topic, retried with a
growing delay and parked again while the service stays down, never lost, and indexed when the
service is back; learner events keep flowing meanwhile.

The long version stalls the encoder for a minute: ``ENCODER_STALL_S=60 pytest tests/test_encoder_outage.py``.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from encoders.service import serve_in_background
from encoders.settings import EncoderSettings
from online.events import CourseContent, CourseIndexed, ParkedContent, Recommendation
from online.sources import oulad_catalogue
from streams.tools.demo import SAMPLE, sample_events
from streams.tools.processes import free_port
from tests.kafka_io import consume, produce
from tests.test_outages import message_count, metric, wait_for
from tests.test_pipeline import new_pipeline
from tests.test_worker_api import samples, total

pytestmark = [pytest.mark.broker, pytest.mark.model]


class Nowhere:
    """An encoder URL on which nothing listens yet."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"


def send_content_and_see_it_parked(pipeline, worker) -> tuple[list[CourseContent], list[ParkedContent]]:
    """Send 20 courses while the encoder cannot answer; wait until all are parked."""
    s = pipeline.settings
    courses = list(oulad_catalogue(SAMPLE))[:20]
    wanted = {c.course_id for c in courses}
    produce(s.kafka_bootstrap_servers, s.topic_course_content,
            ((c.course_id.encode(), c.model_dump_json().encode()) for c in courses))
    parked = consume(s.kafka_bootstrap_servers, s.topic_content_retry,
                     lambda r: {p.content.course_id for p in r} >= wanted,
                     decode=lambda m: ParkedContent.model_validate_json(m.value), describe=worker.log)
    assert all("unavailable" in p.last_error for p in parked)
    return courses, parked


def check_backoff(parks: list[tuple[ParkedContent, float]], initial_s: float, max_s: float) -> None:
    """Each course's parks, in order: attempts 1, 2, 3, ...; each parked with the delay
    ``min(max_s, initial_s * 2 ** (attempts - 1))`` (jittered by 0.8 to 1.2), and retried (parked
    again) only once that delay had passed. ``parks`` are (parked content, broker timestamp in s)."""
    slack_s = 0.3  # the broker's timestamp is taken a moment after the worker's clock
    by_course: dict[str, list[tuple[ParkedContent, float]]] = {}
    for parked, at in parks:
        by_course.setdefault(parked.content.course_id, []).append((parked, at))
    for course, seen in by_course.items():
        assert [p.attempts for p, _ in seen] == list(range(1, len(seen) + 1)), course
        for (parked, at), later in zip(seen, [*seen[1:], None]):
            planned = min(max_s, initial_s * 2 ** (parked.attempts - 1))
            delay = parked.retry_at.timestamp() - at
            assert 0.8 * planned - slack_s <= delay <= 1.2 * planned + slack_s, (course, parked.attempts, delay)
            if later is not None:
                assert later[1] >= parked.retry_at.timestamp() - slack_s, f"{course} retried before its delay"


def test_content_parked_while_encoder_down_is_indexed_when_it_returns(broker, tmp_path) -> None:
    encoder = Nowhere()
    pipeline = new_pipeline(broker, encoder, tmp_path)
    pipeline.env.update({"COURSESTREAM_ENCODER_ATTEMPTS": "2", "COURSESTREAM_RETRY_INITIAL_S": "1",
                         "COURSESTREAM_RETRY_MAX_S": "2"})
    s = pipeline.settings
    worker = pipeline.worker()
    try:
        courses, parked = send_content_and_see_it_parked(pipeline, worker)
        wanted = {c.course_id for c in courses}
        # While the encoder stays down, each course is retried and parked again, later each time.
        parks = consume(s.kafka_bootstrap_servers, s.topic_content_retry,
                        lambda r: {p.content.course_id for p, _ in r if p.attempts >= 3} >= wanted,
                        decode=lambda m: (ParkedContent.model_validate_json(m.value), m.timestamp / 1000),
                        describe=worker.log)
        check_backoff(parks, initial_s=1.0, max_s=2.0)

        # the parked content's age, which operators are alerted on, grows while it waits; a course
        # parked again keeps the time it was first parked
        url = f"http://127.0.0.1:{pipeline.env['COURSESTREAM_WEB_PORT']}"

        def parked_age() -> float:
            return total(samples(url), "coursestream_parked_content_age_seconds")

        wait_for(lambda: parked_age() > 0, 60, worker.log)
        again = consume(s.kafka_bootstrap_servers, s.topic_content_retry,
                        lambda r: any(p.attempts > 1 for p in r),
                        decode=lambda m: ParkedContent.model_validate_json(m.value), describe=worker.log)
        for course_id in {p.content.course_id for p in again if p.attempts > 1}:
            assert len({p.parked_at for p in again if p.content.course_id == course_id} - {None}) == 1

        events = list(sample_events(10))
        pipeline.send_events(events)
        recs = pipeline.recommendations(lambda r: {x.trigger.event_id for x in r} >= {e.event_id for e in events},
                                        worker)
        assert all(rec.items == [] for rec in recs)  # nothing is indexed yet, but events flow

        with serve_in_background(EncoderSettings(), port=encoder.port) as service:
            service.wait_ready()
            indexed = consume(s.kafka_bootstrap_servers, s.topic_course_indexed,
                              lambda r: {n.course_id for n in r} >= wanted,
                              decode=lambda m: CourseIndexed.model_validate_json(m.value), describe=worker.log)
            assert {n.course_id for n in indexed} == wanted

            probe = events[0].model_copy(update={"event_id": "after-recovery", "course_id": courses[0].course_id})
            pipeline.send_events([probe])
            after = consume(s.kafka_bootstrap_servers, s.topic_recommendations,
                            lambda r: any(x.trigger.event_id == "after-recovery" for x in r),
                            decode=lambda m: Recommendation.model_validate_json(m.value), describe=worker.log)
            assert next(x for x in after if x.trigger.event_id == "after-recovery").items
            wait_for(lambda: parked_age() == 0, 60, worker.log)
    finally:
        worker.stop()


class StallingProxy:
    """A TCP proxy in front of a service that answers nothing while ``stalled`` is set: a service
    too slow for its clients. Connections that arrive while stalled are held, then dropped."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.stalled = threading.Event()
        self.stalled.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self.stalled.is_set():
            while self.stalled.is_set():
                time.sleep(0.1)
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def close(self) -> None:
        self.stalled.clear()
        self.server.close()


def test_content_sent_while_the_encoder_is_too_slow_is_indexed_when_it_is_fast_again(
    broker, encoder_service, tmp_path
) -> None:
    stall_s = float(os.environ.get("ENCODER_STALL_S", "15"))
    proxy = StallingProxy(int(encoder_service.url.rsplit(":", 1)[1]))
    pipeline = new_pipeline(broker, proxy, tmp_path)
    pipeline.env.update({"COURSESTREAM_ENCODER_TIMEOUT_S": "2", "COURSESTREAM_ENCODER_ATTEMPTS": "2",
                         "COURSESTREAM_RETRY_INITIAL_S": "1", "COURSESTREAM_RETRY_MAX_S": "4"})
    s = pipeline.settings
    worker = pipeline.worker()
    try:
        stalled_at = time.monotonic()
        courses, _ = send_content_and_see_it_parked(pipeline, worker)
        wanted = {c.course_id for c in courses}
        events = list(sample_events(10))
        pipeline.send_events(events)
        pipeline.recommendations(lambda r: {x.trigger.event_id for x in r} >= {e.event_id for e in events}, worker)
        assert metric(pipeline, "coursestream_dependency_up", 'dependency="encoder"') == 0.0

        time.sleep(max(0.0, stall_s - (time.monotonic() - stalled_at)))
        proxy.stalled.clear()
        indexed = consume(s.kafka_bootstrap_servers, s.topic_course_indexed,
                          lambda r: {n.course_id for n in r} >= wanted,
                          decode=lambda m: CourseIndexed.model_validate_json(m.value), describe=worker.log)
        assert {n.course_id for n in indexed} == wanted
        wait_for(lambda: metric(pipeline, "coursestream_dependency_up", 'dependency="encoder"') == 1.0, 30, worker.log)
        assert worker.process.poll() is None
        assert message_count(s.kafka_bootstrap_servers, s.topic_dead_letter) == 0
    finally:
        worker.stop()
        proxy.close()
