"""Rank candidate courses for a learner and say why.

The first policy, ``nearest-interest-v1``: candidates are the courses nearest to the
learner's interest vector (the vector store finds them); the ranking drops what the
learner already took and orders the rest by cosine similarity.

>>> from online.profile import LearnerProfile
>>> profile = LearnerProfile(recent=["c1"])
>>> items = rank(profile, [Candidate("c1", 0.99, {}), Candidate("c3", 0.5, {}), Candidate("c2", 0.8, {})], k=5)
>>> [(item.course_id, item.rank) for item in items]
[('c2', 1), ('c3', 2)]
>>> items[0].reasons[0].code
'interest_similarity'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from online.events import Reason, RecommendedItem
from online.profile import LearnerProfile

POLICY = "nearest-interest-v1"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A course offered for ranking, with its similarity to the query and its payload."""

    course_id: str
    similarity: float
    payload: Mapping[str, Any] = field(default_factory=dict)


def rank(profile: LearnerProfile, candidates: Iterable[Candidate], k: int) -> list[RecommendedItem]:
    """The top ``k`` candidates the learner has not taken, best first, with reasons."""
    fresh = sorted((c for c in candidates if not profile.has_taken(c.course_id)), key=lambda c: (-c.similarity, c.course_id))
    return [
        RecommendedItem(
            course_id=c.course_id,
            rank=position,
            score=round(c.similarity, 6),
            reasons=[
                Reason(
                    code="interest_similarity",
                    text=f"Close to what you engaged with recently (cosine {c.similarity:.2f})",
                    value=round(c.similarity, 4),
                )
            ],
        )
        for position, c in enumerate(fresh[:k], start=1)
    ]
