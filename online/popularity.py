"""Time-decayed popularity of courses, learned online: what learners around now take up.

Each course keeps one number: how many learners took it up, each counted once (their first
engagement with it) and weighted by ``0.5 ** (age / half_life)``. With a half-life of a few
days it approximates "distinct learners in the last week", the strongest signal in a cohort
that moves through a course together, in O(1) state per course.

Each context (a module presentation, a programme: the course's ``part_of``) also keeps its
``top_size`` most popular courses, so a new learner gets the popular courses of their context
without a scan of the catalogue.

State lives in a mapping the caller provides (``c:{course}`` -> ``[score, latest time, first time]``,
``t:{context}`` -> ``[[course, score, time], ...]``, JSON-friendly), so a stream processor's
table can back it; entries are re-assigned on every update, as persistent tables require.
Decay is applied lazily, on read and write, so a course nobody touches costs nothing.

>>> from online.popularity import DecayedPopularity
>>> DAY = 86_400.0
>>> popular = DecayedPopularity(half_life_days=7)
>>> popular.learn_one("python", time=0.0, context="programming")
>>> popular.learn_one("python", time=7 * DAY, context="programming")
>>> popular.learn_one("rust", time=7 * DAY, context="programming")
>>> popular.learn_one("latin", time=7 * DAY, context="languages")
>>> popular.predict_one("python", time=7 * DAY)  # the first take-up has halved
1.5
>>> popular.top(2, time=14 * DAY, context="programming")
[('python', 0.75), ('rust', 0.5)]
>>> popular.latest("programming") / DAY
7.0
>>> popular.predict_one("never taken", time=0.0)
0.0

Ranking asks about many courses at once (``nan``: never taken up):

>>> now, first = popular.predict_many(["python", "rust", "never taken"], time=7 * DAY)
>>> now.tolist(), (first / DAY).tolist()
([1.5, 1.0, 0.0], [0.0, 7.0, nan])
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping, Sequence
from typing import Any

import numpy as np
from river import base

from online.rows import RowCache

SECONDS_PER_DAY = 86_400.0


class DecayedPopularity(base.Estimator):
    """Per-course count of take-ups, halved every ``half_life_days`` of event time.

    Parameters
    ----------
    half_life_days
        How fast popularity fades.
    top_size
        Courses kept in each context's list of the most popular.
    table
        Where the state lives (see the module docstring); a dict by default.
    """

    def __init__(
        self, half_life_days: float = 3.0, top_size: int = 50, table: MutableMapping[str, Any] | None = None
    ) -> None:
        self.half_life_days = half_life_days
        self.top_size = top_size
        self.table: MutableMapping[str, Any] = {} if table is None else table
        # [score, latest time, first time] of each course ranking asked about (nan: never taken up)
        self._rows = RowCache(3, lambda course_id: self.table.get(f"c:{course_id}") or (0.0, 0.0, np.nan))

    def _decayed(self, score: float, then: float, time: float) -> float:
        return score * 0.5 ** (max(0.0, time - then) / (self.half_life_days * SECONDS_PER_DAY))

    def learn_one(self, course_id: str, time: float, weight: float = 1.0, context: str | None = None) -> None:
        """Count one take-up of ``course_id`` (of ``context``) at ``time`` in seconds.

        A late take-up counts as decayed to the course's latest time.
        """
        score, then, first = self.table.get(f"c:{course_id}") or (0.0, time, time)
        if time >= then:
            score, then = self._decayed(score, then, time) + weight, time
        else:
            score += self._decayed(weight, time, then)
        self.table[f"c:{course_id}"] = row = [score, then, min(first, time)]
        self._rows.set(course_id, row)
        if context is not None:
            others = [entry for entry in self.table.get(f"t:{context}", []) if entry[0] != course_id]
            half_life = self.half_life_days * SECONDS_PER_DAY  # _decayed's arithmetic, without a call an entry
            ranked = sorted([*others, [course_id, score, then]],
                            key=lambda e: -(e[1] * 0.5 ** (max(0.0, time - e[2]) / half_life)))
            self.table[f"t:{context}"] = ranked[: self.top_size]

    def predict_one(self, course_id: str, time: float) -> float:
        """The course's popularity at ``time``."""
        score, then, _ = self.table.get(f"c:{course_id}") or (0.0, time, time)
        return self._decayed(score, then, time)

    def predict_many(self, course_ids: Sequence[str], time: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict_one` of each course, and when each was first taken up (``nan``: never; in
        a cohort, when it was released), as arrays; ``time`` is one time or one for each course
        (a segment of lists, each at its own event time)."""
        rows = self._rows.get_many(course_ids)
        now = rows[:, 0] * 0.5 ** (np.maximum(0.0, time - rows[:, 1]) / (self.half_life_days * SECONDS_PER_DAY))
        return now, rows[:, 2]

    def latest(self, context: str) -> float | None:
        """When a course of ``context`` was last taken up (None: never)."""
        return max((then for _, _, then in self.table.get(f"t:{context}", [])), default=None)

    def combined_top(self, tops: Iterable[Sequence[Sequence[Any]]]) -> list[list[Any]]:
        """Several lists of the most popular (``t:`` rows: of several contexts, or of one context
        in several tables) as one: each course's take-ups summed, decayed to the latest time among
        them; the ``top_size`` most popular, in the same row shape.

        >>> popular = DecayedPopularity(half_life_days=1, top_size=2)
        >>> popular.combined_top([[["a", 2.0, 86_400.0], ["c", 0.5, 0.0]], [["a", 2.0, 0.0], ["b", 1.5, 86_400.0]]])
        [['a', 3.0, 86400.0], ['b', 1.5, 86400.0]]
        """
        entries = [entry for top in tops for entry in top]
        latest = max((then for _, _, then in entries), default=0.0)
        totals: dict[str, float] = {}
        for course_id, score, then in entries:
            totals[course_id] = totals.get(course_id, 0.0) + self._decayed(score, then, latest)
        ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[: self.top_size]
        return [[course_id, score, latest] for course_id, score in ranked]

    def top(self, n: int, time: float, context: str) -> list[tuple[str, float]]:
        """The ``n`` most popular courses of ``context`` at ``time``, most popular first."""
        entries = self.table.get(f"t:{context}", [])
        if not entries:
            return []
        ids, scores, thens = zip(*entries)
        now = np.array(scores) * 0.5 ** (np.maximum(0.0, time - np.array(thens)) / (self.half_life_days * SECONDS_PER_DAY))
        return sorted(zip(ids, now.tolist()), key=lambda item: (-item[1], item[0]))[:n]
