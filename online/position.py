"""Where in learners' paths a course is taken up, learned online.

Each course keeps the mean and spread of how many courses a learner had taken before taking it
up (Welford's running moments, over the learners who took it up). A curriculum has an order
that learners follow at their own pace: a course others take up after about as many courses as
this learner has taken now suits where the learner is, whatever their calendar.

State lives in a mapping the caller provides (``{course}`` -> ``[learners, mean, sum of squared
deviations]``, JSON-friendly), so a stream processor's table can back it.

>>> from online.position import PathPosition
>>> position = PathPosition()
>>> for taken_before in (3, 4, 5):
...     position.learn_one("loops", taken_before)
>>> position.learn_one("intro", 0)
>>> learners, mean, spread = position.predict_many(["loops", "intro", "never taken"])
>>> learners.tolist(), mean.tolist(), spread.round(2).tolist()
([3.0, 1.0, 0.0], [4.0, 0.0, 0.0], [1.0, 0.0, 0.0])
>>> position_fit(4, *position.predict_many(["loops", "intro"])).round(2).tolist()  # a course known from one learner: 0
[1.0, 0.0]
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

import numpy as np
from river import base

from online.rows import RowCache

#: Courses of spread added to a course's own: a course a few learners took at the same point
#: still suits learners a course or two either side.
SLACK = 2.0
#: Learners a course needs before its place says anything.
MIN_LEARNERS = 2


class PathPosition(base.Estimator):
    """Per-course running mean and spread of the number of courses taken before it.

    Parameters
    ----------
    table
        Where the state lives (see the module docstring); a dict by default.
    """

    def __init__(self, table: MutableMapping[str, Any] | None = None) -> None:
        self.table: MutableMapping[str, Any] = {} if table is None else table
        self._rows = RowCache(3, lambda course_id: self.table.get(course_id) or (0.0, 0.0, 0.0))

    def learn_one(self, course_id: str, taken_before: int) -> None:
        """Count one take-up of ``course_id`` by a learner who had taken ``taken_before`` courses."""
        learners, mean, squares = self.table.get(course_id) or (0.0, 0.0, 0.0)
        learners += 1.0
        deviation = taken_before - mean
        mean += deviation / learners
        squares += deviation * (taken_before - mean)
        self.table[course_id] = row = [learners, mean, squares]
        self._rows.set(course_id, row)

    def predict_many(self, course_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each course: the learners who took it up, the mean number of courses they had taken
        before, and its standard deviation (arrays; 0 for a course nobody took up)."""
        rows = self._rows.get_many(course_ids)
        spread = np.sqrt(rows[:, 2] / np.maximum(rows[:, 0] - 1.0, 1.0))
        return rows[:, 0], rows[:, 1], spread


def position_fit(taken: float | np.ndarray, learners: np.ndarray, mean: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """How well each course's place suits a learner who has taken ``taken`` courses: 1 at its mean,
    falling as a Gaussian of its spread (plus :data:`SLACK`); 0 below :data:`MIN_LEARNERS`."""
    closeness = np.exp(-0.5 * ((taken - mean) / (spread + SLACK)) ** 2)
    return np.where(learners >= MIN_LEARNERS, closeness, 0.0)
