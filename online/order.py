"""Which candidates a list shows, in which order: the ranking policies.

Given each candidate's score (the re-ranker's probability that the learner takes it up next):

- :data:`RERANKED` orders by score, ties by course id;
- :data:`DIVERSE` picks by maximal marginal relevance among the best ``POOL * k``
  (``online.diversity``), so the list is not ten near-duplicates;
- the best course the last one has just unlocked always gets a place: progress along a
  curriculum is the point;
- a share of slots (``explore_share``) explores: a bandit arm (``online.exploration``) picks a
  course the ranking would not have shown.

Only the best few are sorted: a list needs its top ``POOL * k`` at most, and the best unlocked
course.

>>> import numpy as np
>>> best_first(np.array([0.2, 0.9, 0.9, 0.1]), ["d", "c", "b", "a"], 3)
[2, 1, 0]
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np

from online.candidates import POOL
from online.diversity import mmr
from online.exploration import ThompsonExplorer
from online.features import COLUMN

RERANKED = "reranked-v3"
DIVERSE = "reranked-diverse-v3"
POLICIES = (RERANKED, DIVERSE)
#: How much relevance counts against redundancy in the diverse policy.
DIVERSITY_LAMBDA = 0.7

#: A pick: the candidate's index in its list, and the exploring arm that picked it (None: the ranking).
Pick = tuple[int, str | None]


def best_first(scores: np.ndarray, ids: Sequence[str], n: int) -> list[int]:
    """The indices of the ``n`` best scores, best first, ties by course id."""
    if len(scores) > n:
        threshold = np.partition(scores, len(scores) - n)[len(scores) - n]
        among = np.flatnonzero(scores >= threshold).tolist()
    else:
        among = range(len(scores))
    return sorted(among, key=lambda i: (-scores[i], ids[i]))[:n]


def best_first_many(scores: np.ndarray, rows: np.ndarray, sizes: Sequence[int], course_ids: Sequence[str],
                    n: int) -> list[list[int]]:
    """:func:`best_first` of each list of a segment (its candidates, catalogue ``rows``, one list
    after another, a list ``sizes[j]`` long), in one sort: by list, then score, then course id.

    >>> best_first_many(np.array([0.2, 0.9, 0.5, 0.5]), np.array([0, 1, 2, 3]), [2, 2], ["d", "c", "b", "a"], 1)
    [[1], [1]]
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    owner = np.repeat(np.arange(len(sizes)), sizes)
    # the segment's courses ranked by id (not the whole catalogue's: it grows as events name courses)
    distinct, where = np.unique(rows, return_inverse=True)
    names = [course_ids[row] for row in distinct.tolist()]
    name_rank = np.empty(len(names), dtype=np.int64)
    name_rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    ordered = np.lexsort((name_rank[where], -scores, owner))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()
    return [(ordered[start : start + min(n, size)] - start).tolist() for start, size in zip(starts, sizes.tolist())]


def _best(values: np.ndarray, left: np.ndarray, ids: Sequence[str]) -> int:
    """The candidate among ``left`` with the greatest value, ties to the greatest course id."""
    top = values[left].max()
    return max(left[values[left] == top].tolist(), key=ids.__getitem__)


def exploration_picks(
    ids: Sequence[str], features: np.ndarray, shown: set[int], rng: random.Random
) -> dict[str, int]:
    """What each exploration arm would pick among the candidates not in the list yet."""
    mask = np.ones(len(ids), dtype=bool)
    mask[list(shown)] = False
    left = np.flatnonzero(mask)
    if not len(left):
        return {}
    picks = {"similar": _best(features[:, COLUMN["similarity"]], left, ids), "random": int(rng.choice(left))}
    for arm, feature in (("collaborative", "collaborative"), ("popular", "popularity"), ("fresh", "freshness")):
        values = features[:, COLUMN[feature]]
        if (values[left] > 0).any():
            picks[arm] = _best(values, left, ids)
    return picks


def order(
    scores: np.ndarray,
    features: np.ndarray,
    ids: Sequence[str],
    unit_vectors: Callable[[list[int]], np.ndarray] | None,
    k: int,
    policy: str,
    explorer: ThompsonExplorer,
    explore_share: float,
    seed: str,
    best: list[int] | None = None,
) -> list[Pick]:
    """The picks of one list (see the module). ``unit_vectors`` gives the unit vectors of the
    candidates at some indices, for :data:`DIVERSE` (None: the candidates have none, and the list
    is ranked by score). ``best`` is :func:`best_first` of the list, where the caller sorted a
    whole segment at once."""
    rng = random.Random(seed)
    explore = int(explore_share * k) + (rng.random() < (explore_share * k) % 1)
    exploit = max(0, k - explore)
    if best is None:
        best = best_first(scores, ids, max(exploit, POOL * k if policy == DIVERSE else 0))
    chosen = best[:exploit]
    if policy == DIVERSE and len(ids) and unit_vectors is not None:
        top = best[: POOL * k]
        chosen = [top[j] for j in mmr(scores[top].tolist(), unit_vectors(top), exploit, DIVERSITY_LAMBDA)]
    unlocking = np.flatnonzero(features[:, COLUMN["unlocks"]])
    if len(unlocking) and exploit and not set(unlocking.tolist()) & set(chosen):
        unlocked = min(unlocking.tolist(), key=lambda i: (-scores[i], ids[i]))
        chosen = [*chosen[: exploit - 1], unlocked]  # one slot is kept for the next step of the curriculum
    picks: list[Pick] = [(i, None) for i in chosen]
    for _ in range(explore):
        arm_picks = exploration_picks(ids, features, {i for i, _ in picks}, rng)
        if not arm_picks:
            break
        arm = explorer.pull(rng, sorted(arm_picks))
        picks.insert(rng.randint(min(2, len(picks)), len(picks)), (arm_picks[arm], arm))
    return picks
