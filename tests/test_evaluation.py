"""The offline prequential harness: metrics, the OULAD protocol on real data, determinism, leakage.

The real-data tests read AAA 2013J once (first 30 days of the presentation) and skip without
``../shared/data``.
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from online.evaluation import (
    BASELINES,
    Block,
    LeakageError,
    Policy,
    PolicyError,
    Steps,
    evaluate,
    oulad_steps,
    prequential_steps,
)
from online.evaluation.metrics import (
    coverage,
    ndcg_at_k,
    no_prerequisites,
    prerequisite_violations,
    recall_at_k,
    reciprocal_rank,
)
from online.evaluation.protocol import _merge_repeats
from online.evaluation.recommender_policy import RecommenderPolicy
from online.events import ClickEvent, QuizEvent
from online.sources import presentation_start

START = presentation_start("2013J")


def _click(user: str, course: str, day: int, count: int = 1, event_id: str | None = None) -> ClickEvent:
    return ClickEvent(
        event_id=event_id or f"{course}:{user}:{day}",
        user_id=user,
        course_id=course,
        action="resource",
        count=count,
        event_time=START + timedelta(days=day),
    )


# ----------------------------------------------------------------------------- metrics


def test_recall_is_hits_over_min_k_relevant():
    assert recall_at_k(["a", "b", "c"], {"a", "c", "x", "y"}, k=3) == pytest.approx(2 / 3)
    assert recall_at_k(["a", "b", "c"], {"c"}, k=3) == 1.0
    assert recall_at_k(["a", "b", "c"], {"c"}, k=2) == 0.0  # c is 3rd, outside K=2
    # 12 relevant, K=10: all 10 places relevant is perfect recall
    assert recall_at_k(list("abcdefghij"), set("abcdefghijkl"), k=10) == 1.0
    assert recall_at_k(["a"], set(), k=10) == 0.0


def test_ndcg_by_hand():
    # hits at ranks 1 and 3 of K=3, two relevant: (1 + 1/2) / (1 + 1/log2(3))
    assert ndcg_at_k(["a", "b", "c"], {"a", "c"}, k=3) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    # one hit at rank 2, one relevant: (1/log2 3) / 1
    assert ndcg_at_k(["x", "a"], {"a"}, k=10) == pytest.approx(1 / math.log2(3))
    # the ideal is over min(K, relevant): 5 relevant, K=2, both places hit -> 1
    assert ndcg_at_k(["a", "b"], set("abcde"), k=2) == 1.0
    # a short list: missing places are misses
    assert ndcg_at_k([], {"a"}, k=10) == 0.0


def test_reciprocal_rank_coverage_and_prerequisites():
    assert reciprocal_rank(["x", "y", "a", "b"], {"a", "b"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x", "y", "a"], {"a"}, k=2) == 0.0
    assert coverage([["a", "b"], ["a", "c"], ["zz"]], ["a", "b", "c", "d", "e"]) == pytest.approx(3 / 5)
    requires = {"advanced": {"basics"}}

    def met(course: str, taken: frozenset[str]) -> bool:
        return requires.get(course, set()) <= taken

    assert prerequisite_violations(["advanced", "basics"], frozenset(), met) == 1
    assert prerequisite_violations(["advanced"], frozenset({"basics"}), met) == 0
    assert prerequisite_violations(["advanced"], frozenset(), no_prerequisites) == 0


def test_report_aggregates_by_hand():
    # two steps, K=2: one with hits at ranks 1 and 2 of 3 relevant, one with a hit at rank 2
    log = [
        _click("u1", "a", 0),
        _click("u2", "a", 1),
        _click("u2", "b", 1),
        _click("u2", "c", 1),
        _click("u3", "c", 2),
    ]

    class Fixed:
        name = "fixed"

        def learn_one(self, event):
            pass

        def recommend(self, user_id, candidates, k, now):
            order = ["a", "b", "c"] if user_id != "u3" else ["b", "c"]
            return [c for c in order if c in candidates][:k]

    requires = {"b": {"a"}}
    report = evaluate(
        prequential_steps(log, catalogue=["a", "b", "c", "d"]),
        {"fixed": Fixed},
        k=2,
        window=2,
        stride=1,
        prerequisites_met=lambda course, taken: requires.get(course, set()) <= taken,
    )
    # steps: u1@0 {a} -> [a, b] hit@1; u2@1 {a,b,c} -> [a, b] 2/2; u3@2 {c} -> [b, c] hit@2
    assert report.steps == 3
    overall = report.overall["fixed"]
    assert overall["recall"] == pytest.approx((1 + 1 + 1) / 3)
    assert overall["ndcg"] == pytest.approx((1 + 1 + 1 / math.log2(3)) / 3)
    assert overall["mrr"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert overall["coverage"] == pytest.approx(3 / 4)  # a, b, c of a, b, c, d
    assert overall["precision"] == pytest.approx((1 / 2 + 2 / 2 + 1 / 2) / 3)
    assert overall["f1"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)  # harmonic means of the above
    assert overall["hit_rate"] == 1.0
    # b (which requires a) is in all 3 lists, and no learner had taken a before: 3 of 6 items
    assert overall["prerequisite_violations"] == pytest.approx(3 / 6)
    # every learner is in their first events: all steps are new learners'
    assert report.by_stage["steps"] == {"new": 3, "established": 0}
    assert report.by_stage["new"]["fixed"]["precision"] == overall["precision"]
    assert report.series["step"] == [2, 3]
    assert report.series["fixed"]["recall"] == [1.0, 1.0]


# ------------------------------------------------------------------ generic protocol


def test_prequential_steps_generic_log():
    log = [
        _click("u1", "a", 0),
        QuizEvent(event_id="q", user_id="u1", course_id="a", quiz_id="a", score=0.5, event_time=START),
        _click("u1", "b", 0),  # same moment: one step with a and b
        _click("u1", "a", 3),  # not new: no step
        _click("u2", "b", 3),
    ]
    steps = prequential_steps(log, catalogue=["a", "b", "c"])
    blocks = list(steps.blocks)
    assert [len(b.events) for b in blocks] == [3, 2]
    found = [(s.user_id, s.candidates, s.relevant, s.taken) for b in blocks for s in b.steps]
    assert found == [
        ("u1", ("a", "b", "c"), frozenset({"a", "b"}), frozenset()),
        ("u2", ("a", "b", "c"), frozenset({"b"}), frozenset()),
    ]
    with pytest.raises(ValueError, match="out of time order"):
        list(prequential_steps([_click("u1", "a", 2), _click("u1", "b", 1)], catalogue=["a", "b"]).blocks)


def test_merge_repeats_sums_counts_and_keeps_the_first_id():
    events = [
        _click("u1", "r1", 0, count=2, event_id="r1:u1:0"),
        _click("u1", "r2", 0, count=1),
        _click("u1", "r1", 0, count=5, event_id="r1:u1:0#2"),
        _click("u2", "r1", 0, count=1),
        _click("u1", "r1", 0, count=1, event_id="r1:u1:0#3"),
    ]
    stats: dict[str, int] = {}
    merged = _merge_repeats(events, stats)
    assert [(e.event_id, e.count) for e in merged] == [("r1:u1:0", 8), ("r2:u1:0", 1), ("r1:u2:0", 1)]
    assert stats["merged_repeats"] == 2


def test_baselines_implement_the_protocol():
    for name, factory in BASELINES.items():
        policy = factory()
        assert isinstance(policy, Policy), name
        assert policy.name == name


def test_ednet_log_runs_through_the_generic_mode(shared_data):
    from online.sources import read_ednet_kt4

    report = evaluate(prequential_steps(read_ednet_kt4(shared_data / "ednet" / "KT4")), BASELINES, k=3, window=20)
    # 9 learners, 7 TOEIC parts each at most
    assert 9 <= report.steps <= 9 * 8
    for values in report.overall.values():
        assert 0.0 < values["recall"] <= 1.0


# ------------------------------------------------------------------- OULAD, real data


@pytest.fixture(scope="module")
def oulad_slice(shared_data) -> Steps:
    """AAA 2013J up to day 30 of the presentation, read once, blocks kept in a list."""
    steps = oulad_steps(shared_data / "oulad", [("AAA", "2013J")], last_day=30)
    steps.blocks = list(steps.blocks)
    return steps


def _until(steps: Steps, day: int) -> Steps:
    """A fresh Steps over the blocks of presentation days up to ``day``."""
    blocks = [b for b in steps.blocks if b.time <= START + timedelta(days=day)]
    return Steps(blocks, steps.universes, f"{steps.name} to day {day}", {})


class RandomPolicy:
    """A seeded random ranking: the floor every baseline must clear."""

    name = "random"

    def __init__(self, seed: int = 0):
        self._rng = random.Random(seed)

    def learn_one(self, event):
        pass

    def recommend(self, user_id, candidates, k, now):
        return self._rng.sample(list(candidates), min(k, len(candidates)))


def test_oulad_protocol_on_real_slice(oulad_slice):
    universe = oulad_slice.universes["oulad:AAA-2013J"]
    assert len(universe) == 211  # the vle.csv resources of AAA 2013J
    assert all(":vle:" in r for r in universe)
    history: dict[str, set[str]] = {}
    previous = None
    n_steps = 0
    for block in oulad_slice.blocks:
        assert previous is None or block.time > previous
        previous = block.time
        assert (block.time - START).days <= 30
        seen: set[tuple[str, str]] = set()
        today: dict[str, set[str]] = {}
        for event in block.events:
            assert event.event_time == block.time  # one day per block
            if isinstance(event, ClickEvent):
                assert "#" not in event.event_id  # repeats are merged
                assert (event.user_id, event.course_id) not in seen
                seen.add((event.user_id, event.course_id))
                today.setdefault(event.user_id, set()).add(event.course_id)
        expected = {
            user: clicked - history.get(user, set()) for user, clicked in today.items() if clicked - history.get(user, set())
        }
        assert {s.user_id: set(s.relevant) for s in block.steps} == expected
        for step in block.steps:
            taken = history.get(step.user_id, set())
            assert step.taken == taken
            assert set(step.candidates) == set(universe) - taken
            assert step.relevant <= set(step.candidates)
        for user, clicked in today.items():
            history.setdefault(user, set()).update(clicked)
        n_steps += len(block.steps)
    assert n_steps > 2000
    assert oulad_slice.stats["merged_repeats"] > 0


def test_baselines_beat_random_on_real_slice(oulad_slice):
    report = evaluate(_until(oulad_slice, 10), {"random": RandomPolicy, **BASELINES}, k=10, window=500)
    floor = report.overall["random"]
    assert 0.02 < floor["recall"] < 0.2  # about 10 of ~200 candidates
    for name in BASELINES:
        values = report.overall[name]
        assert values["prerequisite_violations"] == 0.0  # OULAD has no prerequisites
        assert 0.0 < values["coverage"] <= 1.0
        assert values["ndcg"] > 2 * floor["ndcg"], name
        assert values["recall"] > floor["recall"] + 0.1, name
    table = report.table()
    assert table.splitlines()[1].split() == ["policy", "recall@10", "precision@10", "f1@10", "hit@10", "ndcg@10",
                                             "mrr@10", "coverage", "prereq_viol"]
    overall, stages = table.split("\n\n")
    assert len(overall.splitlines()) == 2 + 1 + len(BASELINES)
    assert len(stages.splitlines()) == 2 + 2 * (1 + len(BASELINES))  # new learners and the rest


def test_same_inputs_same_report(oulad_slice, tmp_path):
    first = evaluate(_until(oulad_slice, -6), BASELINES, k=10, window=200)
    second = evaluate(_until(oulad_slice, -6), BASELINES, k=10, window=200)
    assert first.to_json() == second.to_json()
    data = json.loads(first.to_json())
    assert set(data["overall"]) == set(BASELINES)
    assert data["catalogue"] == {"oulad:AAA-2013J": 211}
    assert len(data["series"]["step"]) == len(data["series"]["isgd"]["ndcg"]) >= 2
    assert "seconds" not in data and "seconds" in json.loads(first.to_json(timings=True))
    png = first.plot(tmp_path / "report.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------- leakage


class FrameSnooper:
    """Cheats: finds the harness's current block on the call stack and recommends today's clicks."""

    name = "frame-snooper"

    def learn_one(self, event):
        pass

    def recommend(self, user_id: str, candidates: Sequence[str], k: int, now: datetime) -> list[str]:
        frame = sys._getframe(1)
        while frame is not None:
            for value in list(frame.f_locals.values()):
                if isinstance(value, Block):
                    allowed = set(candidates)
                    today = [e.course_id for e in value.events if e.user_id == user_id and e.course_id in allowed]
                    return list(dict.fromkeys(today))[:k]
            frame = frame.f_back
        return list(candidates[:k])


def test_a_policy_reading_the_present_is_caught(oulad_slice):
    steps = _until(oulad_slice, 2)
    # Left unchecked, the cheat is (nearly) perfect...
    cheating = evaluate(steps, {"frame-snooper": FrameSnooper}, k=10)
    assert cheating.overall["frame-snooper"]["recall"] > 0.99
    # ...the audit replays it with each day's events withheld and sees the lists change.
    with pytest.raises(LeakageError, match="frame-snooper.*withheld"):
        evaluate(steps, {"frame-snooper": FrameSnooper}, k=10, audit=True)


def test_every_baseline_passes_the_audit(oulad_slice):
    report = evaluate(_until(oulad_slice, 0), BASELINES, k=10, audit=True)
    assert report.audited


def test_the_project_policy_passes_the_audit(oulad_slice):
    """The worker's own ranking code in the harness reads nothing of the present, and ranks far
    above chance."""
    catalogue = {course: {"part_of": group} for group, courses in oulad_slice.universes.items() for course in courses}
    report = evaluate(_until(oulad_slice, 10), {"coursestream": lambda: RecommenderPolicy(catalogue)}, k=10, audit=True)
    assert report.audited
    assert report.overall["coursestream"]["ndcg"] > 0.45 and report.overall["coursestream"]["recall"] > 0.6


def test_learning_before_scoring_is_caught(oulad_slice):
    # A broken step source that files each day's events in the day before: a policy would
    # learn a day's clicks before that day is scored. The harness refuses to score then.
    blocks = _until(oulad_slice, 3).blocks
    shifted = [replace(b, events=blocks[i + 1].events) for i, b in enumerate(blocks[:-1])]
    with pytest.raises(LeakageError, match="after learning an event"):
        evaluate(Steps(shifted, oulad_slice.universes), {"recent-popularity": BASELINES["recent-popularity"]})


def test_policies_learn_each_day_only_after_it_is_scored(oulad_slice):
    calls: list[tuple[str, datetime]] = []

    class Recorder:
        name = "recorder"

        def learn_one(self, event):
            calls.append(("learn", event.event_time))

        def recommend(self, user_id, candidates, k, now):
            calls.append(("recommend", now))
            return list(candidates[:k])

    steps = _until(oulad_slice, 3)
    evaluate(steps, {"recorder": Recorder})
    latest = None
    for kind, moment in calls:
        if kind == "learn":
            latest = moment if latest is None else max(latest, moment)
        else:
            assert latest is None or latest < moment
    assert sum(kind == "learn" for kind, _ in calls) == sum(len(b.events) for b in steps.blocks)
    assert sum(kind == "recommend" for kind, _ in calls) == sum(len(b.steps) for b in steps.blocks)


def test_recommending_outside_the_candidates_is_refused():
    class Stubborn:
        name = "stubborn"

        def learn_one(self, event):
            pass

        def recommend(self, user_id, candidates, k, now):
            return ["a"]  # even when the learner has taken it

    log = [_click("u1", "a", 0), _click("u1", "b", 1)]
    with pytest.raises(PolicyError, match="not candidates"):
        evaluate(prequential_steps(log, catalogue=["a", "b"]), {"stubborn": Stubborn})
