"""Step 2, learn: a learner event updates the learner's profile and their partition's shared
models, and asks for a fresh list.

The list an event is taken to answer (what the bandit and the re-ranker learn from) is the
learner's last one published before it, kept compact in memory
(:class:`~online.recommender.Shown`) until it is written; after that, it is read back from the
latest-recommendations table. Every course taken up until the next list learns from it, less
what the learner took since (``Shown.untaken``).
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

import orjson
from faust.types import EventT

from online.policies import assign
from online.profile import LearnerProfile
from online.recommender import NOTHING_SHOWN, LearnerEvent, Recommender, Shown
from streams.worker.app import latest_recommendations, profiles, settings
from streams.worker.course_index import course_index
from streams.worker.partitions import recommender


@dataclass(frozen=True, slots=True)
class Wanted:
    """A learner's fresh list to rank: by their partition's engine and their policy, at an event time."""

    engine: Recommender
    profile: LearnerProfile
    policy: str
    time: float
    seed: str
    event: EventT | None = None  # the stream event it answers: its partition's tables hold the engine's state
    taken: Container[str] | None = None  # every course the learner took, exactly: prerequisites are checked against it


async def load_profile(user: bytes) -> LearnerProfile:
    """A learner's profile (a new one for a newcomer), its interest in the current model's space."""
    stored = profiles.get(user)
    profile = LearnerProfile.from_bytes(stored) if stored else LearnerProfile(half_life_days=settings.interest_half_life_days)
    if course_index.model_version and profile.vector_version != course_index.model_version:
        await course_index.ensure(profile.recent)
        rows = [row for c in profile.recent if (row := course_index.row(c)) is not None]
        vectors = [v for row in rows if (v := course_index.vector(row)) is not None]
        media: dict[str, list] = {}
        for row in rows:
            for modality, reduced in course_index.media(row).items():
                media.setdefault(modality, []).append(reduced)
        profile.rebase(vectors, course_index.model_version, media)
    return profile


def last_list(user: bytes, unwritten: Shown | None) -> Shown | None:
    """The learner's last list: the one not written yet, else the table's."""
    if unwritten is not None:
        return unwritten
    raw = latest_recommendations.get(user)
    return Shown.of(orjson.loads(raw)["items"]) if raw else None


def learn(event: EventT, value: LearnerEvent, profile: LearnerProfile, unwritten: Shown | None,
          taken: Container[str] | None = None) -> Wanted:
    """Learn ``value`` into ``profile`` and its partition's models; the fresh list it asks for.
    ``unwritten`` is the learner's last list if it is not written yet; ``taken`` what they took, exactly."""
    message = event.message
    shown = NOTHING_SHOWN
    if not profile.has_taken(value.course_id):  # only a first use learns from the last list: else spare reading it
        shown = last_list(message.key, unwritten) or NOTHING_SHOWN
    row = course_index.row(value.course_id)
    engine = recommender(message.partition)
    engine.learn_one(
        profile,
        value,
        course_index.vector(row) if row is not None else None,
        course_index.catalogue.payloads[row] if row is not None else {},
        offset=message.offset,
        shown=shown,
        media=course_index.media(row) if row is not None else None,
    )
    policy = assign(value.user_id, settings.policies)
    return Wanted(engine, profile, policy, value.event_time.timestamp(), value.event_id, event, taken)
