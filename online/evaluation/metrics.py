"""Ranking metrics of one recommendation list, and the catalogue-level ones.

Relevance is binary: an item is relevant when the learner took it up at the step scored.
Every per-step metric is "at K", where K is the length the list was asked for (a policy may
return fewer items; the missing places count as misses).

>>> recommended = ["a", "b", "c"]
>>> relevant = {"b", "x"}
>>> recall_at_k(recommended, relevant, k=3)    # 1 hit out of min(3, 2) = 2
0.5
>>> round(ndcg_at_k(recommended, relevant, k=3), 4)   # (1/log2 3) / (1 + 1/log2 3)
0.3869
>>> reciprocal_rank(recommended, relevant)     # first hit at rank 2
0.5
>>> round(precision_at_k(recommended, relevant, k=3), 4), hit_at_k(recommended, relevant, k=3)
(0.3333, 1.0)
>>> round(f1_at_k(recommended, relevant, k=3), 4)   # harmonic mean of 1/3 and 1/2
0.4
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence

#: The per-step metrics, in the order of :func:`step_scores` (and of the report).
PER_STEP = ("recall", "precision", "f1", "hit_rate", "ndcg", "mrr")
#: The metrics reported for every policy, in report order.
METRICS = (*PER_STEP, "coverage", "prerequisite_violations")

PrerequisitesMet = Callable[[str, frozenset[str]], bool]
"""Says whether a recommended course's prerequisites are met: ``(course_id, taken) -> bool``."""


def no_prerequisites(course_id: str, taken: frozenset[str]) -> bool:
    """The hook for catalogues without prerequisites (OULAD): every course is open.

    >>> no_prerequisites("oulad:AAA-2013J:vle:546652", frozenset())
    True
    """
    return True


def _discount(rank: int) -> float:
    """The DCG discount of a 0-based rank: 1 / log2(rank + 2)."""
    return 1.0 / math.log2(rank + 2)


def recall_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Hits in the first ``k`` over ``min(k, len(relevant))``; 0.0 when nothing is relevant.

    >>> recall_at_k(["a", "b"], {"a", "b", "c"}, k=2)   # the best possible with k=2
    1.0
    >>> recall_at_k(["a", "b"], {"c"}, k=2)
    0.0
    """
    if not relevant:
        return 0.0
    hits = sum(1 for item in recommended[:k] if item in relevant)
    return hits / min(k, len(relevant))


def precision_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Hits in the first ``k`` over ``k`` (a shorter list's missing places are misses).

    >>> precision_at_k(["a", "b"], {"a"}, k=4)
    0.25
    """
    return sum(1 for item in recommended[:k] if item in relevant) / k


def f1_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    """The harmonic mean of :func:`precision_at_k` and :func:`recall_at_k`; 0.0 without a hit.

    >>> f1_at_k(["a", "b"], {"a", "b"}, k=2), f1_at_k(["a", "b"], {"c"}, k=2)
    (1.0, 0.0)
    """
    precision, recall = precision_at_k(recommended, relevant, k), recall_at_k(recommended, relevant, k)
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def hit_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    """1.0 if any of the first ``k`` is relevant, else 0.0: its mean over steps is the hit rate.

    >>> hit_at_k(["a", "b"], {"b"}, k=2), hit_at_k(["a", "b"], {"b"}, k=1)
    (1.0, 0.0)
    """
    return float(any(item in relevant for item in recommended[:k]))


def ndcg_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    """DCG of the first ``k`` over the ideal DCG of ``min(k, len(relevant))`` hits on top.

    >>> ndcg_at_k(["a", "b"], {"a"}, k=2)
    1.0
    >>> round(ndcg_at_k(["b", "a"], {"a"}, k=2), 4)   # 1/log2(3)
    0.6309
    """
    if not relevant:
        return 0.0
    dcg = sum(_discount(rank) for rank, item in enumerate(recommended[:k]) if item in relevant)
    ideal = sum(_discount(rank) for rank in range(min(k, len(relevant))))
    return dcg / ideal


def reciprocal_rank(recommended: Sequence[str], relevant: Collection[str], k: int | None = None) -> float:
    """1 / the rank of the first relevant item in the first ``k`` (all when None); 0.0 if none.

    >>> reciprocal_rank(["a", "b", "c"], {"c"})
    0.3333333333333333
    >>> reciprocal_rank(["a", "b", "c"], {"c"}, k=2)
    0.0
    """
    for rank, item in enumerate(recommended[:k] if k is not None else recommended):
        if item in relevant:
            return 1.0 / (rank + 1)
    return 0.0


def coverage(recommended_lists: Iterable[Iterable[str]], universe: Collection[str]) -> float:
    """Share of ``universe`` that appears in at least one list (items outside it are ignored).

    >>> coverage([["a", "b"], ["b", "z"]], {"a", "b", "c", "d"})
    0.5
    """
    if not universe:
        return 0.0
    seen = {item for items in recommended_lists for item in items}
    return len(seen & set(universe)) / len(universe)


def prerequisite_violations(
    recommended: Sequence[str], taken: frozenset[str], prerequisites_met: PrerequisitesMet
) -> int:
    """How many recommended courses have prerequisites the learner has not met.

    >>> requires = {"b": {"a"}}
    >>> met = lambda course, taken: requires.get(course, set()) <= taken
    >>> prerequisite_violations(["b", "c"], frozenset(), met), prerequisite_violations(["b"], frozenset({"a"}), met)
    (1, 0)
    """
    return sum(1 for item in recommended if not prerequisites_met(item, taken))


def step_scores(
    recommended: Sequence[str], relevant: Collection[str], k: int, taken: frozenset[str],
    prerequisites_met: PrerequisitesMet,
) -> tuple[float, ...]:
    """One step's :data:`PER_STEP` metrics, then its prerequisite violations (a count).

    >>> step_scores(["a", "b"], {"b"}, 2, frozenset(), no_prerequisites)
    (1.0, 0.5, 0.6666666666666666, 1.0, 0.6309297535714575, 0.5, 0)
    """
    return (
        recall_at_k(recommended, relevant, k),
        precision_at_k(recommended, relevant, k),
        f1_at_k(recommended, relevant, k),
        hit_at_k(recommended, relevant, k),
        ndcg_at_k(recommended, relevant, k),
        reciprocal_rank(recommended, relevant, k),
        prerequisite_violations(recommended, taken, prerequisites_met),
    )
