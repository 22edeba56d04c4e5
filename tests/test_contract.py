"""The event contract: committed JSON Schema files match the models; validation says why."""

from __future__ import annotations

import json

import pytest

from online.events import (
    MAX_RANK_CANDIDATES,
    InvalidEvent,
    RankRequest,
    parse_course_content,
    parse_learner_event,
    parse_learner_message,
)
from online.schemas import CONTRACT, schema
from tests.kafka_io import PROJECT_ROOT


@pytest.mark.parametrize("name", list(CONTRACT))
def test_committed_schema_files_match_the_models(name: str) -> None:
    committed = json.loads((PROJECT_ROOT / "schemas" / f"{name}.json").read_text())
    assert committed == schema(name), "run `coursestream schemas` and commit schemas/"


VALID = {"kind": "video", "event_id": "e1", "user_id": "u1", "course_id": "c1",
         "event_time": "2024-05-01T10:00:00+02:00", "video_id": "v1", "watched_seconds": 30,
         "position_seconds": 45, "video_length_seconds": 600, "playback_rate": 1.5}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"watched_seconds": float("nan")}, "watched_seconds"),
        ({"position_seconds": 601}, "past the end"),
        ({"video_length_seconds": 0}, "video_length_seconds"),
        ({"playback_rate": 50}, "playback_rate"),
        ({"event_time": "2024-05-01T10:00:00"}, "timezone"),
        ({"event_time": "2999-01-01T00:00:00Z"}, "future"),
        ({"event_time": "1970-01-01T00:00:00Z"}, "before 1990"),
        ({"user_id": ""}, "user_id"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_learner_events_say_why(change: dict, reason: str) -> None:
    raw = json.dumps({**VALID, **change}).encode()
    with pytest.raises(InvalidEvent, match=reason):
        parse_learner_event(raw)


def test_valid_events_and_content_parse() -> None:
    event = parse_learner_event(json.dumps(VALID).encode())
    assert event.kind == "video" and event.event_time.utcoffset().total_seconds() == 7200
    course = parse_course_content(b'{"course_id": "cs50", "title": "Intro to CS", "images": [{"url": "https://x/y.png"}]}')
    assert course.language == "en" and course.images[0].url
    with pytest.raises(InvalidEvent, match="exactly one"):
        parse_course_content(b'{"course_id": "cs50", "title": "Intro", "images": [{"url": "u", "path": "p"}]}')
    with pytest.raises(InvalidEvent, match="over the"):
        parse_learner_event(b" " * 70_000)


RANK = {"kind": "rank", "event_id": "r1", "user_id": "u1", "event_time": "2024-05-01T10:00:00Z",
        "candidates": ["c1", "c2"], "k": 5}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"candidates": []}, "candidates"),
        ({"candidates": [f"c{i}" for i in range(MAX_RANK_CANDIDATES + 1)]}, "candidates"),
        ({"candidates": ["c1", ""]}, "candidates"),
        ({"k": 0}, "k"),
        ({"k": 101}, "k"),
        ({"event_time": "2999-01-01T00:00:00Z"}, "future"),
        ({"course_id": "c1"}, "course_id"),
    ],
)
def test_invalid_rank_requests_say_why(change: dict, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        parse_learner_message(json.dumps({**RANK, **change}).encode())


def test_the_learner_topic_carries_events_and_rank_requests() -> None:
    request = parse_learner_message(json.dumps(RANK).encode())
    assert isinstance(request, RankRequest) and request.candidates == ["c1", "c2"] and request.k == 5
    assert parse_learner_message(json.dumps(VALID).encode()) == parse_learner_event(json.dumps(VALID).encode())
    with pytest.raises(InvalidEvent):  # a rank request is not a learner event (replayed logs hold none)
        parse_learner_event(json.dumps(RANK).encode())
