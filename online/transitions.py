"""What others learned next: an online item-to-item collaborative model of course transitions.

When a learner takes up a course for the first time, each of the courses they engaged with
just before it (the learner's eight most recent) gets one more decayed count towards it
(:data:`RECENT_WEIGHTS`). The model then scores a course for a learner by how often learners with the same recent
path went on to it: ``P(next = c | recent) ~ sum_r w_r * count(r -> c) / count(r -> *)``.

Beside matrix factorisation
---------------------------
This is the collaborative part of the learner model in the sense "what others like them
learned next": learners are alike when their recent paths are. It is directional (order
matters in a curriculum, and co-occurrence or MF ignore it), a new course needs no factors to
warm up, and its rows give candidates directly (the successors of the learner's recent
courses) where MF would need a scan of every course's factors. Latent factors
(``online.factorization``) see the learner's whole history instead of the last few courses;
the re-ranker uses both, and on OULAD each adds to the other.

Rows keep at most ``max_successors`` successors (the weakest go), so state is bounded per
course; counts are halved every ``half_life_days`` of event time so the model follows a
cohort as it moves on.

>>> from online.transitions import NextCourse
>>> model = NextCourse()
>>> for learner in range(3):
...     model.learn_one(["intro"], "loops", time=0.0)
>>> model.learn_one(["intro"], "history", time=0.0)
>>> model.learn_one(["intro", "loops"], "recursion", time=0.0)
>>> round(model.predict_one(["intro"], "loops"), 2)
0.6
>>> [course for course, _ in model.successors(["intro", "loops"], n=2)]
['recursion', 'loops']
>>> model.predict_one(["unknown"], "loops")
0.0
>>> model.scores_of(["intro", "loops"], ["loops", "art", "recursion"]).tolist()
[0.3, 0.0, 0.6]
"""

from __future__ import annotations

import heapq
from collections.abc import MutableMapping, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
from river import base

from online.rows import Slots

SECONDS_PER_DAY = 86_400.0
#: Weight of the most recent courses a take-up is credited to, latest first: the profile's eight,
#: alike, because the order of what a learner does within a session or day says little (OULAD
#: gives none within a day). On OULAD AAA 2013J (days up to 60) NDCG@10 of the project's policy
#: is 0.575 with weights 1, 1/2, 1/4, 0.589 with eight falling from 1 to 0.2, 0.592 with eight alike.
RECENT_WEIGHTS = (1.0,) * 8


