"""Ranking a segment of lists: candidates (one store call), then each partition's engine ranks
its lists (features, order and explain: ``online.recommender.Recommender.rank``); bursts
coalesced; rank requests answered.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

import numpy as np
from faust.types import EventT, Message

from online.candidates import shortlist
from online.events import RankRequest
from online.policies import assign
from online.profile import LearnerProfile
from online.recommender import LearnerEvent
from streams import metrics
from streams.faust_fixes import processing
from streams.worker.app import settings
from streams.worker.candidates import candidates
from streams.worker.course_index import course_index
from streams.worker.learn import Wanted
from streams.worker.partitions import recommender
from streams.worker.publish import recommendation


async def rank(wanted: Sequence[Wanted]) -> list[list[dict[str, Any]]]:
    """The items of each wanted list: one candidate search for all, then each engine's lists
    ranked together (features as one matrix, scores as one product, only listed items explained)."""
    k = settings.recommendations_k
    with metrics.learner_steps["candidates"].time():
        lists = await candidates(wanted, k)
    ranked: list[list[dict[str, Any]]] = [[] for _ in wanted]
    by_engine: dict[int, list[int]] = {}
    for i, w in enumerate(wanted):
        by_engine.setdefault(id(w.engine), []).append(i)
    with metrics.learner_steps["rank"].time():
        for group in by_engine.values():
            w = wanted[group[0]]
            with processing(w.event):  # the engine's models read their partition's rows
                for i, items in zip(group, w.engine.rank(course_index.catalogue, [lists[i] for i in group], k)):
                    ranked[i] = items
    return ranked


Queued = tuple[EventT, LearnerEvent, Wanted]


def coalesce(to_rank: Sequence[Queued]) -> tuple[list[Queued], dict[bytes, list[tuple[EventT, LearnerEvent]]]]:
    """Each learner's last list of a segment, in order, and by learner the earlier events it also
    answers: their lists would be stale before anyone read them, and nothing learns from them (an
    event learns from the list published before its batch)."""
    last = {event.message.key: i for i, (event, _, _) in enumerate(to_rank)}
    earlier: dict[bytes, list[tuple[EventT, LearnerEvent]]] = {}
    for i, (event, value, _) in enumerate(to_rank):
        if last[event.message.key] != i:
            earlier.setdefault(event.message.key, []).append((event, value))
    return [to_rank[i] for i in sorted(last.values())], earlier


async def answer(request: RankRequest, message: Message, profile: LearnerProfile,
                 taken: Container[str] | None = None) -> dict[str, Any]:
    """Rank exactly the request's candidates (those indexed with the current model) for the
    learner, from their profile and their partition's state now; nothing is learned. ``taken``:
    what the learner took, exactly, for the prerequisites."""
    await course_index.ensure(request.candidates)
    rows = [row for course_id in request.candidates if (row := course_index.row(course_id)) is not None]
    policy = assign(request.user_id, settings.policies)
    catalogue = course_index.catalogue
    listed = shortlist(catalogue, profile, np.array(rows, dtype=np.int64),
                       time=request.event_time.timestamp(), policy=policy, seed=request.event_id, taken=taken)
    [items] = recommender(message.partition).rank(catalogue, [listed], request.k)
    return recommendation(request, message, items, policy)
