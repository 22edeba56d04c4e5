"""A/B assignment is stable and balanced; the diverse policy is less redundant on real data."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from itertools import combinations

import numpy as np
import pytest

from encoders.text import TextEncoder
from online.events import ClickEvent
from online.policies import assign
from online.prerequisites import PrerequisiteGraph
from online.profile import LearnerProfile
from online.recommender import DIVERSE, POLICIES, RERANKED, Recommender
from streams.vectorstore import CoursePoint, EdgeVectorStore
from tests.store_candidates import store_candidates


def test_assignment_is_stable_and_balanced() -> None:
    users = [f"oulad:{i}" for i in range(10_000)]
    shares = Counter(assign(u, POLICIES) for u in users)
    assert all(0.47 < shares[p] / len(users) < 0.53 for p in POLICIES)
    assert [assign(u, POLICIES) for u in users[:100]] == [assign(u, POLICIES) for u in users[:100]]


@pytest.mark.model
def test_diverse_policy_is_less_redundant_and_keeps_the_rules(shared_data, tmp_path) -> None:
    prereqs = shared_data / "prereqs"
    graph = PrerequisiteGraph.from_csv(prereqs / "cs_courses.csv", prereqs / "cs_edges.csv")
    courses = sorted(graph.titles)
    vectors = dict(zip(courses, TextEncoder().encode([graph.title(c) for c in courses])))
    store = EdgeVectorStore(tmp_path / "edge")
    store.ensure_collection({"text": 384})
    store.upsert([CoursePoint(c, {"text": vectors[c]}, {"prerequisites": sorted(graph.prerequisites.get(c, ()))})
                  for c in courses])

    redundancy = {RERANKED: [], DIVERSE: []}
    goals = [c for c in courses if len(graph.learning_path(c)) >= 3][:25]
    for goal in goals:  # a learner who took everything on the way to a goal
        profile = LearnerProfile()
        for day, course in enumerate(graph.learning_path(goal)):
            event = ClickEvent(event_id=f"{goal}-{day}", user_id="u", course_id=course, action="complete",
                               event_time=datetime(2024, 1, 1 + day, tzinfo=timezone.utc))
            profile.learn_one(event, vectors[course], offset=day)
        candidates = store_candidates(store, profile, 10)
        recommender = Recommender(explore_share=0.0)
        for policy in (RERANKED, DIVERSE):
            items = recommender.recommend(profile, candidates, 10, policy)
            assert len(items) >= 8 and not any(profile.has_taken(i.course_id) for i in items)
            assert not any(graph.unmet(i.course_id, profile.taken) for i in items)
            picked = [vectors[i.course_id] for i in items]
            redundancy[policy].append(np.mean([a @ b for a, b in combinations(picked, 2)]))
        first = [recommender.recommend(profile, candidates, 10, policy)[0].course_id for policy in POLICIES]
        assert first[0] == first[1]
    store.close()
    assert np.mean(redundancy[DIVERSE]) < np.mean(redundancy[RERANKED]) - 0.02
