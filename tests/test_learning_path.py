"""`coursestream path USER GOAL` over a real prerequisite graph, through a running worker."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from datetime import datetime, timezone

import httpx
import pytest

from online.events import ClickEvent, CourseContent
from online.prerequisites import PrerequisiteGraph
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
