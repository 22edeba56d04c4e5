"""The re-ranker's features of every candidate of a segment of lists, as one matrix.

A row a candidate, the lists' rows one after another; a column a feature (:data:`FEATURES`,
each in about [0, 1]). Course-level numbers come from the catalogue's columns and the shared
models' row caches for the whole segment at once; learner-level ones (interest, recent
courses, how many taken, context, mastery, latent factors) are spread over each list's rows.

>>> import numpy as np
>>> from online.candidates import shortlist
>>> from online.catalogue import Catalogue
>>> from online.profile import LearnerProfile
>>> from online.recommender import Recommender
>>> catalogue = Catalogue()
>>> for course, part in (("a", "m1"), ("b", "m2")):
...     _ = catalogue.put(course, np.array([1.0, 0.0]), {"part_of": part})
>>> profile = LearnerProfile(context="m1")
>>> matrix = features(Recommender(), catalogue, [shortlist(catalogue, profile, np.array([0, 1]))])
>>> matrix[:, COLUMN["novelty"]].tolist()
[0.0, 1.0]
>>> matrix[:, COLUMN["image_known"]].tolist()  # no image: unknown, its similarity a neutral 0
[0.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from online.candidates import Shortlist
from online.catalogue import MEDIA_DIM, MODALITIES, UNSET, Catalogue
from online.difficulty import sigmoid
from online.mastery import KnowledgeState
from online.position import position_fit
from online.rows import RowKeys

if TYPE_CHECKING:
    from online.recommender import Recommender

FEATURES = (
    "similarity",         # cosine between the learner's interest and the course
    "collaborative",      # share of learners with the same recent courses who took it next
    "popularity",         # log1p(decayed number of learners who took it up lately)
    "in_use",             # log1p(decayed number of uses lately, first or not: what the cohort works on now)
    "factors",            # the learner's and the course's latent factors' dot product (0 if below)
    "newly_used",         # 1 for a course first used just now (in a cohort: just released), halving every 3 days; 0 for a newcomer
    "unlocks",            # 1 if the learner's last course is one of its prerequisites
    "prerequisites_met",  # 1 if it has prerequisites (all of them taken, or it is dropped)
    "level_fit",          # 1 when its difficulty is just above the learner's mastery; 0.5 unknown
    "novelty",            # 1 if it is outside the learner's current context (module, programme)
    "freshness",          # 1 for a course indexed just now, halving every 14 days
    "popularity_share",   # popularity over the best candidate's: ranking is relative, counts grow with the cohort
    "collaborative_share",  # collaborative over the best candidate's
    "in_use_share",       # in_use over the best candidate's
    "factors_share",      # factors over the best candidate's
    "image_similarity",   # cosine between the learner's image interest and the course's images; 0 unknown
    "image_known",        # 1 if both the learner and the course have an image vector
    "video_similarity",   # the same for video
    "video_known",
    "path_position",      # 1 when others took it up after about as many courses as the learner has taken; 0 unknown
)
#: Each media modality's features: their weights are the learned fusion (``Reranker.learn_list``).
MEDIA_FEATURES = {modality: (f"{modality}_similarity", f"{modality}_known") for modality in MODALITIES}
#: Features scored relative to the best candidate of the list (``{name}_share``).
SHARED = ("popularity", "collaborative", "in_use", "factors")
#: Column of each feature.
COLUMN = {name: j for j, name in enumerate(FEATURES)}
_SHARED_COLUMNS = np.array([COLUMN[name] for name in SHARED])
_SHARE_COLUMNS = np.array([COLUMN[f"{name}_share"] for name in SHARED])
#: How far above current mastery the right difficulty is.
STRETCH = 0.1
FRESH_HALF_LIFE_S = 14 * 86_400.0
NEWLY_USED_HALF_LIFE_S = 3 * 86_400.0


def halved(ages: np.ndarray, half_life: float) -> np.ndarray:
    """``0.5 ** (age / half_life)``, 1 for an age below 0 (a clock ahead), 0 for ``nan`` (never)."""
    return np.where(np.isnan(ages), 0.0, 0.5 ** (np.fmax(ages, 0.0) / half_life))


def level_fit(knowledge: KnowledgeState, difficulty: float, skills: Sequence[str]) -> tuple[float, float | None]:
    """How well a course of ``difficulty`` (nan: unknown) teaching ``skills`` suits the learner,
    and their mastery of those skills (None: unknown).

    The right difficulty is :data:`STRETCH` above what the learner masters: hard enough to
    learn from, not so hard as to fail. Without a level or any quiz answer it is neutral, 0.5.

    >>> knowledge = KnowledgeState(ability=0.0, answers=4)
    >>> level_fit(knowledge, 0.6, ["loops"])
    (1.0, 0.5)
    >>> level_fit(KnowledgeState(), 0.6, ["loops"])
    (0.5, None)
    """
    if np.isnan(difficulty) or knowledge.answers == 0:
        return 0.5, None
    known = [skill for skill in skills if skill in knowledge.skills]
    mastery = float(np.mean([knowledge.mastery(s) for s in known])) if known else sigmoid(knowledge.ability)
    return max(0.0, 1.0 - 2.0 * abs(difficulty - (mastery + STRETCH))), mastery


def course_level_fit(knowledge: KnowledgeState, catalogue: Catalogue, row: int) -> tuple[float, float | None]:
    """:func:`level_fit` of a catalogue row."""
    payload: Mapping[str, Any] = catalogue.payloads[row]
    return level_fit(knowledge, float(catalogue.difficulty[row]), payload.get("skills") or ())


def features(models: Recommender, catalogue: Catalogue, lists: Sequence[Shortlist]) -> np.ndarray:
    """The :data:`FEATURES` of every candidate of ``lists`` (see the module); shares are relative to
    the best candidate of the same list."""
    sizes = np.array([len(s.rows) for s in lists], dtype=np.int64)
    total = int(sizes.sum())
    matrix = np.zeros((total, len(FEATURES)))
    if not total:
        return matrix
    rows = np.concatenate([s.rows for s in lists])
    owner = np.repeat(np.arange(len(lists)), sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    times = np.array([s.time for s in lists])[owner]
    ids = RowKeys(catalogue.course_ids, rows)

    matrix[:, COLUMN["similarity"]] = np.concatenate([s.similarity for s in lists])
    popularity, _ = models.popularity.predict_many(ids, times)
    in_use, first_used = models.usage.predict_many(ids, times)
    matrix[:, COLUMN["popularity"]] = np.log1p(popularity)
    matrix[:, COLUMN["in_use"]] = np.log1p(in_use)
    # what the cohort just began suits a learner on the way; one who took nothing yet starts where it is
    on_the_way = np.array([s.profile.taken_count > 0 for s in lists])[owner]
    matrix[:, COLUMN["newly_used"]] = np.where(on_the_way, halved(times - first_used, NEWLY_USED_HALF_LIFE_S), 0.0)
    matrix[:, COLUMN["freshness"]] = halved(times - catalogue.indexed_at[rows], FRESH_HALF_LIFE_S)
    matrix[:, COLUMN["prerequisites_met"]] = catalogue.has_prerequisites[rows]
    matrix[:, COLUMN["level_fit"]] = 0.5
    learners = [s.profile.factors for s in lists]
    if any(f is not None for f in learners):
        n_factors = next(len(f) for f in learners if f is not None)
        by_list = np.array([np.zeros(n_factors) if f is None else f for f in learners], dtype=np.float64)
        matrix[:, COLUMN["factors"]] = np.maximum(0.0, models.factors.scores(by_list[owner], ids))
    contexts = np.array([catalogue.parts.code(s.profile.context) for s in lists], dtype=np.int32)[owner]
    parts = catalogue.part_of[rows]
    matrix[:, COLUMN["novelty"]] = (contexts != UNSET) & (parts != UNSET) & (parts != contexts)
    taken = np.array([s.profile.taken_count for s in lists], dtype=np.float64)[owner]
    matrix[:, COLUMN["path_position"]] = position_fit(taken, *models.position.predict_many(ids))

    for s, start, size in zip(lists, starts.tolist(), sizes.tolist()):
        if not size:
            continue
        own = slice(start, start + size)
        profile = s.profile
        if profile.recent:
            matrix[own, COLUMN["collaborative"]] = models.transitions.scores_of(
                profile.recent, RowKeys(catalogue.course_ids, s.rows))
        if profile.recent and profile.recent[-1] in catalogue.dependents:
            matrix[own, COLUMN["unlocks"]] = np.isin(s.rows, catalogue.dependents[profile.recent[-1]])
        if profile.knowledge.answers:
            for i in np.flatnonzero(~np.isnan(catalogue.difficulty[s.rows])):
                matrix[start + i, COLUMN["level_fit"]] = course_level_fit(profile.knowledge, catalogue, int(s.rows[i]))[0]

    media_similarity(catalogue, lists, rows, owner, matrix)

    columns = matrix[:, _SHARED_COLUMNS]
    best = np.zeros((len(lists), len(SHARED)))
    best[sizes > 0] = np.maximum.reduceat(columns, starts[sizes > 0], axis=0)
    best = np.maximum(best, 0.0)[owner]
    matrix[:, _SHARE_COLUMNS] = np.divide(columns, best, out=np.zeros_like(columns), where=best > 0)
    return matrix


def media_similarity(catalogue: Catalogue, lists: Sequence[Shortlist], rows: np.ndarray, owner: np.ndarray,
                     matrix: np.ndarray) -> None:
    """Fill the :data:`MEDIA_FEATURES` columns of ``matrix``: per modality, the cosine between each
    list's learner's interest and each candidate's reduced vector where both exist (known), else 0
    and not known: a course without an image is no evidence either way."""
    for modality in MODALITIES:
        interests = [s.profile.media.get(modality) for s in lists]
        if all(interest is None for interest in interests):
            continue
        by_list = np.array([np.zeros(MEDIA_DIM) if i is None else i.vector for i in interests], dtype=np.float32)
        norms = catalogue.media_norms[modality][rows] * np.linalg.norm(by_list, axis=1).astype(np.float64)[owner]
        dots = np.einsum("ij,ij->i", catalogue.media_vectors[modality][rows], by_list[owner])
        known = norms > 0
        similarity, indicator = MEDIA_FEATURES[modality]
        matrix[:, COLUMN[similarity]] = np.divide(dots, norms, out=np.zeros(len(rows)), where=known)
        matrix[:, COLUMN[indicator]] = known
