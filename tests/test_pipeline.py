"""The streaming loop end to end: real broker process, real worker process, real models.

Catalogue and learner events are the OULAD sample that ships with the package (real
learners of module AAA 2013J).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from online.events import CourseContent, RankRequest, Recommendation
from online.policies import assign
from online.recommender import POLICIES, RERANKED
from online.sources import oulad_catalogue
from streams.tools.demo import SAMPLE, sample_events
from streams.tools.processes import WorkerProcess, embedded_env, settings_from
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.kafka_io import consume, produce

pytestmark = [pytest.mark.broker, pytest.mark.model]


@dataclass
class Pipeline:
    """Topics, settings and a worker of one isolated app on the shared broker."""

    env: dict[str, str]
    settings: Settings
    workdir: Path

    def worker(self) -> WorkerProcess:
        return WorkerProcess(self.env, self.workdir / "worker.log").start()

    def index(self, courses: list[CourseContent], worker: WorkerProcess) -> None:
        servers, s = self.settings.kafka_bootstrap_servers, self.settings
        produce(servers, s.topic_course_content, ((c.course_id.encode(), c.model_dump_json().encode()) for c in courses))
        consume(servers, s.topic_course_indexed, lambda r: len(r) >= len(courses), describe=worker.log)

    def send_events(self, events: list) -> None:
        produce(
            self.settings.kafka_bootstrap_servers,
            self.settings.topic_learner_events,
            ((e.user_id.encode(), e.model_dump_json().encode()) for e in events),
        )

    def recommendations(self, until, worker: WorkerProcess, timeout_s: float = 120.0) -> list[Recommendation]:
        return consume(
            self.settings.kafka_bootstrap_servers,
            self.settings.topic_recommendations,
            lambda records: until(records),
            timeout_s=timeout_s,
            decode=published,
            describe=worker.log,
        )


#: The contract's JSON Schema of a recommendation: the worker publishes lists without validating
#: them on its hot path, so every list a test reads is checked against it here.
RECOMMENDATION_SCHEMA = jsonschema.Draft202012Validator(
    json.loads((Path(__file__).resolve().parents[1] / "schemas" / "recommendation.json").read_text()))


def published(message) -> Recommendation:
    RECOMMENDATION_SCHEMA.validate(json.loads(message.value))
    return Recommendation.model_validate_json(message.value)


def new_pipeline(broker, encoder_service, workdir: Path, partitions: int = 2) -> Pipeline:
    env = embedded_env(broker.bootstrap_servers, encoder_service.url, workdir / "state",
                       app_id=f"t{uuid.uuid4().hex[:8]}", partitions=partitions)
    settings = settings_from(env)
    ensure_topics(settings)
    workdir.mkdir(parents=True, exist_ok=True)
    return Pipeline(env, settings, workdir)


@pytest.fixture(scope="module")
def catalogue() -> list[CourseContent]:
    return list(oulad_catalogue(SAMPLE))


@pytest.fixture(scope="module")
def running(broker, encoder_service, catalogue, tmp_path_factory):
    """One worker with the sample catalogue indexed, shared by the tests below; both policies (A/B)."""
    pipeline = new_pipeline(broker, encoder_service, tmp_path_factory.mktemp("running"))
    pipeline.env["COURSESTREAM_POLICIES"] = json.dumps(POLICIES)
    worker = pipeline.worker()
    try:
        pipeline.index(catalogue, worker)
        yield pipeline, worker
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def sample_learned(running) -> tuple[list, list[Recommendation]]:
    """The sample's first 400 events, sent once to the shared worker, and their recommendations:
    whichever test asks first sends them, so no test depends on another having run."""
    pipeline, worker = running
    events = list(sample_events(400))
    pipeline.send_events(events)
    recs = pipeline.recommendations(lambda r: {x.trigger.event_id for x in r} >= {e.event_id for e in events}, worker)
    return events, recs


def test_learner_events_come_out_as_recommendations(running, sample_learned, catalogue) -> None:
    events, recs = sample_learned

    known = {c.course_id for c in catalogue}
    by_trigger = {rec.trigger.event_id: rec for rec in recs}
    taken: dict[str, set[str]] = defaultdict(set)
    nonempty = 0
    for event in events:  # the sample is in per-learner event order
        taken[event.user_id].add(event.course_id)
        rec = by_trigger[event.event_id]
        assert rec.user_id == event.user_id
        ids = [item.course_id for item in rec.items]
        assert set(ids) <= known, "recommended a course that does not exist"
        assert not set(ids) & taken[event.user_id], "recommended a course the learner already took"
        assert len(ids) == len(set(ids))
        assert rec.policy == assign(event.user_id, POLICIES)
        scores = [item.score for item in rec.items if not item.explore]
        if rec.policy == RERANKED:  # the diverse policy orders by marginal relevance instead
            assert scores == sorted(scores, reverse=True)
        assert [item.rank for item in rec.items] == list(range(1, len(ids) + 1))
        assert all(item.reasons for item in rec.items)
        nonempty += bool(ids)
    assert nonempty >= 0.9 * len(events)
    assert {rec.policy for rec in recs} == set(POLICIES)


def test_coalesced_bursts_answer_every_event_once_with_the_burst_s_last_list(broker, encoder_service, catalogue,
                                                                             tmp_path) -> None:
    pipeline = new_pipeline(broker, encoder_service, tmp_path)
    pipeline.env["COURSESTREAM_COALESCE_BURSTS"] = "true"
    worker = pipeline.worker()
    try:
        pipeline.index(catalogue, worker)
        events = list(sample_events(400))  # per learner, in order: bursts
        pipeline.send_events(events)

        def answered(recs: list[Recommendation]) -> list[str]:
            return [t.event_id for rec in recs for t in [*rec.coalesced, rec.trigger]]

        recs = pipeline.recommendations(lambda r: set(answered(r)) >= {e.event_id for e in events}, worker)
    finally:
        worker.stop()
    assert sorted(answered(recs)) == sorted(e.event_id for e in events), "each event answered once"
    assert len(recs) < len(events)
    position = {e.event_id: i for i, e in enumerate(events)}
    for rec in recs:
        answers = [*rec.coalesced, rec.trigger]
        assert {events[position[t.event_id]].user_id for t in answers} == {rec.user_id}
        assert [t.offset for t in answers] == sorted(t.offset for t in answers), "the last event triggers"
        taken = {e.course_id for e in events[: position[rec.trigger.event_id] + 1] if e.user_id == rec.user_id}
        assert rec.items and not {item.course_id for item in rec.items} & taken


def batch_sizes(worker_env: dict[str, str], histogram: str = "coursestream_learner_batch_events") -> tuple[float, float]:
    """How many batches of learner events the worker took (or, with ``histogram``, wrote the
    rows of), and their mean size (from its metrics)."""
    text = httpx.get(f"http://127.0.0.1:{worker_env['COURSESTREAM_WEB_PORT']}/metrics", timeout=10).text
    samples = {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}
    count = samples[f"{histogram}_count"]
    return count, samples[f"{histogram}_sum"] / count


def written(worker_env: dict[str, str], at_least: float, timeout_s: float = 10.0) -> float:
    """How many times the worker wrote the rows of its learner batches, once it is ``at_least``
    (the write follows the lists it publishes by a moment)."""
    deadline = time.monotonic() + timeout_s
    while (writes := batch_sizes(worker_env, "coursestream_learner_write_events")[0]) < at_least:
        assert time.monotonic() < deadline, f"{writes} writes after {timeout_s}s, not {at_least}"
        time.sleep(0.1)
    return writes


def test_a_backlog_is_taken_in_full_batches_and_a_lone_event_at_once(broker, encoder_service, catalogue,
                                                                     tmp_path) -> None:
    pipeline = new_pipeline(broker, encoder_service, tmp_path)
    pipeline.env["COURSESTREAM_LEARNER_BATCH_SIZE"] = "50"
    # Only lag holds a batch (or the write of its rows) back, and for at most this long: an event
    # with nothing behind it must not wait
    pipeline.env["COURSESTREAM_LEARNER_BATCH_WAIT_MS"] = "600000"
    pipeline.env["COURSESTREAM_LEARNER_WRITE_INTERVAL_MS"] = "600000"
    worker = pipeline.worker()
    pipeline.index(catalogue, worker)
    worker.stop()
    events = list(sample_events(301))
    pipeline.send_events(events[:300])  # waiting for the worker: a backlog
    worker = pipeline.worker()
    try:
        def answered(events: list) -> Callable[[list[Recommendation]], bool]:
            return lambda recs: {r.trigger.event_id for r in recs} >= {e.event_id for e in events}

        pipeline.recommendations(answered(events[:300]), worker)
        batches, mean = batch_sizes(pipeline.env)
        assert batches <= 12 and mean >= 25, f"{batches} batches of {mean:.1f} events on average"
        # the rows of a backlog's batches are written together, once the worker caught up
        writes = written(pipeline.env, 1)
        assert writes < batches, f"{writes} writes for {batches} batches"
        pipeline.send_events(events[300:])
        pipeline.recommendations(answered(events), worker, timeout_s=60)
        assert batch_sizes(pipeline.env)[0] == batches + 1
        assert written(pipeline.env, writes + 1) == writes + 1  # caught up: at once
    finally:
        worker.stop()


def test_a_learner_with_no_events_gets_what_is_popular_in_their_context(running, sample_learned, catalogue) -> None:
    pipeline, worker = running
    events, _ = sample_learned
    url = f"http://127.0.0.1:{pipeline.env['COURSESTREAM_WEB_PORT']}"
    taken = Counter(e.course_id for e in events if e.kind == "click")
    answer = httpx.get(f"{url}/recommendations/newcomer", params={"context": catalogue[0].part_of}, timeout=30)
    assert answer.status_code == 200, answer.text
    cold = answer.json()
    assert cold["cold_start"] and len(cold["items"]) == pipeline.settings.recommendations_k
    exploited = [item for item in cold["items"] if not item["explore"]]
    assert exploited[0]["reasons"][0]["code"] == "popular_now"
    assert exploited[0]["course_id"] in {course for course, _ in taken.most_common(20)}


def test_a_learner_never_seen_and_without_a_context_gets_the_popular_courses_overall(running, catalogue) -> None:
    pipeline, worker = running
    events = list(sample_events(400))
    pipeline.recommendations(lambda r: {x.trigger.event_id for x in r} >= {e.event_id for e in events}, worker)
    url = f"http://127.0.0.1:{pipeline.env['COURSESTREAM_WEB_PORT']}"
    answer = httpx.get(f"{url}/recommendations/never-seen", timeout=30)
    assert answer.status_code == 200, answer.text  # never a 404
    cold = answer.json()
    assert cold["cold_start"] and cold["context"] is None and cold["user_id"] == "never-seen"
    assert len(cold["items"]) == pipeline.settings.recommendations_k
    titles = {c.course_id: c.title for c in catalogue}
    assert all(item["title"] == titles[item["course_id"]] for item in cold["items"])
    exploited = [item for item in cold["items"] if not item["explore"]]
    assert all(item["reasons"][0]["code"] == "popular_now" for item in exploited)
    takers = Counter(course for course, _ in {(e.course_id, e.user_id) for e in events})
    assert exploited[0]["course_id"] in {course for course, _ in takers.most_common(10)}


def test_a_rank_request_is_answered_with_exactly_its_candidates_ranked(running, catalogue) -> None:
    pipeline, worker = running
    learner, first = "rank-learner", next(sample_events(1)).user_id
    history = [e.model_copy(update={"event_id": f"rank-{e.event_id}", "user_id": learner})
               for e in sample_events(40) if e.user_id == first]
    taken = {e.course_id for e in history}
    shelf = [c.course_id for c in catalogue if c.course_id not in taken][:12]
    asked = RankRequest(event_id="shelf-1", user_id=learner, event_time=history[-1].event_time,
                        candidates=[*shelf, "no-such-course", history[0].course_id], k=len(shelf) + 2)
    top3 = asked.model_copy(update={"event_id": "shelf-2", "k": 3})
    pipeline.send_events([*history, asked, top3])

    recs = pipeline.recommendations(lambda r: {"shelf-1", "shelf-2"} <= {x.trigger.event_id for x in r}, worker)
    answers = {rec.trigger.event_id: rec for rec in recs if rec.trigger.event_id.startswith("shelf-")}
    whole = answers["shelf-1"]
    assert whole.user_id == learner and whole.trigger.kind == "rank"
    # every indexed candidate the learner has not taken, nothing else
    assert sorted(item.course_id for item in whole.items) == sorted(shelf)
    assert [item.rank for item in whole.items] == list(range(1, len(shelf) + 1))
    assert all(item.reasons for item in whole.items)
    if whole.policy == RERANKED:
        scores = [item.score for item in whole.items if not item.explore]
        assert scores == sorted(scores, reverse=True)
    assert len(answers["shelf-2"].items) == 3
    assert {item.course_id for item in answers["shelf-2"].items} <= set(shelf)
    # an answer is the learner's latest list; it changes no profile
    url = f"http://127.0.0.1:{pipeline.env['COURSESTREAM_WEB_PORT']}"
    latest = httpx.get(f"{url}/recommendations/{learner}", timeout=30).json()
    assert latest["trigger"]["event_id"] == "shelf-2"
    assert httpx.get(f"{url}/profiles/{learner}", timeout=30).json()["events"] == len(history)


BAD_MESSAGES = {
    "bad JSON": (b"u-bad", b'{"kind": "click", "event_id": '),
    "not an object": (b"u-bad", b"[1, 2, 3]"),
    "wrong type": (b"u-bad", json.dumps({"kind": "click", "event_id": "b1", "user_id": "u-bad", "course_id": "c",
                                         "event_time": "2024-05-01T10:00:00Z", "action": "open", "count": "many"}).encode()),
    "missing field": (b"u-bad", json.dumps({"kind": "quiz", "event_id": "b2", "user_id": "u-bad", "course_id": "c",
                                            "event_time": "2024-05-01T10:00:00Z", "quiz_id": "q"}).encode()),
    "negative duration": (b"u-bad", json.dumps({"kind": "video", "event_id": "b3", "user_id": "u-bad", "course_id": "c",
                                                "event_time": "2024-05-01T10:00:00Z", "video_id": "v",
                                                "watched_seconds": -5, "position_seconds": 1,
                                                "video_length_seconds": 60}).encode()),
    "unknown kind": (b"u-bad", json.dumps({"kind": "purchase", "event_id": "b4", "user_id": "u-bad"}).encode()),
    "key is not the user": (b"someone-else", json.dumps({"kind": "click", "event_id": "b5", "user_id": "u-bad",
                                                         "course_id": "c", "event_time": "2024-05-01T10:00:00Z",
                                                         "action": "open"}).encode()),
    "no key": (None, json.dumps({"kind": "click", "event_id": "b6", "user_id": "u-bad", "course_id": "c",
                                 "event_time": "2024-05-01T10:00:00Z", "action": "open"}).encode()),
    "rank request, no candidates": (b"u-bad", json.dumps({"kind": "rank", "event_id": "b7", "user_id": "u-bad",
                                                          "event_time": "2024-05-01T10:00:00Z",
                                                          "candidates": []}).encode()),
}


def test_malformed_events_are_dead_lettered_and_valid_ones_keep_flowing(running, catalogue) -> None:
    pipeline, worker = running
    s = pipeline.settings
    valid = [e.model_copy(update={"event_id": f"dlq-{e.event_id}", "user_id": f"dlq-{e.user_id}"})
             for e in sample_events(40)]
    mixed = []
    for i, (key, value) in enumerate(BAD_MESSAGES.values()):
        mixed.append((key, value))
        mixed.extend((e.user_id.encode(), e.model_dump_json().encode()) for e in valid[i * 5 : (i + 1) * 5])
    produce(s.kafka_bootstrap_servers, s.topic_learner_events, mixed)

    letters = consume(s.kafka_bootstrap_servers, s.topic_dead_letter, lambda r: len(r) >= len(BAD_MESSAGES),
                      describe=worker.log)
    assert len(letters) == len(BAD_MESSAGES)
    originals = {base64.b64decode(letter["value"]): letter for letter in letters}
    for name, (key, value) in BAD_MESSAGES.items():
        letter = originals[value]  # the original bytes are kept
        assert letter["topic"] == s.topic_learner_events, name
        assert letter["partition"] is not None and letter["offset"] is not None, name
        assert letter["reason"] and letter["error_type"] == "InvalidEvent", name
    assert "Invalid JSON" in originals[BAD_MESSAGES["bad JSON"][1]]["reason"]
    assert "count" in originals[BAD_MESSAGES["wrong type"][1]]["reason"]
    assert "score or correct" in originals[BAD_MESSAGES["missing field"][1]]["reason"]
    assert "watched_seconds" in originals[BAD_MESSAGES["negative duration"][1]]["reason"]
    assert "key" in originals[BAD_MESSAGES["key is not the user"][1]]["reason"]
    assert "candidates" in originals[BAD_MESSAGES["rank request, no candidates"][1]]["reason"]

    wanted = {e.event_id for e in valid}
    recs = pipeline.recommendations(lambda r: {x.trigger.event_id for x in r} >= wanted, worker)
    assert {rec.user_id for rec in recs if rec.trigger.event_id in wanted} == {e.user_id for e in valid}


def test_a_course_s_images_shape_the_lists_of_the_learners_who_took_it(broker, encoder_service, tmp_path) -> None:
    """Courses that say the same thing in words, half showing a cat, half a rocket (real photos):
    a learner who took a cat course is shown cat courses first, one who took a rocket course
    rocket courses, and the images are given as the reason. In text alone, the two are alike."""
    import numpy as np

    from online.events import ClickEvent
    from streams.tools.photos import crops, jpeg

    courses = [CourseContent(course_id=f"{theme}-{i}", title="An online course",
                             description="Short videos, readings and a quiz every week.",
                             images=[{"data": base64.b64encode(jpeg(view)).decode()}])
               for theme in ("chelsea", "rocket") for i, view in enumerate(crops(theme, 6, np.random.default_rng(1)))]
    pipeline = new_pipeline(broker, encoder_service, tmp_path)
    pipeline.env["COURSESTREAM_EXPLORE_SHARE"] = "0"
    worker = pipeline.worker()
    try:
        pipeline.index(courses, worker)
        events = [ClickEvent(event_id=f"{theme}-fan", user_id=f"{theme}-fan", course_id=f"{theme}-0", action="open",
                             event_time="2024-05-01T10:00:00Z") for theme in ("chelsea", "rocket")]
        pipeline.send_events(events)
        recs = pipeline.recommendations(lambda r: {x.trigger.event_id for x in r} >= {e.event_id for e in events},
                                        worker)
    finally:
        worker.stop()
    for rec in recs:
        theme = rec.user_id.removesuffix("-fan")
        top = [item.course_id for item in rec.items[:5]]
        assert all(course_id.startswith(theme) for course_id in top), (rec.user_id, top)
        assert "images_like_taken" in [reason.code for reason in rec.items[0].reasons], rec.items[0].reasons
        assert rec.items[0].features["image_known"] == 1.0
