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
of what they took (``online.taken``) where the list has one: the filter alone would let an
unready course through now and then;
and one the learner dismissed lately (``online.dismissals``);
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
    policy and seed (the triggering event's id: exploration repeats on a replay); ``taken`` is
    every course the learner took, exactly (``online.taken.TakenCourses``), which prerequisites
    are checked against (None: the profile's Bloom filter)."""

    profile: LearnerProfile
    rows: np.ndarray
    similarity: np.ndarray
    time: float = 0.0
    policy: str = ""
    seed: str = ""
    taken: Container[str] | None = None


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
    """One list's :func:`apply_rules`, in the learner's ``language`` if given; ``taken``: what the
    learner took, exactly, for the prerequisites (see :class:`Shortlist`)."""
    offered = Shortlist(profile, rows, np.full(len(rows), np.nan) if similarity is None else similarity, time, policy,
                        seed, taken)
    [listed] = apply_rules(catalogue, [offered], languages=None if language is None else [language],
                           model_version=model_version)
    return listed


#: A language code no course has: a list that keeps every language.
_ANY = -3


def apply_rules(
    catalogue: Catalogue,
    offered: Sequence[Shortlist],
    *,
    languages: Sequence[str | None] | None = None,
    model_version: str | None = None,
) -> list[Shortlist]:
    """Each offered list with only the rows the rules let through (see the module), each once, in
    its first place, for a whole segment of lists at once. ``similarity`` is each row's cosine to
    the learner's interest, computed where ``nan`` (the store's search gives it for the rows it
    found). ``languages`` gives each list's language (None: any), ``model_version`` the encoder
    model every course must have been embedded with."""
    if not offered:
        return []
    sizes = np.array([len(o.rows) for o in offered], dtype=np.int64)
    rows = np.concatenate([o.rows for o in offered]).astype(np.int64, copy=False)
    similarity = np.concatenate([o.similarity for o in offered]).astype(np.float64, copy=False)
    owner = np.repeat(np.arange(len(offered)), sizes)
    keep = rows >= 0
    known = np.where(keep, rows, 0)
    _, first = np.unique(owner * (len(catalogue) + 1) + np.where(keep, rows, len(catalogue)), return_index=True)
    once = np.zeros(len(rows), dtype=bool)
    once[first] = True
    keep &= once
    if languages is not None:
        codes = np.array([_ANY if lang is None else catalogue.languages.code(lang) for lang in languages])[owner]
        keep &= (codes == _ANY) | (catalogue.language[known] == codes)
    if model_version is not None:
        keep &= catalogue.model_version[known] == catalogue.versions.code(model_version)
    taken_bits = np.stack([o.profile.taken.bits() for o in offered])
    keep &= ~taken_bits[owner[:, None], catalogue.bloom[known]].all(axis=1)
    ends = np.cumsum(sizes)
    for j in [j for j, o in enumerate(offered) if o.profile.dismissed]:  # few learners have any
        span = slice(ends[j] - sizes[j], ends[j])
        keep[span] &= ~offered[j].profile.dismissed.hides(catalogue.bloom[known[span]], offered[j].time)
    for i in np.flatnonzero(keep & catalogue.has_prerequisites[known]).tolist():
        listed = offered[owner[i]]
        has_taken = listed.profile.has_taken if listed.taken is None else listed.taken.__contains__
        keep[i] = all(map(has_taken, catalogue.prerequisites[rows[i]]))
    unknown = np.flatnonzero(keep & np.isnan(similarity))
    if len(unknown):
        similarity[unknown] = _similarity(catalogue, offered, rows[unknown], owner[unknown])
    kept_ends = np.cumsum(np.bincount(owner[keep], minlength=len(offered))).tolist()
    kept_rows, kept_similarity = rows[keep], similarity[keep]
    return [Shortlist(o.profile, kept_rows[start:end], kept_similarity[start:end], o.time, o.policy, o.seed, o.taken)
            for o, start, end in zip(offered, [0, *kept_ends[:-1]], kept_ends)]


def _similarity(catalogue: Catalogue, offered: Sequence[Shortlist], rows: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Cosine of each row's vector to its list's learner's interest (0 without either); ``owner``
    (each row's list) in order, the rows of a list together."""
    dim = catalogue.vectors.shape[1]
    similarity = np.zeros(len(rows))
    starts = np.flatnonzero(np.diff(owner, prepend=-1)).tolist()
    for start, end in zip(starts, [*starts[1:], len(rows)]):
        interest = offered[owner[start]].profile.interest
        if interest is None or len(interest) != dim:
            continue
        interest = interest.astype(np.float32)
        own = rows[start:end]
        norms = catalogue.norms[own] * np.linalg.norm(interest[None], axis=1).astype(np.float64)
        dots = np.einsum("ij,j->i", catalogue.vectors[own], interest)
        np.divide(dots, norms, out=similarity[start:end], where=norms > 0)
    return similarity


def merge(sources: Sequence[tuple[np.ndarray, np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of several sources, in source order, with their similarities (``nan``: to compute;
    a source without similarities gives None)."""
    if not sources:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    rows = np.concatenate([rows for rows, _ in sources])
    return rows, np.concatenate([np.full(len(r), np.nan) if s is None else s for r, s in sources])
