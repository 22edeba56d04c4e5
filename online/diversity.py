"""Maximal marginal relevance: a list that is relevant and not ten near-duplicates.

Greedily picks the item that maximises ``lambda_ * relevance - (1 - lambda_) * max cosine to
what is already picked`` (Carbonell & Goldstein, 1998).

>>> import numpy as np
>>> vectors = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0]])  # two near-duplicates and another
>>> mmr([0.9, 0.89, 0.6], vectors, k=2, lambda_=0.7)
[0, 2]
>>> mmr([0.9, 0.89, 0.6], vectors, k=2, lambda_=1.0)  # relevance only
[0, 1]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mmr(relevance: Sequence[float], vectors: np.ndarray, k: int, lambda_: float = 0.7) -> list[int]:
    """Indices of ``k`` items in pick order; ``vectors`` are the items' unit vectors, one per row."""
    remaining = list(range(len(relevance)))
    if not remaining:
        return []
    similarity = vectors @ vectors.T
    picked: list[int] = []
    redundancy = np.full(len(relevance), -np.inf)
    while remaining and len(picked) < k:
        scores = [lambda_ * relevance[i] - (1 - lambda_) * max(redundancy[i], 0.0) for i in remaining]
        best = remaining.pop(int(np.argmax(scores)))
        picked.append(best)
        redundancy = np.maximum(redundancy, similarity[best])
    return picked
