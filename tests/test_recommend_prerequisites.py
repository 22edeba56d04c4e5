"""Prerequisites on the real CS course graph, through the real vector store and ranking:
a learner who completed a course is offered what it unlocks, never a course they are not ready for
(exploring items included)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from encoders.text import TextEncoder
from online.events import ClickEvent
from online.prerequisites import PrerequisiteGraph
from online.profile import LearnerProfile
from online.recommender import Recommender
from streams.vectorstore import CoursePoint, EdgeVectorStore
from tests.store_candidates import store_candidates

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def graph(shared_data) -> PrerequisiteGraph:
    prereqs = shared_data / "prereqs"
    return PrerequisiteGraph.from_csv(prereqs / "cs_courses.csv", prereqs / "cs_edges.csv")


@pytest.fixture(scope="module")
def store(graph, tmp_path_factory):
    courses = sorted(graph.titles)
    vectors = TextEncoder().encode([graph.title(c) for c in courses])
    opened = EdgeVectorStore(tmp_path_factory.mktemp("cs") / "edge")
    opened.ensure_collection({"text": vectors.shape[1]})
    opened.upsert([
        CoursePoint(c, {"text": v}, {"title": graph.title(c), "prerequisites": sorted(graph.prerequisites.get(c, ()))})
        for c, v in zip(courses, vectors)
    ])
    yield opened, dict(zip(courses, vectors))
    opened.close()


def learner_who_completed(path: list[str], vectors) -> LearnerProfile:
    profile, start = LearnerProfile(), datetime(2024, 1, 1, tzinfo=timezone.utc)
    for day, course in enumerate(path):
        event = ClickEvent(event_id=f"{course}-done", user_id="u", course_id=course, action="complete",
                           event_time=start + timedelta(days=day))
        profile.learn_one(event, vectors[course], offset=day)
    return profile


def test_completing_a_course_offers_what_it_unlocks_and_nothing_unready(graph, store) -> None:
    opened, vectors = store
    goals = sorted(c for c in graph.titles if graph.dependents.get(c) and graph.prerequisites.get(c))[:40]
    offered_unlocked = 0
    for goal in goals:
        completed_path = graph.learning_path(goal)  # all it needs, then the goal itself
        profile = learner_who_completed(completed_path, vectors)
        items = Recommender().recommend(profile, store_candidates(opened, profile, 10), k=10, seed=goal)
        done = set(completed_path)
        for item in items:
            assert not graph.unmet(item.course_id, done), f"{item.course_id} recommended before its prerequisites"
            assert item.course_id not in done
        unlocked = graph.unlocked_by(goal, done - {goal})
        if unlocked and unlocked & {item.course_id for item in items}:
            offered_unlocked += 1
            first = next(item for item in items if item.course_id in unlocked)
            assert any(reason.code == "unlocked_by" and reason.course_id == goal for reason in first.reasons)
    with_unlocks = sum(bool(graph.unlocked_by(g, set(graph.learning_path(g)) - {g})) for g in goals)
    assert offered_unlocked == with_unlocks, "every course that unlocks something is followed by it"