class NextCourse(base.Estimator):
    """Decayed counts of which course learners take up after which.

    Parameters
    ----------
    half_life_days
        How fast old transitions fade.
    max_successors
        Successors kept per course; the weakest are forgotten.
    table
        Where the state lives: course id -> ``[time, total, {successor: count}]``,
        JSON-friendly; a dict by default. Rows are re-assigned on every update.
    """

    def __init__(
        self,
        half_life_days: float = 14.0,
        max_successors: int = 32,
        table: MutableMapping[str, list[Any]] | None = None,
    ) -> None:
        self.half_life_days = half_life_days
        self.max_successors = max_successors
        self.table: MutableMapping[str, list[Any]] = {} if table is None else table
        # the scores of the last recent paths asked about: candidates ask for each list; learning clears it
        self._scores: dict[tuple[str, ...], dict[str, float]] = {}
        # a slot for each course, and each row read as arrays (successors' slots, counts, total),
        # for scores of many courses at once; a row is dropped when learning writes it
        self._slots = Slots()
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
        self._summed = np.zeros(0)  # the sums of one recent path by slot (see _add), all 0 between calls

    def learn_one(self, recent: Sequence[str], course_id: str, time: float) -> None:
        """A learner whose latest courses are ``recent`` (oldest first) took up ``course_id``."""
        self._scores.clear()
        for weight, previous in zip(RECENT_WEIGHTS, reversed(recent)):
            if previous != course_id:
                self._count(previous, course_id, time, weight)

    def _count(self, previous: str, course_id: str, time: float, weight: float) -> None:
        then, total, successors = self.table.get(previous) or (time, 0.0, {})
        if time > then:
            fade = 0.5 ** ((time - then) / (self.half_life_days * SECONDS_PER_DAY))
            total, successors, then = total * fade, {c: n * fade for c, n in successors.items()}, time
        else:  # late: the transition counts as decayed to the row's time
            weight *= 0.5 ** ((then - time) / (self.half_life_days * SECONDS_PER_DAY))
        successors = {**successors, course_id: successors.get(course_id, 0.0) + weight}
        if len(successors) > self.max_successors:  # heapq.nlargest's order, by one sort in C
            successors = dict(sorted(successors.items(), key=itemgetter(1), reverse=True)[: self.max_successors])
        self.table[previous] = [then, total + weight, successors]
        self._arrays.pop(previous, None)

    def scores(self, recent: Sequence[str]) -> dict[str, float]:
        """:meth:`predict_one` of every course that followed the ``recent`` courses."""
        path = tuple(recent)
        if path not in self._scores:
            if len(self._scores) > 1024:
                self._scores.clear()
            self._scores[path] = self._score(path)
        return self._scores[path]

    def _score(self, recent: Sequence[str]) -> dict[str, float]:
        rows, norm = self._add(recent)
        followed = np.unique(np.concatenate([slots for slots, _, _ in rows])) if rows else np.zeros(0, dtype=np.intp)
        scores = dict(zip((self._slots.keys[slot] for slot in followed.tolist()),
                          (self._summed[followed] / norm).tolist()))
        self._clear(rows)
        return scores

    def scores_of(self, recent: Sequence[str], course_ids: Sequence[str]) -> np.ndarray:
        """:meth:`predict_one` of each of ``course_ids`` (``online.rows.RowKeys`` found by row), as
        an array."""
        wanted = self._slots.of(course_ids)
        rows, norm = self._add(recent)
        scores = self._summed[wanted] / norm if norm else np.zeros(len(wanted))
        self._clear(rows)
        return scores

    def _add(self, recent: Sequence[str]) -> tuple[list[tuple[np.ndarray, np.ndarray, float]], float]:
        """The weighted shares of the rows of ``recent``'s courses added up by slot in
        ``_summed`` (row by row, latest first), and the weights' sum; the rows, for :meth:`_clear`."""
        weighted = [(weight, self._row(previous)) for weight, previous in zip(RECENT_WEIGHTS, reversed(recent))]
        if len(self._summed) < len(self._slots):  # after the rows: reading one gives its successors slots
            self._summed = np.zeros(2 * len(self._slots))
        for weight, row in weighted:
            if row is not None:
                slots, counts, total = row
                self._summed[slots] += weight * counts / total
        return [row for _, row in weighted if row is not None], sum(weight for weight, _ in weighted)

    def _clear(self, rows: list[tuple[np.ndarray, np.ndarray, float]]) -> None:
        """``_summed`` back to 0 where :meth:`_add` added: the work is the path's, not the catalogue's."""
        for slots, _, _ in rows:
            self._summed[slots] = 0.0

    def _row(self, previous: str) -> tuple[np.ndarray, np.ndarray, float] | None:
        """A row's successors' slots and counts, and its total (None: no row, or nothing counted)."""
        arrays = self._arrays.get(previous)
        if arrays is None:
            row = self.table.get(previous)
            if row is None or not row[1]:
                return None
            _, total, successors = row
            arrays = self._arrays[previous] = (
                self._slots.of(list(successors)), np.fromiter(successors.values(), dtype=np.float64, count=len(successors)),
                total)
        return arrays

    def predict_one(self, recent: Sequence[str], course_id: str) -> float:
        """How likely learners with these ``recent`` courses went on to ``course_id``, in [0, 1]."""
        return self.scores(recent).get(course_id, 0.0)

    def successors(self, recent: Sequence[str], n: int) -> list[tuple[str, float]]:
        """The ``n`` courses learners most often took up after these ``recent`` courses."""
        return heapq.nlargest(n, self.scores(recent).items(), key=lambda item: (item[1], item[0]))
