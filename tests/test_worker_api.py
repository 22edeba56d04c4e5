"""Two workers in one group split the partitions; both publish; either answers the read API
for any learner; the metrics endpoint exposes the named series with sensible values."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from online.events import Recommendation
from online.sources import oulad_catalogue
from streams.demo import SAMPLE, WorkerProcess, sample_events
from streams.embedded_broker import free_port
from tests.kafka_io import consume, produce
from tests.test_pipeline import new_pipeline

pytestmark = [pytest.mark.broker, pytest.mark.model]


def samples(url: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{url}/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(found: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in found.items() if n == name and set(labels.items()) <= set(ls))


def wait_ready(urls: list[str], workers: list[WorkerProcess], timeout_s: float = 90.0) -> None:
    """Until every worker says ready twice in a row a second apart (the group has settled)."""
    deadline, streak = time.monotonic() + timeout_s, 0
    while streak < 2:
        if time.monotonic() > deadline:
            raise TimeoutError("\n".join(w.log()[-3000:] for w in workers))
        try:
            ok = all(httpx.get(f"{url}/readyz").status_code == 200 for url in urls)
        except httpx.TransportError:
            ok = False
        streak = streak + 1 if ok else 0
        time.sleep(1.0)


def test_two_workers_share_partitions_and_answer_for_every_learner(broker, encoder_service, tmp_path) -> None:
    pipeline = new_pipeline(broker, encoder_service, tmp_path, partitions=4)
    s = pipeline.settings
    envs = [{**pipeline.env, "COURSESTREAM_WEB_PORT": str(free_port()),
             "COURSESTREAM_DATA_DIR": str(tmp_path / f"state{i}")} for i in range(2)]
    urls = [f"http://127.0.0.1:{env['COURSESTREAM_WEB_PORT']}" for env in envs]
    workers = [WorkerProcess(env, tmp_path / f"worker{i}.log").start() for i, env in enumerate(envs)]
    try:
        wait_ready(urls, workers)
        catalogue = list(oulad_catalogue(SAMPLE))
        pipeline.index(catalogue, workers[0])
        events = list(sample_events(600))
        pipeline.send_events(events)
        produce(s.kafka_bootstrap_servers, s.topic_learner_events, [(b"x", b"not json")])
        recs = consume(s.kafka_bootstrap_servers, s.topic_recommendations,
                       lambda r: {x.trigger.event_id for x in r} >= {e.event_id for e in events},
                       decode=lambda m: Recommendation.model_validate_json(m.value),
                       describe=lambda: workers[0].log()[-2000:] + workers[1].log()[-2000:])

        found = [samples(url) for url in urls]
        published = [total(f, "coursestream_recommendations_total") for f in found]
        assert all(p > 0 for p in published), f"both workers publish: {published}"
        assert sum(published) >= len(events)
        kinds = Counter(e.kind for e in events)
        for kind, count in kinds.items():
            assert sum(total(f, "coursestream_events_total", kind=kind) for f in found) >= count
        assert sum(total(f, "coursestream_courses_indexed_total") for f in found) == len(catalogue)
        assert sum(total(f, "coursestream_dead_letters_total", error_type="InvalidEvent") for f in found) == 1
        assert sum(total(f, "coursestream_event_to_recommendation_seconds_count") for f in found) >= len(events)
        assert sum(total(f, "coursestream_vector_store_seconds_count", operation="search") for f in found) > 0
        assert sum(total(f, "coursestream_encoder_calls_total", outcome="ok") for f in found) >= 1
        assert any(name == "coursestream_consumer_lag" for f in found for name, _ in f)

        last = {rec.user_id: rec for rec in recs}  # per learner, the output topic is in order
        per_user = Counter(e.user_id for e in events)
        for user in list(per_user)[:8]:
            for url in urls:  # either worker answers, whichever owns the learner
                answer = httpx.get(f"{url}/recommendations/{user}")
                assert answer.status_code == 200, answer.text
                assert Recommendation.model_validate_json(answer.content) == last[user]
                summary = httpx.get(f"{url}/profiles/{user}").json()
                assert summary["events"] == per_user[user]
                assert summary["recent_courses"] and summary["interests"]
                assert 0 < summary["mastery"]["overall"] < 1
        assert httpx.get(f"{urls[0]}/recommendations/nobody").status_code == 404
    finally:
        for worker in workers:
            worker.stop()
