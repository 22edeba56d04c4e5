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
>>> x = np.zeros((1, len(FEATURES)))
>>> x[0, FEATURES.index("unlocks")], x[0, FEATURES.index("similarity")] = 1.0, 0.8
>>> weighed = contributions(x, {"unlocks": 1.0, "similarity": 2.0})
>>> [r["text"] for r in reasons(catalogue, LearnerProfile(recent=["intro"]), 1, x[0].tolist(), weighed[0].tolist())]
['Close to what you engaged with recently (cosine 0.80)', 'Builds on Programming 101, which you just took']
>>> x[0, FEATURES.index("image_similarity")], x[0, FEATURES.index("image_known")] = 0.9, 1.0
>>> weighed = contributions(x, {"image_similarity": 2.0, "similarity": 2.0})
>>> [r["code"] for r in reasons(catalogue, LearnerProfile(recent=["intro"]), 1, x[0].tolist(), weighed[0].tolist())]
['images_like_taken', 'interest_similarity', 'unlocked_by']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from online.catalogue import Catalogue
from online.features import COLUMN, FEATURES, MEDIA_FEATURES, course_level_fit
from online.order import Pick
from online.profile import LearnerProfile


#: The columns of the features that have a share, and of their shares: a reason's contribution counts both.
_OWN, _SHARE = (np.array(columns) for columns in zip(*(
    (COLUMN[name], COLUMN[f"{name}_share"]) for name in FEATURES if f"{name}_share" in COLUMN)))


def contributions(features: np.ndarray, weights: Mapping[str, float]) -> np.ndarray:
    """Each feature's contribution to the score of each row (weight times value, its share's
    included), a column a feature as in ``features``."""
    weighted = features * np.array([weights.get(name, 0.0) for name in FEATURES])
    weighted[:, _OWN] += weighted[:, _SHARE]
    return weighted


_SIMILARITY, _COLLABORATIVE, _POPULARITY, _IN_USE, _FACTORS, _NEWLY_USED, _UNLOCKS, _PREREQUISITES, _LEVEL, _FRESHNESS = (
    COLUMN[name] for name in ("similarity", "collaborative", "popularity", "in_use", "factors", "newly_used", "unlocks",
                              "prerequisites_met", "level_fit", "freshness"))


#: The reason a media modality's similarity gives: its code and words.
_MEDIA_REASONS = {
    "image": ("images_like_taken", "Its images look like those of the courses you took"),
    "video": ("video_like_taken", "Its video looks like those of the courses you took"),
}
#: Each media reason's code and words, and the columns of its similarity and of its being known.
_MEDIA_COLUMNS = tuple((code, words, COLUMN[MEDIA_FEATURES[modality][0]], COLUMN[MEDIA_FEATURES[modality][1]])
                       for modality, (code, words) in _MEDIA_REASONS.items())


_CONTRIBUTION = itemgetter(0)


def reasons(
    catalogue: Catalogue,
    profile: LearnerProfile,
    row: int,
    x: Sequence[float],
    contribution: Sequence[float],
    arm: str | None = None,
) -> list[dict[str, Any]]:
    """The reasons of the course at catalogue ``row``, whose features are ``x`` and their
    contributions ``contribution`` (columns as :data:`~online.features.FEATURES`; see the module)."""
    last = profile.recent[-1] if profile.recent else None
    found: list[tuple[float, dict[str, Any]]] = []
    similarity, collaborative, popularity, in_use, factors = (
        x[_SIMILARITY], x[_COLLABORATIVE], x[_POPULARITY], x[_IN_USE], x[_FACTORS])
    if similarity > 0:
        found.append((contribution[_SIMILARITY], {
            "code": "interest_similarity", "value": round(similarity, 4),
            "text": f"Close to what you engaged with recently (cosine {similarity:.2f})"}))
    if collaborative >= 0.01:
        found.append((contribution[_COLLABORATIVE], {
            "code": "taken_next_by_others", "course_id": last, "value": round(collaborative, 4),
            "text": f"Learners who took what you took recently went on to it ({collaborative:.0%})"}))
    if popularity > 0:
        takers = math.expm1(popularity)
        found.append((contribution[_POPULARITY], {
            "code": "popular_now", "value": round(takers, 2), "text": f"Taken up lately by about {takers:.0f} learners"}))
    if in_use > 0:
        uses = math.expm1(in_use)
        found.append((contribution[_IN_USE], {
            "code": "in_use_now", "value": round(uses, 2), "text": f"In use by your cohort: about {uses:.0f} visits lately"}))
    if factors > 0:
        found.append((contribution[_FACTORS], {
            "code": "used_by_learners_like_you", "value": round(factors, 4),
            "text": "Learners whose history is like yours use it"}))
    if x[_NEWLY_USED] >= 0.5:
        found.append((contribution[_NEWLY_USED], {"code": "new_in_cohort", "text": "Your cohort started on it in the last days"}))
    prerequisites = catalogue.prerequisites[row]
    if x[_UNLOCKS] and last is not None:
        found.append((contribution[_UNLOCKS], {
            "code": "unlocked_by", "course_id": last, "text": f"Builds on {catalogue.title_of(last)}, which you just took"}))
    elif prerequisites:
        found.append((contribution[_PREREQUISITES], {
            "code": "prerequisites_met", "course_id": prerequisites[0],
            "text": "You have taken what it builds on: " + ", ".join(catalogue.title_of(c) for c in prerequisites[:3])}))
    if profile.knowledge.answers and not math.isnan(catalogue.difficulty[row]):
        fit, mastery = course_level_fit(profile.knowledge, catalogue, row)
        if mastery is not None and fit >= 0.5:
            found.append((contribution[_LEVEL], {
                "code": "matches_level", "value": round(mastery, 3),
                "text": f"{str(catalogue.payloads[row]['level']).capitalize()}: just above your "
                        f"mastery ({mastery:.2f}) of what it teaches"}))
    for code, words, similarity, known in _MEDIA_COLUMNS:
        if x[known] and contribution[similarity] > 0:
            found.append((contribution[similarity], {
                "code": code, "value": round(x[similarity], 4), "text": f"{words} (cosine {x[similarity]:.2f})"}))
    if x[_FRESHNESS] >= 0.5:
        found.append((contribution[_FRESHNESS], {"code": "new_course", "text": "Recently added to the catalogue"}))
    found.sort(key=_CONTRIBUTION, reverse=True)  # stable: equal contributions keep their order
    ordered = [reason for _, reason in found]
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
    contribution = contributions(values, weights).tolist()
    items = []
    listed = rows[chosen].tolist()
    for position, ((_, arm), row, x, rounded, weighed, score) in enumerate(
            zip(picks, listed, values.tolist(), values.round(4).tolist(), contribution, scores[chosen].tolist()), 1):
        items.append({
            "course_id": catalogue.course_ids[row],
            "title": catalogue.title(row),
            "rank": position,
            "score": round(score, 6),
            "reasons": reasons(catalogue, profile, row, x, weighed, arm),
            "explore": arm is not None,
            "exploration_arm": arm,
            "features": dict(zip(FEATURES, rounded)),
        })
    return items
