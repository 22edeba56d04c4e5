"""Learner profiles on real histories: within the 2 KB budget, nothing taken is forgotten,
and the same events in another order give the same interest."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from encoders.text import TextEncoder
from online.mastery import MasteryModel
from online.profile import MAX_BYTES, LearnerProfile
from online.sources import InvalidRow, ednet_catalogue, read_ednet_kt4, read_oulad

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


def replay(events, vectors: dict[str, np.ndarray]) -> LearnerProfile:
    profile, model = LearnerProfile(), MasteryModel()
    for offset, event in enumerate(events):
        profile.learn_one(event, vectors.get(event.course_id), offset=offset, mastery=model)
        profile = LearnerProfile.from_bytes(profile.to_bytes())  # as the worker's table does
    return profile


def test_ednet_learner_with_thousands_of_events_stays_within_budget(shared_data, encoder) -> None:
    catalogue = list(ednet_catalogue(shared_data / "ednet" / "contents"))
    vectors = dict(zip((c.course_id for c in catalogue), encoder.encode([c.title + ". " + c.description for c in catalogue])))
    events = [e for e in read_ednet_kt4(shared_data / "ednet" / "KT4") if not isinstance(e, InvalidRow)]
    user, count = Counter(e.user_id for e in events).most_common(1)[0]
    history = [e for e in events if e.user_id == user]
    assert count >= 1000 and sum(e.kind == "quiz" for e in history) > 300

    profile = replay(history, vectors)
    assert len(profile.to_bytes()) <= MAX_BYTES
    assert profile.events == count
    assert all(profile.has_taken(e.course_id) for e in history)
    assert profile.knowledge.answers == sum(e.kind == "quiz" for e in history)
    assert len(profile.knowledge.skills) >= 16, "the budget should still leave room for many skills"


def test_oulad_learner_with_hundreds_of_courses_stays_within_budget_and_order_does_not_matter(
    shared_data, encoder
) -> None:
    events = [e for e in read_oulad(shared_data / "oulad", presentations=[("AAA", "2013J")], max_learners=40)
              if not isinstance(e, InvalidRow)]
    distinct = Counter({user: 0 for user in {e.user_id for e in events}})
    for user, course in {(e.user_id, e.course_id) for e in events}:
        distinct[user] += 1
    user, _ = distinct.most_common(1)[0]
    history = [e for e in events if e.user_id == user]
    courses = sorted({e.course_id for e in history})
    assert len(courses) >= 100
    vectors = dict(zip(courses, encoder.encode(courses)))

    profile = replay(history, vectors)
    assert len(profile.to_bytes()) <= MAX_BYTES and profile.taken_count == len(courses)
    assert all(profile.has_taken(c) for c in courses)

    shuffled = history[:]
    random.Random(7).shuffle(shuffled)
    other = replay(shuffled, vectors)  # late and out-of-order events land where they belong
    cosine = float(profile.interest @ other.interest / np.linalg.norm(profile.interest) / np.linalg.norm(other.interest))
    assert cosine > 0.995  # equal up to the int8 rounding each stored step adds
