"""Content that makes the encoder fail is dead-lettered with its reason after a bounded number of
failures, instead of being parked and retried for ever (a crash loop); content sent with it is
indexed; content the encoder refuses goes to the dead letters alone, not with its whole batch.

A real worker on the real encoder service, through a proxy that drops the connection without an
answer, as a crashing service does, whenever a request carries the poisoned course.
"""

from __future__ import annotations

import base64
import http.server
import threading

import httpx
import pytest

from online.events import CourseContent, CourseIndexed, DeadLetter, MediaRef, ParkedContent
from online.sources import oulad_catalogue
from streams.tools.demo import SAMPLE
from tests.kafka_io import consume, produce
from tests.test_pipeline import new_pipeline

pytestmark = [pytest.mark.broker, pytest.mark.model]


class CrashingProxy:
    """Forwards to the encoder, but closes the connection unanswered when a request mentions ``poison``."""

    def __init__(self, upstream: str, poison: bytes) -> None:
        self.crashes = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if poison in body:
                    proxy.crashes += 1
                    self.close_connection = True
                    return  # no answer: the connection just closes
                headers = {name: value for name, value in self.headers.items()
                           if name.lower() in ("authorization", "content-type")}
                answer = httpx.request(self.command, upstream + self.path, headers=headers, content=body, timeout=60)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_content_the_encoder_keeps_failing_on_is_dead_lettered_after_bounded_failures(
    broker, encoder_service, tmp_path
) -> None:
    proxy = CrashingProxy(encoder_service.url, b"poison-course")
    pipeline = new_pipeline(broker, proxy, tmp_path)
    max_failures = 3
    pipeline.env.update({"COURSESTREAM_CONTENT_MAX_FAILURES": str(max_failures), "COURSESTREAM_ENCODER_ATTEMPTS": "3",
                         "COURSESTREAM_RETRY_INITIAL_S": "0.2", "COURSESTREAM_RETRY_MAX_S": "0.5"})
    s = pipeline.settings
    good = list(oulad_catalogue(SAMPLE))[:3]
    poison = CourseContent(course_id="poison-course", title="A course the encoder dies on")
    not_allowed = CourseContent(course_id="by-path", title="A course with a path",
                                images=[MediaRef(path="/etc/hostname")])
    worker = pipeline.worker()
    try:
        produce(s.kafka_bootstrap_servers, s.topic_course_content,
                ((c.course_id.encode(), c.model_dump_json().encode()) for c in [*good[:2], poison, not_allowed, good[2]]))
        letters = consume(s.kafka_bootstrap_servers, s.topic_dead_letter,
                          lambda r: {"poison-course", "by-path"} <= {d.key_text for d in r},
                          decode=lambda m: Letter.from_message(m), describe=worker.log)
        indexed = consume(s.kafka_bootstrap_servers, s.topic_course_indexed,
                          lambda r: {n.course_id for n in r} >= {c.course_id for c in good},
                          decode=lambda m: CourseIndexed.model_validate_json(m.value), describe=worker.log)
        parked = consume(s.kafka_bootstrap_servers, s.topic_content_retry,
                         lambda r: sum(p.content.course_id == "poison-course" for p in r) >= max_failures - 1,
                         decode=lambda m: ParkedContent.model_validate_json(m.value), describe=worker.log)
    finally:
        worker.stop()
        proxy.close()
    assert {n.course_id for n in indexed} == {c.course_id for c in good}  # sent with it, indexed all the same
    by_course = {letter.key_text: letter.record for letter in letters}
    assert set(by_course) == {"poison-course", "by-path"}  # the others of its batch were not dead-lettered
    assert by_course["poison-course"].error_type == "EncoderFailed"
    assert f"failed {max_failures} times" in by_course["poison-course"].reason
    assert "not allowed" in by_course["by-path"].reason and by_course["by-path"].error_type == "EncoderRejected"
    assert [p.failures for p in parked if p.content.course_id == "poison-course"] == list(range(1, max_failures))
    assert proxy.crashes == max_failures  # and no more: it is not retried after that


class Letter:
    """A dead letter with its original key as text."""

    def __init__(self, record: DeadLetter) -> None:
        self.record = record
        self.key_text = base64.b64decode(record.key).decode() if record.key else ""

    @classmethod
    def from_message(cls, message) -> Letter:
        return cls(DeadLetter.model_validate_json(message.value))
