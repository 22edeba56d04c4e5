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
    """Indices of ``k`` items in pick order; ``vectors`` are the items' unit vectors, one per row.

    Only the picked items' similarities are computed: ``k`` rows of the similarity matrix, not all
    of them (10 of 150 for a list). Ties go to the lower index.
    """
    gain = lambda_ * np.asarray(relevance, dtype=np.float64)
    redundancy = np.zeros(len(gain))  # max(0, greatest cosine to a picked item)
    available = np.ones(len(gain), dtype=bool)
    picked: list[int] = []
    for _ in range(min(k, len(gain))):
        best = int(np.argmax(np.where(available, gain - (1 - lambda_) * redundancy, -np.inf)))
        picked.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, vectors @ vectors[best])
    return picked
