"""Baseline policies for the offline harness, one per module (river style).

Each implements :class:`~online.evaluation.protocol.Policy` (``name``, ``learn_one``,
``recommend``) from the events alone, is deterministic under its ``seed``, and says in its
docstring what it falls back to for a learner it knows nothing about and which parameters
were picked on OULAD AAA 2013J. :data:`BASELINES` builds each with those parameters.
"""

from __future__ import annotations

from collections.abc import Callable

from online.evaluation.baselines.cooccurrence import CoOccurrence
from online.evaluation.baselines.decayed_popularity import DecayedPopularity
from online.evaluation.baselines.isgd import ISGD
from online.evaluation.baselines.recent_popularity import RecentPopularity
from online.evaluation.baselines.river_mf import RiverMF
from online.evaluation.baselines.user_knn import UserKNN

#: Factories of the baselines with their tuned parameters, by name.
BASELINES: dict[str, Callable[[], object]] = {
    "recent-popularity": RecentPopularity,
    "decayed-popularity": DecayedPopularity,
    "co-occurrence": CoOccurrence,
    "user-knn": UserKNN,
    "river-mf": RiverMF,
    "isgd": ISGD,
}

__all__ = ["BASELINES", "CoOccurrence", "DecayedPopularity", "ISGD", "RecentPopularity", "RiverMF", "UserKNN"]
