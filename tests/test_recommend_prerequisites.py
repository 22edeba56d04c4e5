"""Prerequisites on the real CS course graph, through the real vector store and ranking:
a learner who completed a course is offered what it unlocks, never a course they are not ready for
(exploring items included), even after 500 courses, where the profile's Bloom filter errs."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from encoders.text import TextEncoder
from online.candidates import shortlist
from online.catalogue import Catalogue
from online.events import ClickEvent
from online.prerequisites import PrerequisiteGraph
from online.profile import LearnerProfile
from online.recommender import Recommender
from online.taken import TakenCourses
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


def test_a_learner_who_took_500_courses_is_never_offered_one_they_are_not_ready_for(shared_data, graph, store) -> None:
    """At 500 taken courses the profile's Bloom filter says "taken" of about 5% of untaken courses,
    so checking prerequisites against it lets unready courses through; the exact set does not."""
    opened, vectors = store
    with open(shared_data / "catalogs" / "udemy_courses.csv", newline="", encoding="utf-8") as file:
        udemy = [f"udemy:{row['course_id']}" for row in csv.DictReader(file)][:400]
    done: list[str] = []
    for goal in sorted(graph.titles):  # whole learning paths, prerequisites first, up to 100 CS courses
        path = [c for c in graph.learning_path(goal, set(done)) if c not in done]
        if len(done) + len(path) <= 100:
            done += path
    assert len(done) >= 90
    profile, exact, start = LearnerProfile(), TakenCourses(), datetime(2024, 1, 1, tzinfo=timezone.utc)
    for i, course in enumerate(udemy + done):
        event = ClickEvent(event_id=f"e{i}", user_id="u", course_id=course, action="complete",
                           event_time=start + timedelta(hours=i))
        profile.learn_one(event, vectors.get(course), offset=i)
        exact.add(course)
    profile = LearnerProfile.from_bytes(profile.to_bytes())
    assert len(exact) == 500 and profile.events == 500

    catalogue = Catalogue()
    courses = sorted(graph.titles)
    rows = np.array([catalogue.put(c, vectors[c], {"prerequisites": sorted(graph.prerequisites.get(c, ()))})
                     for c in courses], dtype=np.int64)
    taken = set(done)
    ready = {c for c in courses if c not in taken and graph.prerequisites.get(c, set()) <= taken}
    unready = {c for c in courses if c not in taken} - ready
    assert len(unready) >= 300 and len(ready) >= 30

    listed = shortlist(catalogue, profile, rows, taken=exact, seed="500")
    shown = {catalogue.course_ids[row] for row in listed.rows}
    assert not shown & unready, f"{sorted(shown & unready)[:5]} shown before their prerequisites"
    assert shown <= ready
    assert all(c in profile.taken for c in ready - shown), "only the filter's rare false 'taken' hides a ready course"
    for explore_share in (0.0, 0.5):  # every item of the ranked list, exploring ones included
        [items] = Recommender(explore_share=explore_share).rank(catalogue, [listed], k=len(listed.rows))
        assert {item["course_id"] for item in items} == shown

    # The test can fail: checked against the Bloom filter alone, unready courses get through.
    leaked = {catalogue.course_ids[row] for row in shortlist(catalogue, profile, rows).rows} & unready
    print(f"\n{len(unready)} unready courses: the Bloom filter alone lets {len(leaked)} through, the exact set none")
    assert leaked
