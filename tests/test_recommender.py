"""The learning and ranking core: re-ranker learning, cold start, level targeting, exploration,
explanations, and state that a stream processor's tables can hold."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from river import optim, reco

from online.bloom import BloomFilter
from online.candidates import Shortlist
from online.catalogue import Catalogue
from online.events import ClickEvent, QuizEvent, RecommendedItem
from online.factorization import CourseFactors, _initial
from online.features import features
from online.profile import MAX_BYTES, LearnerProfile
from online.recommender import (
    COLUMN,
    FEATURES,
    POLICIES,
    PRIOR,
    PRIOR_INTERCEPT,
    USAGE_HALF_LIFE_DAYS,
    Candidate,
    Recommender,
    Shown,
)
from online.reranker import Reranker

START = datetime(2024, 5, 1, tzinfo=timezone.utc)


def click(user: str, course: str, day: float) -> ClickEvent:
    return ClickEvent(event_id=f"{user}:{course}:{day}", user_id=user, course_id=course, action="open",
                      event_time=START + timedelta(days=day))


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def candidates(profile: LearnerProfile, catalogue: dict[str, tuple[np.ndarray, dict]]) -> list[Candidate]:
    return [Candidate(c, profile.similarity(v), payload, v) for c, (v, payload) in catalogue.items()]


def test_the_reranker_learns_what_learners_take_up_after_a_recommendation() -> None:
    """Learners are shown a similar course first and, below it, one that others took next; they
    keep taking up the second: the re-ranker moves its weights from similarity towards what others
    did, from the list as the learners saw it, until it ranks that course first."""
    shown = Shown.of([{"course_id": "similar", "features": {"similarity": 0.9}},
                      {"course_id": "next", "features": {"similarity": 0.7, "collaborative": 0.16}}])
    recommender = Recommender(reranker=Reranker(PRIOR, PRIOR_INTERCEPT, learning_rate=0.1), explore_share=0.0)
    similar, taken = ({name: value for name, value in zip(FEATURES, row)} for row in shown.features)
    assert recommender.reranker.predict_one(taken) < recommender.reranker.predict_one(similar)
    for learner in range(20):
        recommender.learn_one(LearnerProfile(), click(f"u{learner}", "next", 1), None, {}, shown=shown)
    after = recommender.reranker.weights()
    assert after["similarity"] < PRIOR["similarity"] and after["collaborative"] > PRIOR["collaborative"]
    assert after["collaborative_share"] / after["collaborative"] == pytest.approx(
        PRIOR["collaborative_share"] / PRIOR["collaborative"])  # a feature and its share move as one
    assert recommender.reranker.predict_one(taken) > recommender.reranker.predict_one(similar)


def test_a_list_answers_each_take_up_until_the_next_less_what_was_taken_since() -> None:
    shown = Shown.of([{"course_id": c, "features": {"similarity": s}} for c, s in (("a", 0.9), ("b", 0.5), ("c", 0.1))])
    profile = LearnerProfile()
    Recommender().learn_one(profile, click("u", "a", 0), None, {}, shown=shown)
    left = shown.untaken(profile, "c")
    assert left.course_ids == ("b", "c") and left.features[:, COLUMN["similarity"]].tolist() == [0.5, 0.1]
    assert shown.untaken(LearnerProfile(), "c") is shown


def test_path_position_favours_what_others_took_at_the_learner_s_point() -> None:
    """Learners take intro, loops and recursion in that order: a newcomer's best fit is intro, a
    learner who has taken one course already is at loops."""
    recommender = Recommender(explore_share=0.0)
    for learner in range(3):
        profile = LearnerProfile()
        for day, course in enumerate(["intro", "loops", "recursion"]):
            recommender.learn_one(profile, click(f"u{learner}", course, day), None, {})
    midway = LearnerProfile()
    recommender.learn_one(midway, click("m", "art", 0), None, {})
    catalogue = Catalogue()
    rows = np.array([catalogue.put(course, None, {}) for course in ("intro", "loops", "recursion")])
    lists = [Shortlist(profile, rows, np.zeros(3), START.timestamp()) for profile in (LearnerProfile(), midway)]
    fit = features(recommender, catalogue, lists)[:, COLUMN["path_position"]].reshape(2, 3)
    assert fit.argmax(axis=1).tolist() == [0, 1]
    assert fit.max() == 1.0 and fit.min() > 0.0


def test_a_take_up_off_the_list_or_with_learning_off_keeps_the_weights() -> None:
    """Only a course the learner was shown teaches the re-ranker (the comparison is made on what
    they saw), and a learning rate of 0 keeps the prior."""
    catalogue = {"intro": (unit(1.0, 0.0), {}), "loops": (unit(1.0, 0.2), {}), "art": (unit(0.0, 1.0), {})}
    for learning_rate, shown_ids in ((0.1, ["loops"]), (0.0, ["loops", "art"])):
        recommender = Recommender(reranker=Reranker(PRIOR, PRIOR_INTERCEPT, learning_rate), explore_share=0.0)
        profile = LearnerProfile()
        recommender.learn_one(profile, click("u", "intro", 0), *catalogue["intro"])
        shown = Shown.of([{"course_id": c, "features": {"similarity": 0.9}} for c in shown_ids])
        recommender.learn_one(profile, click("u", "art", 1), *catalogue["art"], shown=shown)
        assert recommender.reranker.weights() == PRIOR


def test_a_new_learner_gets_what_is_popular_in_their_context() -> None:
    recommender = Recommender(explore_share=0.0)
    for learner, course in enumerate(["a1", "a1", "a1", "a2", "a2", "b1"]):
        context = "module-b" if course.startswith("b") else "module-a"
        recommender.learn_one(LearnerProfile(), click(f"u{learner}", course, 0), None, {"part_of": context})
    newcomer = LearnerProfile(context="module-a")  # before any event: their context only
    time = (START + timedelta(days=1)).timestamp()
    ids = recommender.candidate_ids(newcomer, k=10, time=time)
    assert ids == ["a1", "a2"]
    items = recommender.recommend(newcomer, [Candidate(c, 0.0, {"part_of": "module-a"}) for c in ids], k=10, time=time)
    assert [i.course_id for i in items] == ["a1", "a2"]
    reasons = {reason.code: reason.value for reason in items[0].reasons}
    assert reasons["popular_now"] == pytest.approx(3 * 0.5 ** (1 / 3), abs=0.01)  # a day old
    assert reasons["in_use_now"] == pytest.approx(3 * 0.5 ** (1 / USAGE_HALF_LIFE_DAYS), abs=0.01)


def test_difficulty_aims_just_above_mastery() -> None:
    profile, recommender = LearnerProfile(), Recommender(explore_share=0.0)
    for i in range(40):  # right about two times in three on loops
        quiz = QuizEvent(event_id=f"q{i}", user_id="u", course_id="quiz", quiz_id="loops-quiz", question_id=f"q{i}",
                         correct=i % 3 != 0, skill_tags=["loops"], event_time=START + timedelta(minutes=i))
        recommender.learn_one(profile, quiz, None, {})
    mastery = profile.knowledge.mastery("loops")
    assert 0.5 < mastery < 0.8
    levels = {level: Candidate(level, 0.5, {"level": level, "skills": ["loops"]})
              for level in ("beginner", "intermediate", "advanced")}
    items = recommender.recommend(profile, levels.values(), k=3)
    best = min(levels, key=lambda level: abs({"beginner": 0.3, "intermediate": 0.55, "advanced": 0.8}[level] - mastery - 0.1))
    assert items[0].course_id == best
    level_reason = next(r for r in items[0].reasons if r.code == "matches_level")
    assert level_reason.value == round(mastery, 3)


def test_a_share_of_slots_explores_repeatably_and_the_bandit_learns() -> None:
    catalogue = {f"c{i}": (unit(1.0, i / 5), {}) for i in range(30)}
    profile, recommender = LearnerProfile(), Recommender(explore_share=0.1)
    recommender.learn_one(profile, click("u", "c0", 0), *catalogue["c0"])
    items = recommender.recommend(profile, candidates(profile, catalogue), k=10, seed="event-1")
    explored = [i for i in items if i.explore]
    assert len(items) == 10 and len(explored) == 1
    assert explored[0].exploration_arm in recommender.explorer.arms
    assert explored[0].reasons[0].code == "exploration"
    exploited = [i.course_id for i in items if not i.explore]
    assert explored[0].course_id not in exploited
    again = recommender.recommend(profile, candidates(profile, catalogue), k=10, seed="event-1")
    assert [i.model_dump() for i in again] == [i.model_dump() for i in items]  # a replay explores the same way
    assert not any(i.explore for i in Recommender(explore_share=0.0).recommend(profile, candidates(profile, catalogue), 10))
    recommender.learn_one(profile, click("u", explored[0].course_id, 1), *catalogue[explored[0].course_id],
                         shown=Shown.of([i.model_dump() for i in items]))
    assert recommender.explorer.table[explored[0].exploration_arm] == [2.0, 1.0]


def test_every_item_is_explained_and_carries_its_features() -> None:
    catalogue = {f"c{i}": (unit(1.0, i / 5), {"prerequisites": ["c0"] if i == 3 else []}) for i in range(8)}
    profile, recommender = LearnerProfile(), Recommender()
    recommender.learn_one(profile, click("u", "c0", 0), *catalogue["c0"])
    items = recommender.recommend(profile, candidates(profile, catalogue), k=5, seed="s")
    assert all(item.reasons and set(item.features) == set(FEATURES) for item in items)
    unlocked = next(item for item in items if item.course_id == "c3")
    assert any(r.code == "unlocked_by" and r.course_id == "c0" for r in unlocked.reasons)


@pytest.mark.parametrize("policy", POLICIES)
def test_each_policy_keeps_a_slot_for_what_the_last_course_unlocks(policy: str) -> None:
    # more candidates than the diverse policy's pool (POOL * k), the unlocked one far from the learner's interest
    catalogue = {f"c{i}": (unit(1.0, i / 20), {}) for i in range(60)} | {"next": (unit(-1.0, 0.3), {"prerequisites": ["c0"]})}
    profile, recommender = LearnerProfile(), Recommender(explore_share=0.0)
    recommender.learn_one(profile, click("u", "c0", 0), *catalogue["c0"])
    items = recommender.recommend(profile, candidates(profile, catalogue), k=10, policy=policy, seed="s")
    assert len(items) == 10
    assert [item.course_id for item in items if item.features["unlocks"]] == ["next"]
    assert all(item.features["similarity"] == round(profile.similarity(catalogue[item.course_id][0]), 4) for item in items)


def test_state_fits_json_tables_and_recovers() -> None:
    """The shared models keep their state in mappings of JSON values (a Faust table's), and a
    recommender rebuilt over the same tables ranks exactly as the one that learned."""
    tables: dict[str, dict] = {}
    recommender = Recommender.over(lambda name: tables.setdefault(name, {}), explore_share=0.1, learning_rate=0.005)
    catalogue = {f"c{i}": (unit(1.0, i / 5), {"part_of": "m", "level": "beginner"}) for i in range(10)}
    # another learner took up the second of a list they were shown: the re-ranker has learned
    recommender.learn_one(LearnerProfile(), click("v", "next", 0), None, {}, shown=Shown.of(
        [{"course_id": "similar", "features": {"similarity": 0.9}},
         {"course_id": "next", "features": {"similarity": 0.7, "collaborative": 0.16}}]))
    profile = LearnerProfile()
    shown: list[RecommendedItem] = []
    for day in range(6):
        recommender.learn_one(profile, click("u", f"c{day}", day), *catalogue[f"c{day}"], shown=Shown.of([i.model_dump() for i in shown]))
        shown = recommender.recommend(profile, candidates(profile, catalogue), k=3, seed=str(day))
    assert set(tables) == {"popularity", "usage", "transitions", "position", "factors", "reranker", "explorer", "difficulty",
                           "mastery"}
    restored = {name: json.loads(json.dumps(table)) for name, table in tables.items()}
    twin = Recommender.over(lambda name: restored[name], explore_share=0.1, learning_rate=0.005)
    again = twin.recommend(profile, candidates(profile, catalogue), k=3, seed="5")
    assert [i.model_dump() for i in again] == [i.model_dump() for i in shown]
    assert twin.reranker.weights() != PRIOR


def test_latent_factors_live_in_the_profile_and_a_replay_learns_the_same_numbers() -> None:
    """Learners who use the same courses get factors that score those courses higher; the learner's
    factors survive the profile's bytes, and the same events give exactly the same state again."""
    def learn() -> tuple[Recommender, dict[str, LearnerProfile]]:
        recommender, profiles = Recommender(), {}
        for day in range(30):
            for user, course in (("a1", "algebra"), ("a2", "algebra"), ("a1", "calculus"), ("a2", "calculus"),
                                 ("b1", "poetry"), ("b2", "poetry"), ("b1", "novels"), ("b2", "novels")):
                profile = profiles.setdefault(user, LearnerProfile())
                recommender.learn_one(profile, click(user, course, day), None, {})
        return recommender, profiles

    recommender, profiles = learn()
    profile = profiles["a1"]
    assert profile.factors is not None and profile.factors.shape == (20,)
    restored = LearnerProfile.from_bytes(profile.to_bytes())
    assert np.array_equal(restored.factors, profile.factors) and len(profile.to_bytes()) <= MAX_BYTES
    catalogue = Catalogue()
    rows = np.array([catalogue.put(course, None, {}) for course in ("calculus", "novels")])
    calculus, novels = features(recommender, catalogue, [Shortlist(restored, rows, np.zeros(2),
                                                                   (START + timedelta(days=30)).timestamp())])
    factors, share = COLUMN["factors"], COLUMN["factors_share"]
    assert calculus[factors] > novels[factors] and calculus[share] == 1.0
    twin, twin_profiles = learn()
    assert twin.factors.table == recommender.factors.table
    assert all(np.array_equal(twin_profiles[u].factors, p.factors) for u, p in profiles.items())


def test_latent_factors_learn_the_same_after_a_restart() -> None:
    """A worker restarted on the table (whose store may list keys in any order) draws the same
    negatives, so it learns the same numbers as one that ran on."""
    def uses(factors: CourseFactors, learners: dict, start: int) -> None:
        for i in range(start, start + 40):
            user, course = f"u{i % 3}", f"c{(i * 7) % 11}"
            learners[user] = factors.learn_one(learners.get(user), course, BloomFilter(), seed=f"e{i}")

    table: dict = {}
    ran_on, learners = CourseFactors(n_factors=4, table=table), {}
    uses(ran_on, learners, 0)
    stored = dict(reversed(list(json.loads(json.dumps(table)).items())))
    restarted, learners_again = CourseFactors(n_factors=4, table=stored), dict(learners)
    uses(ran_on, learners, 40)
    uses(restarted, learners_again, 40)
    assert stored == json.loads(json.dumps(table))
    assert all(np.array_equal(learners[u], learners_again[u]) for u in learners)


def test_course_factors_take_rivers_funkmf_step_to_the_bit() -> None:
    """CourseFactors writes FunkMF's SGD step on arrays; river's FunkMF, given the same initial
    factors and the same uses, ends with the very same numbers."""
    factors = CourseFactors(n_factors=6, learning_rate=0.05, l2=0.001, negatives=0)
    river_mf = reco.FunkMF(n_factors=6, optimizer=optim.SGD(0.05), l2=0.001)
    learners: dict[str, np.ndarray | None] = {"ann": None, "bob": None}
    courses = [f"c{i}" for i in range(12)]
    for step in range(200):
        learner, course = ("ann", "bob")[step % 2], courses[(step * 7) % 12]
        before = learners[learner]
        learners[learner] = factors.learn_one(before, course, BloomFilter(), seed=f"e{step}")
        river_mf.i_latents.setdefault(course, _initial(course, 6))
        river_mf.u_latents[learner] = _initial(f"e{step}", 6) if before is None else np.asarray(before, dtype=np.float64)
        river_mf.learn_one(learner, course, 1.0)
        assert np.array_equal(learners[learner], river_mf.u_latents[learner].astype(np.float32))
    for c in factors.table:
        assert factors.table[c]["v"] == river_mf.i_latents[c].tolist()


def test_negatives_step_together_toward_zero() -> None:
    """An event's negatives, drawn among the courses the learner has not used, take one
    mini-batch step: each one's predicted score for the learner shrinks toward 0."""
    factors = CourseFactors(n_factors=6, negatives=4)
    learner = None
    for step in range(30):
        learner = factors.learn_one(learner, f"c{step % 10}", BloomFilter(), seed=f"warm{step}")
    used, taken = {"c0", "c1", "c2"}, BloomFilter()
    for course in used:
        taken.add(course)
    before = {c: np.array(row["v"]) for c, row in factors.table.items()}
    factors.learn_one(learner, "c0", taken, seed="probe")
    negatives = [c for c, row in factors.table.items() if c != "c0" and not np.array_equal(row["v"], before[c])]
    assert negatives and not used & set(negatives)
    u = np.asarray(learner, dtype=np.float64)
    for c in negatives:
        assert abs(np.array(factors.table[c]["v"]) @ u) < abs(before[c] @ u)
