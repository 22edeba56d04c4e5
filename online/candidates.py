"""A learner's candidates: where they come from, how many, and which may be shown at all.

**Sources.** Three, merged in this order with each course once:

- the courses nearest the learner's interest (the vector store's search), :func:`nearest_limit`
  of them: ``POOL`` per item wanted, plus as many as the learner has taken (up to
  ``MAX_OVERFETCH``), since the store cannot exclude the older taken courses;
- the courses the learner's last course unlocks (it is among their prerequisites), nearest first;
- what others took next after the learner's recent courses and what is popular in the learner's
  context (``online.recommender.Recommender.candidate_ids``).

**Rules** (:func:`shortlist`): a course the learner took is dropped (by the profile's Bloom
filter: a rare false "taken" only hides a course), and so is one whose prerequisites the learner
has not all taken (a learning path shows it after what it needs), checked against an exact set
of what they took (``online.taken``) where the caller has one: the filter alone would let an
unready course through now and then;
where the caller asks, so is one in another language or embedded by another encoder model.

>>> import numpy as np
>>> from online.catalogue import Catalogue
>>> from online.profile import LearnerProfile
>>> catalogue = Catalogue()
>>> for course, required in (("intro", []), ("loops", ["intro"]), ("recursion", ["loops"])):
...     _ = catalogue.put(course, np.array([1.0, 0.0]), {"prerequisites": required})
>>> profile = LearnerProfile()
>>> profile.taken.add("intro")
>>> listed = shortlist(catalogue, profile, catalogue.rows(["intro", "loops", "recursion", "loops"]))
>>> [catalogue.course_ids[row] for row in listed.rows]
['loops']
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass

import numpy as np

from online.catalogue import Catalogue
from online.profile import LearnerProfile

#: Candidates of each source fetched per item wanted: room for the ranking to drop and to choose.
POOL = 4
#: Nearest candidates fetched beyond that to make up for taken courses the rules drop.
MAX_OVERFETCH = 500


def nearest_limit(profile: LearnerProfile, k: int) -> int:
    """How many courses nearest the learner's interest to search for a list of ``k``."""
    return POOL * k + min(profile.taken_count, MAX_OVERFETCH)


def unlocked_by_last(catalogue: Catalogue, profile: LearnerProfile, k: int) -> np.ndarray:
    """The rows of the (at most ``k``) courses the learner's last course unlocks, nearest first."""
    rows = np.array(catalogue.dependents.get(profile.recent[-1], ()) if profile.recent else (), dtype=np.int64)
    if len(rows) > k:
        nearest = np.argsort(-catalogue.similarity(profile.interest, rows), kind="stable")[:k]
        rows = rows[nearest]
    return rows


@dataclass(slots=True)
class Shortlist:
    """One list to rank: the learner, the rows of the courses they may be shown (catalogue rows,
    in source order), each one's similarity to their interest, and the list's event time,
    policy and seed (the triggering event's id: exploration repeats on a replay)."""

    profile: LearnerProfile
    rows: np.ndarray
    similarity: np.ndarray
    time: float = 0.0
    policy: str = ""
    seed: str = ""


def shortlist(
    catalogue: Catalogue,
    profile: LearnerProfile,
    rows: np.ndarray,
    similarity: np.ndarray | None = None,
    *,
    time: float = 0.0,
    policy: str = "",
    seed: str = "",
    language: str | None = None,
    model_version: str | None = None,
    taken: Container[str] | None = None,
) -> Shortlist:
    """The rows the rules let through (see the module), each once, in their first place;
    ``similarity`` is each row's cosine to the learner's interest (computed where not given or
    ``nan``: the store's search gives it for the rows it found); ``taken`` is what the learner
    took, exactly (``online.taken.TakenCourses``), for the prerequisites (default: the profile)."""
    keep = rows >= 0
    _, first = np.unique(rows, return_index=True)
    once = np.zeros(len(rows), dtype=bool)
    once[first] = True
    keep &= once
    known = np.where(keep, rows, 0)
    if language is not None:
        keep &= catalogue.language[known] == catalogue.languages.code(language)
    if model_version is not None:
        keep &= catalogue.model_version[known] == catalogue.versions.code(model_version)
    keep &= ~profile.taken.contains_positions(catalogue.bloom[known])
    has_taken = profile.has_taken if taken is None else taken.__contains__
    for i in np.flatnonzero(keep & catalogue.has_prerequisites[known]):
        keep[i] = all(map(has_taken, catalogue.prerequisites[rows[i]]))
    kept = rows[keep]
    if similarity is None:
        found = catalogue.similarity(profile.interest, kept)
    else:
        found = similarity[keep]
        unknown = np.isnan(found)
        if unknown.any():
            found[unknown] = catalogue.similarity(profile.interest, kept[unknown])
    return Shortlist(profile, kept, found, time, policy, seed)


def merge(sources: Sequence[tuple[np.ndarray, np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows of several sources, in source order, with their similarities (None or ``nan``: to compute)."""
    rows = np.concatenate([rows for rows, _ in sources]) if sources else np.zeros(0, dtype=np.int64)
    if all(similarity is None for _, similarity in sources):
        return rows, None
    return rows, np.concatenate([np.full(len(r), np.nan) if s is None else s for r, s in sources])
