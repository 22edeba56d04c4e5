"""The read API's view of the worker (``streams.web``): learner rows not written yet first,
profile summaries, learning paths, cold-start lists, and the lists published lately."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import faust

from online.catalogue import context_key
from online.difficulty import sigmoid
from online.events import utcnow
from online.policies import assign
from online.popularity import DecayedPopularity
from online.profile import LearnerProfile
from online.recommender import Recommender
from online.taken import TakenCourses
from streams.vectorstore import Search
from streams.auth import Authenticator
from streams.web import create_api, serve_api
from streams.worker.app import app, latest_recommendations, learned, profiles, settings, taken
from streams.worker.course_index import course_index
from streams.worker.learn import Wanted
from streams.worker.learners import unwritten
from streams.worker.partitions import fusion_weights
from streams.worker.recent import recent_lists
from streams.worker.ranking import rank


class ReadThrough:
    """A learner table as the read API sees it: a row not written yet first, as the agent reads it."""

    def __init__(self, table: faust.types.TableT, unwritten_row: Callable[[bytes], bytes | None]) -> None:
        self.name = table.name
        self._table = table
        self._unwritten_row = unwritten_row

    def get(self, key: bytes) -> bytes | None:
        row = self._unwritten_row(key)
        return row if row is not None else self._table.get(key)


async def describe_profile(user_id: str, profile: LearnerProfile) -> dict[str, Any]:
    """A readable summary of a learner: activity, recent courses, what their interest is near."""
    near: list[dict[str, Any]] = []
    await course_index.ensure(profile.recent)
    catalogue = course_index.catalogue
    if profile.interest is not None:
        [(rows, similarities)] = await course_index.search([Search(profile.interest, 5 + len(profile.recent))])
        for row, similarity in zip(rows.tolist(), similarities.tolist()):
            course_id = catalogue.course_ids[row] if row >= 0 else None
            if course_id is not None and not profile.has_taken(course_id) and len(near) < 5:
                near.append({"course_id": course_id, "title": catalogue.payloads[row].get("title"),
                             "similarity": round(similarity, 3)})
    knowledge = profile.knowledge
    return {
        "user_id": user_id,
        "events": profile.events,
        "courses_taken": profile.taken_count,
        "recent_courses": [{"course_id": c, "title": catalogue.title_of(c)} for c in profile.recent[::-1]],
        "interests": near,
        "mastery": {
            "overall": round(sigmoid(knowledge.ability), 3),
            "answers": knowledge.answers,
            "by_skill": {skill: round(knowledge.mastery(skill), 3) for skill in reversed(knowledge.skills)},
        },
        "model_version": profile.vector_version,
    }


async def learning_path(user_id: str, profile: LearnerProfile, goal: str) -> list[dict[str, Any]]:
    """The courses the learner still has to take to reach ``goal``, in order, with titles: from
    what they took, exactly (the taken-courses table; the profile's Bloom filter is not exact)."""
    graph = await course_index.prerequisite_graph()
    done = TakenCourses.from_bytes(ReadThrough(taken, unwritten.taken_row).get(user_id.encode()))
    return [{"course_id": c, "title": graph.title(c)} for c in graph.learning_path(goal, done)]


#: The context a learner with none is given for a cold start: every context at once.
EVERY_CONTEXT = "*"


async def cold_start(user_id: str, context: str | None) -> dict[str, Any]:
    """Before a learner's first event: what learners take up in ``context`` or, without one, in
    every context, as this worker has seen it (its partitions' lists summed), marked cold start.

    The lists are found by a scan of the local ``learned`` rows: outside a stream event, a
    keyed read of Faust's RocksDB store was seen to miss rows that the scan finds.
    """
    known_as = context_key(context)

    def wanted(key: str) -> bool:
        return key.endswith(f":popularity:t:{known_as}") if known_as is not None else ":popularity:t:" in key

    top = DecayedPopularity().combined_top(top for key, top in learned.items() if wanted(key))
    key = known_as or EVERY_CONTEXT
    popularity = DecayedPopularity(table={f"t:{key}": top, **{f"c:{course_id}": [score, then, then]
                                                                for course_id, score, then in top}})
    engine = Recommender(popularity=popularity, explore_share=settings.explore_share)
    profile, policy = LearnerProfile(context=key), assign(user_id, settings.policies)
    now = popularity.latest(key) or time.time()  # event time: a replayed history is not old news
    [items] = await rank([Wanted(engine, profile, policy, now, user_id)])
    return {
        "user_id": user_id,
        "generated_at": utcnow().isoformat(),
        "cold_start": True,
        "context": context,
        "items": items,
        "policy": policy,
        "model_version": course_index.model_version or "none",
    }


if settings.web_enabled:
    serve_api(app, create_api(app, ReadThrough(profiles, unwritten.profile_row),
                              ReadThrough(latest_recommendations, unwritten.latest_row),
                              describe_profile, learning_path, cold_start, recent_lists, fusion_weights,
                              auth=Authenticator.from_settings(settings)))
