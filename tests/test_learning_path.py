"""Prerequisites through a running worker, over a real prerequisite graph: `coursestream path USER
GOAL`, and a learner with 500 courses taken."""

from __future__ import annotations

import csv
import os
import secrets
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from online.events import ClickEvent, CourseContent, RankRequest
from online.prerequisites import PrerequisiteGraph
from online.profile import LearnerProfile
from tests.kafka_io import PROJECT_ROOT
from tests.test_pipeline import new_pipeline

pytestmark = [pytest.mark.broker, pytest.mark.model]


def test_path_command_orders_what_is_left_over_the_real_graph(shared_data, broker, encoder_service, tmp_path) -> None:
    prereqs = shared_data / "prereqs"
    graph = PrerequisiteGraph.from_csv(prereqs / "cs_courses.csv", prereqs / "cs_edges.csv")
    goal = max(sorted(graph.titles), key=lambda c: len(graph.learning_path(c)))
    full = graph.learning_path(goal)
    assert len(full) >= 5
    courses = [CourseContent(course_id=c, title=graph.title(c), prerequisites=sorted(graph.prerequisites.get(c, ())))
               for c in full]

    pipeline = new_pipeline(broker, encoder_service, tmp_path)
    token = secrets.token_hex(32)
    pipeline.env["COURSESTREAM_WEB_TOKEN"] = token  # the command sends it
    worker = pipeline.worker()
    try:
        pipeline.index(courses, worker)
        done = [c for c in full if not graph.prerequisites.get(c)][:2]  # two courses that need nothing
        pipeline.send_events([
            ClickEvent(event_id=f"done-{c}", user_id="ada", course_id=c, action="complete",
                       event_time=datetime(2024, 1, 1, tzinfo=timezone.utc)) for c in done
        ])
        pipeline.recommendations(lambda r: len(r) >= len(done), worker)
        url = f"http://127.0.0.1:{pipeline.env['COURSESTREAM_WEB_PORT']}"
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        printed = subprocess.run(
            [sys.executable, "-m", "streams", "path", "ada", goal, "--worker-url", url],
            cwd=PROJECT_ROOT, env={**os.environ, "COURSESTREAM_WEB_TOKEN": token}, capture_output=True, text=True,
            timeout=60,
        )
    finally:
        worker.stop()
    assert printed.returncode == 0, printed.stderr
    steps = [line.rsplit("(", 1)[1].rstrip(")") for line in printed.stdout.splitlines()]
    assert steps == graph.learning_path(goal, set(done))
    assert steps[-1] == goal and not set(done) & set(steps)
    position = {c: i for i, c in enumerate(steps)}
    for course in steps:  # every edge respected
        for prerequisite in graph.prerequisites.get(course, ()):
            assert prerequisite in done or position[prerequisite] < position[course]


def test_a_worker_never_offers_a_learner_with_500_courses_one_they_are_not_ready_for(
    shared_data, broker, encoder_service, tmp_path
) -> None:
    """Through a real worker: after 500 courses, a rank request over every CS course left gets only
    courses whose prerequisites the learner took, and their paths include every prerequisite left,
    where the profile's Bloom filter (about 5% false "taken" at 500) would have let unready courses
    through and skipped steps."""
    prereqs = shared_data / "prereqs"
    graph = PrerequisiteGraph.from_csv(prereqs / "cs_courses.csv", prereqs / "cs_edges.csv")
    courses = sorted(graph.titles)
    with open(shared_data / "catalogs" / "udemy_courses.csv", newline="", encoding="utf-8") as file:
        udemy = [f"udemy:{row['course_id']}" for row in csv.DictReader(file)][:400]
    done: list[str] = []
    for goal in courses:  # whole learning paths, prerequisites first, up to 100 CS courses
        path = [c for c in graph.learning_path(goal, set(done)) if c not in done]
        if len(done) + len(path) <= 100:
            done += path
    history = udemy + done[: 500 - len(udemy)]
    taken = set(history)
    assert len(taken) == 500
    ready = {c for c in courses if c not in taken and graph.prerequisites.get(c, set()) <= taken}
    unready = [c for c in courses if c not in taken and c not in ready]

    # What the profile's filter would say of the same history: the cases where it errs.
    bloom = LearnerProfile()
    for i, course in enumerate(history):
        bloom.learn_one(ClickEvent(event_id=f"b{i}", user_id="u", course_id=course, action="open",
                                   event_time=datetime(2024, 1, 1, tzinfo=timezone.utc)), None, offset=i)
    fooled = [c for c in unready if all(bloom.has_taken(p) for p in graph.prerequisites[c])]
    skipped = [c for c in unready if any(bloom.has_taken(p) for p in graph.unmet(c, taken))]
    assert fooled and skipped, "the history should be one where the filter alone errs"

    pipeline = new_pipeline(broker, encoder_service, tmp_path)
    worker = pipeline.worker()
    try:
        pipeline.index([CourseContent(course_id=c, title=graph.title(c),
                                      prerequisites=sorted(graph.prerequisites.get(c, ()))) for c in courses], worker)
        start = datetime(2024, 1, 1, tzinfo=timezone.utc)
        events = [ClickEvent(event_id=f"h{i}", user_id="heavy", course_id=c, action="complete",
                             event_time=start + timedelta(hours=i)) for i, c in enumerate(history)]
        left = [c for c in courses if c not in taken]
        asked = RankRequest(event_id="shelf", user_id="heavy", event_time=events[-1].event_time, candidates=left, k=100)
        pipeline.send_events([*events, asked])
        [answer] = [r for r in pipeline.recommendations(lambda r: any(x.trigger.event_id == "shelf" for x in r), worker)
                    if r.trigger.event_id == "shelf"]
        url = f"http://127.0.0.1:{pipeline.env['COURSESTREAM_WEB_PORT']}"
        paths = {goal: httpx.get(f"{url}/paths/heavy/{goal}", timeout=30) for goal in skipped[:10]}
    finally:
        worker.stop()
    shown = [item.course_id for item in answer.items]
    assert shown and not set(shown) - ready, f"{sorted(set(shown) - ready)[:5]} offered before their prerequisites"
    assert not set(shown) & set(fooled)
    assert len(shown) >= 0.8 * min(len(ready), 100), "ready courses are offered"
    for goal, found in paths.items():
        assert found.status_code == 200, found.text
        assert [step["course_id"] for step in found.json()["path"]] == graph.learning_path(goal, taken)
