"""Explicit feedback and attribution, without a broker: dismissals in the profile and the rules,
what the re-ranker and the bandit learn from feedback, and the bounds of the recent lists."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from online.attribution import RecentLists
from online.bloom import positions
from online.dismissals import DISMISS_DAYS, DISMISSALS
from online.events import ClickEvent, Feedback, QuizEvent
from online.feedback import learn_feedback
from online.mastery import MasteryModel
from online.profile import MAX_BYTES, LearnerProfile
from online.recommender import FEATURES, PRIOR, PRIOR_INTERCEPT, Candidate, Recommender, Shown
from online.reranker import Reranker

START = datetime(2024, 5, 1, tzinfo=timezone.utc)
DAY = 86_400.0


def feedback(course: str, action: str = "dismiss", rating: int | None = None, i: int = 0, days: float = 0) -> Feedback:
    return Feedback(event_id=f"f{i}", user_id="ann", course_id=course, action=action, rating=rating,
                    event_time=START + timedelta(days=days))


def test_a_profile_keeps_the_latest_dismissals_within_its_budget() -> None:
    profile = LearnerProfile()
    mastery = MasteryModel()
    for i in range(400):  # a knowledge state of many long skill tags: the part that has to give way
        quiz = QuizEvent(event_id=f"q{i}", user_id="ann", course_id="toeic", quiz_id=f"q{i}", correct=bool(i % 2),
                         skill_tags=[f"a-rather-long-skill-tag-number-{i}"], event_time=START)
        profile.learn_one(quiz, None, offset=i, mastery=mastery)
    for i in range(DISMISSALS + 4):
        profile.dismissed.add(f"course-{i}", time=i * DAY)  # the later, the later it ends
    raw = profile.to_bytes()
    assert len(raw) <= MAX_BYTES
    restored = LearnerProfile.from_bytes(raw)
    assert restored.dismissed == profile.dismissed and len(restored.dismissed) == DISMISSALS
    catalogue = np.array([positions(f"course-{i}") for i in range(DISMISSALS + 4)])
    now = (DISMISSALS + 4) * DAY
    # the four ending soonest made room; the others are still hidden
    assert restored.dismissed.hides(catalogue, now).tolist() == [False] * 4 + [True] * DISMISSALS
    # dismissing course-10 again, once course-4's time is over: the ended dismissal goes, and
    # course-10 is hidden for the whole time again
    later = (4 + DISMISS_DAYS) * DAY + 1
    restored.dismissed.add("course-10", time=later)
    assert len(restored.dismissed) == DISMISSALS - 1
    assert restored.dismissed.hides(catalogue[[4, 10, 19]], later).tolist() == [False, True, True]
    assert restored.dismissed.hides(catalogue[[10, 19]], later + DISMISS_DAYS * DAY - 1).tolist() == [True, False]


def test_a_dismissed_course_is_left_out_of_lists_until_its_time_is_over() -> None:
    recommender, profile = Recommender(explore_share=0.0), LearnerProfile()
    profile.learn_one(ClickEvent(event_id="e1", user_id="ann", course_id="intro", action="open", event_time=START),
                      np.array([1.0, 0.0]), offset=0)
    candidates = [Candidate(c, 0.5, {}, np.array([1.0, 0.0])) for c in ("loops", "recursion", "art")]
    assert learn_feedback(recommender, profile, feedback("loops"), Shown.of([]), offset=1)

    def listed(days: float) -> list[str]:
        items = recommender.recommend(profile, candidates, k=3, time=(START + timedelta(days=days)).timestamp())
        return [item.course_id for item in items]

    assert "loops" not in listed(0) and "loops" not in listed(DISMISS_DAYS - 0.001)
    assert "loops" in listed(DISMISS_DAYS + 0.001)
    assert profile.events == 1 and not profile.has_taken("loops")  # feedback is not a use of the course


def _shown(*courses: str, arms: tuple[str | None, ...] | None = None) -> Shown:
    rng = np.random.default_rng(0)
    return Shown.of([{"course_id": course, "explore": arm is not None, "exploration_arm": arm,
                      "features": dict(zip(FEATURES, rng.uniform(0, 1, len(FEATURES)).tolist()))}
                     for course, arm in zip(courses, arms or (None,) * len(courses))])


@pytest.mark.parametrize(("action", "rating", "direction"), [("dismiss", None, -1), ("rate", 1, -1), ("rate", 2, -1),
                                                             ("rate", 3, 0), ("rate", 4, 1), ("rate", 5, 1)])
def test_the_re_ranker_and_the_bandit_learn_feedback_on_the_last_list(action: str, rating: int | None,
                                                                       direction: int) -> None:
    recommender = Recommender(reranker=Reranker(PRIOR, PRIOR_INTERCEPT, learning_rate=0.05))
    shown = _shown("intro", "art", arms=(None, "popular"))
    before = recommender.reranker.predict_matrix(shown.features, FEATURES)
    assert learn_feedback(recommender, LearnerProfile(), feedback("art", action, rating), shown)
    after = recommender.reranker.predict_matrix(shown.features, FEATURES)
    assert np.sign(round(after[1] - before[1], 12)) == direction
    arm = recommender.explorer.table.get("popular")
    assert arm == {-1: [1.0, 2.0], 0: None, 1: [2.0, 1.0]}[direction]


def test_feedback_on_a_course_the_last_list_did_not_show_only_hides_it() -> None:
    recommender = Recommender(reranker=Reranker(PRIOR, PRIOR_INTERCEPT, learning_rate=0.05))
    profile = LearnerProfile()
    assert learn_feedback(recommender, profile, feedback("art"), _shown("intro"), offset=3)
    assert recommender.reranker.updates == 0 and not recommender.explorer.table
    assert len(profile.dismissed) == 1 and profile.applied_offset == 3
    assert not learn_feedback(recommender, profile, feedback("art"), _shown("intro"), offset=3)  # redelivered


def test_recent_lists_are_bounded_per_learner_and_in_learners() -> None:
    lists = RecentLists(per_learner=2, max_learners=2)
    for i, course in enumerate(("a", "b", "c")):
        lists.shown("ann", "p", 0.0, [{"course_id": course}])
    assert lists.taken_up("ann", "a", 0.0) is None  # pushed out by two later lists
    assert lists.taken_up("ann", "b", 0.0).rank == 1
    lists.shown("bob", "p", 0.0, [{"course_id": "a"}])
    lists.taken_up("ann", "c", 0.0)  # ann is now the most recently active
    lists.shown("cleo", "p", 0.0, [{"course_id": "a"}])
    assert len(lists) == 2 and lists.taken_up("bob", "a", 0.0) is None  # bob was forgotten first
    lists.forget("ann")
    assert lists.taken_up("ann", "c", 0.0) is None
