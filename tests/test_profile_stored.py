"""A profile kept as stored (:meth:`~online.profile.LearnerProfile.stored`) gives the very rows, and
the very profiles, that reading each row back gives: the harness and the worker keep it between
events instead of decoding their rows. Every part moves here: interest, media interests, latent
factors, dismissals, and a knowledge state large enough to be shrunk to fit."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from online.bloom import BloomFilter
from online.catalogue import MEDIA_DIM, MODALITIES
from online.dismissals import Dismissals
from online.events import ClickEvent, QuizEvent, VideoEvent
from online.mastery import KnowledgeState
from online.profile import LearnerProfile, MediaInterest
from online.recommender import Recommender

START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def exact(value: Any) -> Any:
    """``value`` as something compared with ``==`` only when equal bit for bit and type for type."""
    if isinstance(value, np.ndarray):
        return "array", value.dtype.str, value.shape, value.tobytes()
    if isinstance(value, KnowledgeState | MediaInterest | LearnerProfile):
        return type(value).__name__, tuple((f.name, exact(getattr(value, f.name))) for f in fields(value))
    if isinstance(value, BloomFilter | Dismissals):
        return type(value).__name__, value.to_bytes()
    if isinstance(value, dict):
        return "dict", tuple((exact(key), exact(item)) for key, item in value.items())  # in order
    if isinstance(value, list):
        return "list", tuple(exact(item) for item in value)
    return type(value), repr(value)


def events(count: int, rng: np.random.Generator) -> list[ClickEvent | VideoEvent | QuizEvent]:
    """Clicks, videos and quizzes on 40 courses, out of order now and then, some redelivered; quiz
    tags long enough that the knowledge state has to shrink to fit."""
    made: list[ClickEvent | VideoEvent | QuizEvent] = []
    for i in range(count):
        course = f"course-{rng.integers(40):02d}"
        common = {"event_id": f"e{i}", "user_id": "u", "course_id": course,
                  "event_time": START + timedelta(hours=int(i - 30 * (rng.random() < 0.1)))}
        kind = i % 3
        if kind == 0:
            made.append(ClickEvent(**common, action="open", item_id=f"e{i}"))
        elif kind == 1:
            made.append(VideoEvent(**common, video_id=f"v{i}", watched_seconds=float(rng.integers(1, 60)),
                                   position_seconds=30, video_length_seconds=60))
        else:
            made.append(QuizEvent(**common, quiz_id=f"q{i % 50}", question_id=f"q{i % 50}",
                                  skill_tags=[f"{rng.integers(24):02d}" + "s" * 120], score=float(rng.random())))
        if rng.random() < 0.05:
            made.append(made[-1])  # redelivered
    return made


def test_a_profile_kept_as_stored_gives_the_rows_and_profiles_of_reading_each_row_back() -> None:
    rng = np.random.default_rng(3)
    vectors = {f"course-{c:02d}": rng.normal(size=384).astype(np.float32) for c in range(40)}
    media = {course: {m: rng.normal(size=MEDIA_DIM).astype(np.float32) for m in MODALITIES if rng.random() < 0.7}
             for course in vectors}
    read_back, kept = (Recommender(explore_share=0.0), LearnerProfile()), (Recommender(explore_share=0.0), LearnerProfile())
    forgotten, not_idempotent = 0, 0
    for offset, event in enumerate(events(600, rng)):
        rows = []
        for recommender, profile in (read_back, kept):
            if offset % 7 == 0:
                profile.dismissed.add(event.course_id, event.event_time.timestamp())
            recommender.learn_one(profile, event, vectors[event.course_id], {"part_of": "m", "language": "en"},
                                  offset=offset, media=media[event.course_id])
        row = read_back[1].to_bytes()
        read_back = (read_back[0], LearnerProfile.from_bytes(row))
        stored_row, stored = kept[1].stored()
        forgotten += kept[1].forgotten
        kept = (kept[0], stored)
        assert stored_row == row
        assert exact(stored) == exact(read_back[1])
        not_idempotent += read_back[1].to_bytes() != row
    assert forgotten > 0, "the knowledge state should have had to shrink"
    assert not_idempotent > 0, "some rows should not survive decoding and encoding again"
