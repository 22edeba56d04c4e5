"""Why each listed course is there, in words and in codes, built for the listed items only.

A reason has a machine-readable ``code`` (clients may translate it), a ``text`` in words that
names courses by title, and, where it has one, the ``value`` and the ``course_id`` it speaks of.
Reasons come strongest first: by the feature's contribution to the score (weight times value,
its share included); an exploring item says so first.

>>> import numpy as np
>>> from online.catalogue import Catalogue
>>> from online.features import FEATURES
>>> from online.profile import LearnerProfile
>>> catalogue = Catalogue()
>>> _ = catalogue.put("intro", None, {"title": "Programming 101"})
>>> _ = catalogue.put("loops", None, {"title": "Loops", "prerequisites": ["intro"]})
>>> x = dict.fromkeys(FEATURES, 0.0) | {"unlocks": 1.0, "similarity": 0.8}
>>> [r["text"] for r in reasons(catalogue, LearnerProfile(recent=["intro"]), 1, x, {"unlocks": 1.0, "similarity": 2.0})]
['Close to what you engaged with recently (cosine 0.80)', 'Builds on Programming 101, which you just took']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from online.catalogue import Catalogue
from online.features import FEATURES, course_level_fit
from online.order import Pick
from online.profile import LearnerProfile


def reasons(
    catalogue: Catalogue,
    profile: LearnerProfile,
    row: int,
    x: Mapping[str, float],
    weights: Mapping[str, float],
    arm: str | None = None,
) -> list[dict[str, Any]]:
    """The reasons of the course at catalogue ``row`` with features ``x`` (see the module)."""
    last = profile.recent[-1] if profile.recent else None
    prerequisites = catalogue.prerequisites[row]
    found: list[tuple[float, dict[str, Any]]] = []

    def add(feature: str, reason: dict[str, Any]) -> None:
        share = f"{feature}_share"
        found.append((weights.get(feature, 0.0) * x[feature] + weights.get(share, 0.0) * x.get(share, 0.0), reason))

    if x["similarity"] > 0:
        add("similarity", {"code": "interest_similarity", "value": round(x["similarity"], 4),
                           "text": f"Close to what you engaged with recently (cosine {x['similarity']:.2f})"})
    if x["collaborative"] >= 0.01:
        add("collaborative", {"code": "taken_next_by_others", "course_id": last, "value": round(x["collaborative"], 4),
                              "text": f"Learners who took what you took recently went on to it "
                                      f"({x['collaborative']:.0%})"})
    if x["popularity"] > 0:
        takers = math.expm1(x["popularity"])
        add("popularity", {"code": "popular_now", "value": round(takers, 2),
                           "text": f"Taken up lately by about {takers:.0f} learners"})
    if x["in_use"] > 0:
        uses = math.expm1(x["in_use"])
        add("in_use", {"code": "in_use_now", "value": round(uses, 2),
                       "text": f"In use by your cohort: about {uses:.0f} visits lately"})
    if x["factors"] > 0:
        add("factors", {"code": "used_by_learners_like_you", "value": round(x["factors"], 4),
                        "text": "Learners whose history is like yours use it"})
    if x["newly_used"] >= 0.5:
        add("newly_used", {"code": "new_in_cohort", "text": "Your cohort started on it in the last days"})
    if x["unlocks"] and last is not None:
        add("unlocks", {"code": "unlocked_by", "course_id": last,
                        "text": f"Builds on {catalogue.title_of(last)}, which you just took"})
    elif prerequisites:
        add("prerequisites_met", {"code": "prerequisites_met", "course_id": prerequisites[0],
                                  "text": "You have taken what it builds on: "
                                          + ", ".join(catalogue.title_of(c) for c in prerequisites[:3])})
    if not np.isnan(catalogue.difficulty[row]):
        fit, mastery = course_level_fit(profile.knowledge, catalogue, row)
        if mastery is not None and fit >= 0.5:
            add("level_fit", {"code": "matches_level", "value": round(mastery, 3),
                              "text": f"{str(catalogue.payloads[row]['level']).capitalize()}: just above your "
                                      f"mastery ({mastery:.2f}) of what it teaches"})
    if x["freshness"] >= 0.5:
        add("freshness", {"code": "new_course", "text": "Recently added to the catalogue"})
    ordered = [reason for _, reason in sorted(found, key=lambda item: -item[0])]
    if arm is not None:
        ordered.insert(0, {"code": "exploration", "text": f"Something different to try (exploring: {arm})"})
    return ordered


def explain(
    catalogue: Catalogue,
    profile: LearnerProfile,
    rows: np.ndarray,
    scores: np.ndarray,
    features: np.ndarray,
    picks: Sequence[Pick],
    weights: Mapping[str, float],
) -> list[dict[str, Any]]:
    """The listed items of one list, in the contract's shape (``online.events.RecommendedItem``):
    course and title, rank, score, reasons, exploration, and the features the re-ranker learns from."""
    chosen = [i for i, _ in picks]
    values = features[chosen]
    items = []
    for position, ((i, arm), row, rounded) in enumerate(zip(picks, values.tolist(), values.round(4).tolist()), 1):
        items.append({
            "course_id": catalogue.course_ids[rows[i]],
            "title": catalogue.title(int(rows[i])),
            "rank": position,
            "score": round(float(scores[i]), 6),
            "reasons": reasons(catalogue, profile, int(rows[i]), dict(zip(FEATURES, row)), weights, arm),
            "explore": arm is not None,
            "exploration_arm": arm,
            "features": dict(zip(FEATURES, rounded)),
        })
    return items
