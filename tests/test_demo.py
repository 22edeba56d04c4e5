"""`coursestream demo`, as a user runs it: its default output tells a short story and ends with the
summary; ``--json`` prints the published documents alone, one a line."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from online.events import Recommendation
from online.sources import oulad_catalogue
from streams.tools.demo import SAMPLE, STORY_ITEMS
from tests.kafka_io import PROJECT_ROOT

pytestmark = [pytest.mark.broker, pytest.mark.model]

SUMMARY = re.compile(r"^summary: (\d+) events from (\d+) learners sent at 20 events/s; (\d+) lists in [\d.]+ s "
                     r"\([\d.]+ events/s\); event to list p50 \d+ ms, p99 \d+ ms$")


def demo(*arguments: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "streams", "demo", *arguments], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_the_default_demo_tells_a_short_story_in_titles_and_ends_with_its_summary() -> None:
    done = demo()
    lines = done.stdout.splitlines()
    assert len(lines) + len(done.stderr.splitlines()) <= 100, done.stdout + done.stderr
    summary = SUMMARY.match(lines[-1])
    assert summary, lines[-1]
    events, _, lists = map(int, summary.groups())
    assert events == lists == 600
    assert any(re.match(r"^live page: http://127\.0\.0\.1:\d+/#token=\S{16,}$", line) for line in lines)

    titles = set(course.title for course in oulad_catalogue(SAMPLE))
    told = [line for line in lines if re.match(r"^oulad:\d+ on \d{4}-\d\d-\d\d: ", line)]
    items = [line for line in lines if re.match(r"^    \d+\. ", line)]
    assert len({line.split(" on ")[0] for line in told}) == 3, "the story of three learners"
    assert any(title in line for line in told for title in titles), "what a learner did, by title"
    assert len(items) == STORY_ITEMS * len(told)
    for line in items:  # "    1. <title>: <the strongest reason in words>"
        title, _, reason = line.split(". ", 1)[1].partition(": ")
        assert title in titles and reason and "oulad:" not in reason, line


def test_the_json_demo_prints_the_published_documents_alone() -> None:
    done = demo("--events", "60", "--rate", "0", "--json")
    documents = [Recommendation.model_validate_json(line) for line in done.stdout.splitlines()]
    assert len(documents) == 60
    assert all(item.title for document in documents for item in document.items)
    assert done.stderr.splitlines()[-1].startswith("summary: 60 events")
