"""The encoder service down: content is parked on the retry topic, never lost, and indexed
when the service returns; learner events keep flowing meanwhile."""

from __future__ import annotations

import pytest

from encoders.service import serve_in_background
from encoders.settings import EncoderSettings
from online.events import CourseIndexed, ParkedContent, Recommendation
from online.sources import oulad_catalogue
from streams.demo import SAMPLE, sample_events
from streams.embedded_broker import free_port
from tests.kafka_io import consume, produce
from tests.test_pipeline import new_pipeline

pytestmark = [pytest.mark.broker, pytest.mark.model]


class Nowhere:
    """An encoder URL on which nothing listens yet."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"


def test_content_parked_while_encoder_down_is_indexed_when_it_returns(broker, tmp_path) -> None:
    encoder = Nowhere()
    pipeline = new_pipeline(broker, encoder, tmp_path)
    pipeline.env.update({"COURSESTREAM_ENCODER_ATTEMPTS": "2", "COURSESTREAM_RETRY_INITIAL_S": "1",
                         "COURSESTREAM_RETRY_MAX_S": "2"})
    s = pipeline.settings
    courses = list(oulad_catalogue(SAMPLE))[:20]
    wanted = {c.course_id for c in courses}
    worker = pipeline.worker()
    try:
        produce(s.kafka_bootstrap_servers, s.topic_course_content,
                ((c.course_id.encode(), c.model_dump_json().encode()) for c in courses))
        parked = consume(s.kafka_bootstrap_servers, s.topic_content_retry,
                         lambda r: {p.content.course_id for p in r} >= wanted,
                         decode=lambda m: ParkedContent.model_validate_json(m.value), describe=worker.log)
        assert all("unavailable" in p.last_error for p in parked)

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
            retried = max(p.attempts for p in parked)
            assert retried >= 1

            probe = events[0].model_copy(update={"event_id": "after-recovery", "course_id": courses[0].course_id})
            pipeline.send_events([probe])
            after = consume(s.kafka_bootstrap_servers, s.topic_recommendations,
                            lambda r: any(x.trigger.event_id == "after-recovery" for x in r),
                            decode=lambda m: Recommendation.model_validate_json(m.value), describe=worker.log)
            assert next(x for x in after if x.trigger.event_id == "after-recovery").items
    finally:
        worker.stop()
