"""`coursestream demo` runs to completion in a bounded mode and shows recommendations."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.kafka_io import PROJECT_ROOT

pytestmark = [pytest.mark.broker, pytest.mark.model]


def test_demo_runs_to_completion_and_prints_recommendations() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streams", "demo", "--events", "300", "--show", "1"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=400,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "events_replayed=300, recommendations=300" in out
    first = json.loads(out[out.index("{\n") : out.index("\n}\n") + 2])
    assert first["user_id"].startswith("oulad:") and first["trigger"]["event_id"]
    assert " after a click -> " in out
