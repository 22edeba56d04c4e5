"""Rank candidate courses for a learner, respecting prerequisites, and say why.

Two policies (run side by side with ``online.policies.assign``). ``nearest-interest-v2``:

- candidates are the courses nearest the learner's interest vector, plus the courses that
  list the course just engaged with as a prerequisite (the vector store finds both);
- a course the learner took is dropped, and so is a course with a prerequisite the learner
  has not taken: it is not recommended before its time (a learning path shows it after
  what it needs);
- the rest are ordered by cosine similarity, with a bonus for a course the last engaged
  course has just unlocked, and the best of those always gets a place (the last one, if it
  did not earn one): progress along a curriculum is the point of learning.

``diverse-interest-v2`` does the same, then picks the list by maximal marginal relevance
(``online.diversity``) among the best ``4 k``, so it is not ten near-duplicates. Every item
says why, in machine-readable reasons.

>>> from online.profile import LearnerProfile
>>> profile = LearnerProfile(recent=["intro"])
>>> items = rank(profile, [
...     Candidate("intro", 0.99, {}),                                   # taken
...     Candidate("advanced", 0.9, {"prerequisites": ["data"]}),        # not ready
...     Candidate("similar", 0.8, {}),
...     Candidate("next", 0.7, {"prerequisites": ["intro"]}),           # just unlocked
... ], k=5)
>>> [(item.course_id, item.rank) for item in items]
[('next', 1), ('similar', 2)]
>>> [reason.code for reason in items[0].reasons]
['interest_similarity', 'unlocked_by']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from online.diversity import mmr
from online.events import Reason, RecommendedItem
from online.profile import LearnerProfile

NEAREST = "nearest-interest-v2"
DIVERSE = "diverse-interest-v2"
POLICIES = (NEAREST, DIVERSE)
#: How much relevance counts against redundancy in the diverse policy.
DIVERSITY_LAMBDA = 0.7
#: Added to the similarity of a course that the last engaged course has just unlocked.
UNLOCK_BONUS = 0.15


@dataclass(frozen=True, slots=True)
class Candidate:
    """A course offered for ranking, with its similarity to the query and its payload."""

    course_id: str
    similarity: float
    payload: Mapping[str, Any] = field(default_factory=dict)
    vector: np.ndarray | None = None


def rank(
    profile: LearnerProfile, candidates: Iterable[Candidate], k: int, policy: str = NEAREST
) -> list[RecommendedItem]:
    """The top ``k`` courses the learner has not taken and is ready for, with reasons, by ``policy``."""
    last = profile.recent[-1] if profile.recent else None
    scored: dict[str, tuple[float, list[Reason]]] = {}
    vectors: dict[str, np.ndarray | None] = {}
    for c in candidates:
        if c.course_id in scored or profile.has_taken(c.course_id):
            continue
        prerequisites = list(c.payload.get("prerequisites") or ())
        if any(not profile.has_taken(p) for p in prerequisites):
            continue
        score = c.similarity
        reasons = [
            Reason(
                code="interest_similarity",
                text=f"Close to what you engaged with recently (cosine {c.similarity:.2f})",
                value=round(c.similarity, 4),
            )
        ]
        if last is not None and last in prerequisites:
            score += UNLOCK_BONUS
            reasons.append(Reason(code="unlocked_by", text=f"Builds on {last}, which you just took", course_id=last))
        elif prerequisites:
            reasons.append(
                Reason(
                    code="prerequisites_met",
                    text=f"You have taken what it builds on: {', '.join(prerequisites[:3])}",
                    course_id=prerequisites[0],
                )
            )
        scored[c.course_id] = (score, reasons)
        vectors[c.course_id] = c.vector
    ranked = sorted(scored.items(), key=lambda item: (-item[1][0], item[0]))
    best = ranked
    if policy == DIVERSE and all(vectors[course_id] is not None for course_id, _ in best):
        pool = best[: 4 * k]
        if pool:
            matrix = np.stack([vectors[course_id] for course_id, _ in pool])
            matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
            best = [pool[i] for i in mmr([score for _, (score, _) in pool], matrix, k, DIVERSITY_LAMBDA)]
    best = best[:k]
    unlocked = [item for item in ranked if any(r.code == "unlocked_by" for r in item[1][1])]
    if unlocked and k > 0 and not any(item in best for item in unlocked):
        best = [*best[: k - 1], unlocked[0]]  # one slot is kept for the next step of the curriculum
    return [
        RecommendedItem(course_id=course_id, rank=position, score=round(score, 6), reasons=reasons)
        for position, (course_id, (score, reasons)) in enumerate(best, start=1)
    ]
