"""What the baselines share: reading an event as an interaction, ranking with tie-breakers.

Every learner event is an interaction of its learner with its ``course_id`` (a click on an
OULAD resource, an answer to an EdNet question, a score on an assessment). Times are seconds
since the epoch; a day is 86,400 of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from online.events import ClickEvent, QuizEvent, VideoEvent

Event = ClickEvent | VideoEvent | QuizEvent

DAY = 86_400.0


def seconds(moment: datetime) -> float:
    """Seconds since the epoch of an aware datetime."""
    return moment.timestamp()


def strength(event: Event, weighting: str) -> float:
    """How much one event counts: ``"events"`` 1 each, ``"clicks"`` the click count, ``"log"`` log(1 + count).

    >>> from datetime import datetime, timezone
    >>> e = ClickEvent(event_id="e", user_id="u", course_id="c", action="open", count=3,
    ...                event_time=datetime(2024, 5, 1, tzinfo=timezone.utc))
    >>> strength(e, "events"), strength(e, "clicks"), round(strength(e, "log"), 3)
    (1.0, 3.0, 1.386)
    """
    count = float(event.count) if isinstance(event, ClickEvent) else 1.0
    if weighting == "events":
        return 1.0
    if weighting == "clicks":
        return count
    if weighting == "log":
        return math.log1p(count)
    raise ValueError(f"weighting must be events, clicks or log, not {weighting!r}")


@dataclass(frozen=True, slots=True)
class LatentFactors:
    """How a matrix-factorisation baseline learns its learner and item factors by SGD."""

    n_factors: int = 10
    learning_rate: float = 0.01
    l2: float = 0.001
    seed: int = 42


def top_k(candidates: Sequence[str], k: int, *keys: np.ndarray) -> list[str]:
    """The ``k`` candidates with the highest ``keys[0]``, ties by ``keys[1]``, ..., then candidate order.

    >>> top_k(["a", "b", "c", "d"], 3, np.array([1.0, 2.0, 1.0, 1.0]), np.array([0.0, 0.0, 5.0, 0.0]))
    ['b', 'c', 'a']
    """
    if not candidates:
        return []
    order = np.lexsort((np.arange(len(candidates)), *(-np.asarray(key, dtype=np.float64) for key in reversed(keys))))
    return [candidates[i] for i in order[:k]]
