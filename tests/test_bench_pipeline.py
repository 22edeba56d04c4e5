"""`coursestream bench pipeline`, small: it runs end to end and what it measured is right (not how fast)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from online.events import ClickEvent, Recommendation, Trigger
from streams.tools.bench import (
    Answer, Phase, learner_copy, modalities, percentile, real_catalogue, real_events, scaled_catalogue,
)
from streams.vectorstore import CoursePoint
from tests.kafka_io import PROJECT_ROOT


def test_scaled_catalogue_keeps_the_real_courses_and_labels_the_copies() -> None:
    rng = np.random.default_rng(1)

    def unit(dim: int) -> np.ndarray:
        vector = rng.normal(size=dim).astype(np.float32)
        return vector / np.linalg.norm(vector)

    # copies carry the vectors the worker reads (the ranking one, the media ones), not the others
    real = [CoursePoint(f"c{i}", {"text": unit(384), "fused": unit(384), "image_reduced": unit(32),
                                  "video_reduced": unit(32)}, {"course_id": f"c{i}", "part_of": "p"}) for i in range(3)]
    catalogue = scaled_catalogue(real, 10, "text")
    assert [p.course_id for p in catalogue[:3]] == ["c0", "c1", "c2"]
    copies = catalogue[3:]
    assert len({p.course_id for p in catalogue}) == 10
    assert modalities(catalogue, "text") == ["text", "image", "video"]
    for copy in copies:
        original = real[[p.course_id for p in real].index(copy.payload["synthetic_copy_of"])]
        assert copy.payload["course_id"] == copy.course_id != original.course_id
        assert copy.payload["part_of"] == "p"
        assert set(copy.vectors) == {"text", "image_reduced", "video_reduced"}
        for name, vector in copy.vectors.items():  # each as near its original, whatever its size
            cosine = float(vector @ original.vectors[name])
            assert 0.7 < cosine < 0.999 and math.isclose(float(np.linalg.norm(vector)), 1.0, rel_tol=1e-5)
    text_only = [CoursePoint(p.course_id, {"text": p.vectors["text"]}, p.payload) for p in real]
    assert modalities(scaled_catalogue(text_only, 5, "text"), "text") == ["text"]


def test_every_real_course_shows_a_photograph_and_a_video(shared_data) -> None:
    courses = real_catalogue(shared_data)
    assert all(len(course.images) == 1 and course.video is not None for course in courses)
    assert len({course.images[0].data for course in courses}) == len({course.video.data for course in courses}) == 6


def test_learner_copies_remap_ids_and_keep_the_rest(shared_data) -> None:
    event = real_events(shared_data, 1)[0]
    copy = learner_copy(event, 3, "~m1")
    assert (copy.user_id, copy.event_id) == (f"{event.user_id}~L3", f"{event.event_id}~L3~m1")
    assert copy.model_dump(exclude={"user_id", "event_id"}) == event.model_dump(exclude={"user_id", "event_id"})


def test_a_coalesced_list_answers_its_trigger_and_each_event_it_names() -> None:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    events = [ClickEvent(event_id=f"e{i}", user_id="ann", course_id="c", action="open", event_time=start)
              for i in range(4)]

    def published(trigger: ClickEvent, *coalesced: ClickEvent) -> bytes:
        def named(e: ClickEvent) -> Trigger:
            return Trigger(event_id=e.event_id, kind=e.kind, event_time=e.event_time,
                           ingested_at=start + timedelta(seconds=int(e.event_id[1:])))
        return Recommendation(user_id="ann", generated_at=start, trigger=named(trigger),
                              coalesced=[named(e) for e in coalesced], items=[], policy="p",
                              model_version="m").model_dump_json().encode()

    phase = Phase(events, rate=None)
    phase.answers = [(10.0, answer) for raw in (published(events[2], events[0], events[1]), published(events[3]))
                     for answer in Answer.of_recommendation(0, raw)]
    phase.lists = 2
    assert sum(phase.check().values()) == 0
    assert [round(10.0 - answer.produced_at + start.timestamp()) for _, answer in phase.answers] == [10, 9, 8, 7]
    assert phase.figures()["events_per_list"] == 2.0
    phase.answers.append((11.0, Answer.of_recommendation(0, published(events[1]))[0]))
    assert phase.check()["duplicate"] == 1


def test_percentile() -> None:
    assert percentile(list(range(1, 101)), 99) == 99 and percentile([5.0], 50) == 5.0


@pytest.mark.broker
@pytest.mark.model
def test_small_benchmark_answers_every_event_once_and_reports_sane_figures(shared_data) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streams", "bench", "pipeline", "--events", "300", "--catalogues", "1000",
         "--learners", "150", "--loads", "100", "--load-seconds", "2", "--scale-load", "100"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    figures = json.loads(done.stdout)
    # every event, of every phase and pipeline, got exactly one recommendation naming it
    checks = figures["checks"]
    assert checks["events"] == 200 + 300 + 200 + 150 + 200
    assert checks["missing"] == checks["duplicate"] == checks["wrong_trigger"] == checks["unexpected"] == 0
    worker, ceiling, floor = figures["worker"], figures["ceiling"], figures["faust_floor"]
    for baseline in (ceiling, floor):  # both passed on every event of the run's phases exactly once
        assert baseline["checks"] == {"missing": 0, "duplicate": 0, "wrong_trigger": 0, "unexpected": 0}
        assert baseline["freshness"]["100/s"]["events"] == 200 and 0 < baseline["freshness"]["100/s"]["p50_ms"]
    assert ceiling["events"] == floor["events"] == worker["events"] == 300
    assert worker["events_per_list"] == 1.0 and not worker["coalesce_bursts"]
    for name in ("events_per_s", "sent_per_s"):
        assert worker[name] > 0 and ceiling[name] > 0 and floor[name] > 0
    assert floor["ratio_to_passthrough"] == pytest.approx(floor["events_per_s"] / ceiling["events_per_s"], abs=1e-3)
    assert worker["ratio_to_faust_floor"] == pytest.approx(worker["events_per_s"] / floor["events_per_s"], abs=1e-3)
    # CPU time comes in clock ticks (10 ms): 300 events through the bare pass-through may take less than one
    assert worker["cpu_ms_per_event"] > 0 and ceiling["cpu_ms_per_event"] >= 0
    assert worker["ratio_to_passthrough"] == pytest.approx(worker["events_per_s"] / ceiling["events_per_s"], abs=1e-3)
    assert 0 < worker["p50_ms"] <= worker["p99_ms"] <= worker["max_ms"]
    # the vector search's own time, read from the worker's metrics: some for every phase's lists
    for phase in (worker, figures["cost_growth"]["by_catalogue_size"]["1000"]):
        assert 0 < phase["vector_search_ms_per_call"] and 0 < phase["vector_search_ms_per_list"]
    assert "vector_search_ms_per_list" not in ceiling and "vector_search_ms_per_list" not in floor
    # and each step of the learner path, per event (a short phase's rows may be written after it ends)
    steps = worker["step_ms_per_event"]
    assert set(steps) == {"parse", "learn", "candidates", "rank", "publish", "write"} and steps["write"] >= 0
    assert min(steps[step] for step in ("parse", "learn", "candidates", "rank", "publish")) > 0
    assert "worker, saturated: ms an event by step" in done.stderr
    assert worker["catalogue"] == {**worker["catalogue"], "courses": 1000, "real": 433, "synthetic_copies": 567,
                                   "modalities": ["text", "image", "video"]}
    assert worker["rss_mb"] > 50 and worker["peak_rss_mb"] >= worker["rss_mb"]

    paced = figures["freshness"]["100/s"]
    assert paced["events"] == 200 and paced["offered_per_s"] == 100
    assert 0 < paced["p50_ms"] <= paced["p99_ms"]
    learners = figures["cost_growth"]["by_learners"]["150"]
    assert learners["events"] == 200 and learners["p50_ms"] > 0
    assert figures["cost_growth"]["by_catalogue_size"]["1000"]["courses"] == 1000

    # profile bytes with every modality on: learners' profiles hold image and video interests too
    profiles = figures["profiles"]
    assert profiles["learners"] >= 150  # the copies, besides the real learners
    assert profiles["catalogue_modalities"] == ["text", "image", "video"]
    assert 0 < profiles["mean_bytes"] <= profiles["max_bytes"] <= 2048
    assert set(profiles["media_interests"]) == {"image", "video"}
    assert all(0.5 * profiles["learners"] < n <= profiles["learners"] for n in profiles["media_interests"].values())
    assert "profile bytes (mean/max), text+image+video on" in done.stderr
    for row in ("pass-through (ceiling)", "Faust floor, saturated", "worker, saturated"):
        assert row in done.stderr
