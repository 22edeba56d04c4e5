"""Latent factors of learners and courses, learned online from every use (implicit matrix factorisation).

Funk's matrix factorisation, as river's ``FunkMF`` computes it, learns one event at a time a
vector per learner and per course whose dot product says how likely the learner is to use the
course: each use is a 1, and ``negatives``
courses drawn uniformly from those known that the learner has not used are 0s. Where the
transitions model (``online.transitions``) sees the learner's last few courses, the factors
sum up everything the learner used: which kinds of material they work with and where in a
curriculum they are. On OULAD it is the strongest single signal the re-ranker gets besides
popularity (see ``online.recommender.PRIOR``).

State is split as the stream processor keeps it: the learner's factors live in their profile
(``online.profile``, 20 float32s), the courses' in a table (course id -> factors and arrival). A
course's factors start from a normal draw seeded by its id, and negatives are drawn from a
random source seeded by the event's id, so a replay learns exactly the same numbers.

The use's step is river's ``FunkMF.learn_one`` (squared loss, clipped gradient, both gradients
taken before either vector moves) written on the arrays directly: the same arithmetic in the same
order, so the same bits (``tests/test_recommender.py`` checks it against river), without the
mapping and optimizer calls that took most of the time of a step of 20 numbers. An event's
negatives then take one mini-batch step together (each gradient at the same learner factors)
rather than one step each: a few array operations instead of a Python loop of steps, with the
same ranking quality on OULAD AAA (NDCG@10 within 0.001 of one step each).

>>> import numpy as np
>>> factors = CourseFactors(n_factors=4, negatives=2)
>>> used = {"ann": set(), "bob": set()}
>>> learners = {"ann": None, "bob": None}
>>> for day in range(40):
...     for learner, course in (("ann", "algebra"), ("bob", "poetry"), ("ann", "calculus"), ("bob", "novels")):
...         used[learner].add(course)
...         learners[learner] = factors.learn_one(learners[learner], course, used[learner].__contains__,
...                                               seed=f"{learner}-{course}-{day}")
>>> scores = factors.scores(learners["ann"], ["calculus", "novels"])
>>> bool(scores[0] > scores[1])
True
>>> factors.scores(learners["ann"], ["never used"]).tolist()
[0.0]
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

import numpy as np
from river import base

from online.rows import RowCache


#: River's ``FunkMF`` default gradient clip.
CLIP_GRADIENT = 1e12


def _initial(key: str, n_factors: int) -> np.ndarray:
    """River's default initialisation (normal, sigma 0.1), seeded by ``key``: the same on every replay."""
    seed = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).normal(0.0, 0.1, n_factors)


class CourseFactors(base.Estimator):
    """Online implicit FunkMF (river) with the learner's factors held by the caller.

    Parameters
    ----------
    n_factors, learning_rate, l2
        As river's ``FunkMF`` (SGD on the squared error).
    negatives
        Unused courses learned as 0 after each use.
    table
        Where the courses' factors live: course id -> ``{"n": arrival number, "v": factors}``.
        Negatives are drawn from the courses in arrival order, so the order survives a restart.
    """

    def __init__(
        self,
        n_factors: int = 20,
        learning_rate: float = 0.05,
        l2: float = 0.001,
        negatives: int = 8,
        table: MutableMapping[str, list[float]] | None = None,
    ) -> None:
        self.n_factors = n_factors
        self.learning_rate = learning_rate
        self.l2 = l2
        self.negatives = negatives
        self.table: MutableMapping[str, dict[str, Any]] = {} if table is None else table
        #: the courses' factors as one array, read from the table once each (a course never used: zeros)
        self._latents = RowCache(
            n_factors, lambda course: self.table[course]["v"] if course in self.table else np.zeros(n_factors))
        # the courses to draw negatives from, in arrival order (read from the table once)
        self._courses: list[str] | None = None

    def learn_one(
        self, learner: np.ndarray | None, course_id: str, used: Callable[[str], bool], seed: str
    ) -> np.ndarray:
        """Learn that a learner with factors ``learner`` (None: new) used ``course_id``; returns
        their new factors. ``used`` says which courses the learner has used (never negatives)."""
        if self._courses is None:
            self._courses = sorted(self.table, key=lambda known: self.table[known]["n"])
        if course_id not in self.table:
            self.table[course_id] = {"n": len(self._courses), "v": _initial(course_id, self.n_factors).tolist()}
            self._latents.set(course_id, self.table[course_id]["v"])
            self._courses.append(course_id)
        vector = _initial(seed, self.n_factors) if learner is None else np.array(learner, dtype=np.float64)
        self._step(vector, course_id, 1.0)
        rng = random.Random(seed)
        courses = self._courses
        negatives: dict[str, None] = {}  # distinct, in draw order
        for _ in range(self.negatives if len(courses) > 1 else 0):
            for _attempt in range(10):
                other = courses[rng.randrange(len(courses))]
                if other != course_id and not used(other):
                    negatives[other] = None
                    break
        moved = [course_id, *negatives]
        slots = self._latents.slots(moved)
        if negatives:
            self._negatives_step(vector, slots[1:])
        table = self.table
        for moved_id, row in zip(moved, self._latents.values[slots].tolist()):  # each changed row written once
            table[moved_id] = {"n": table[moved_id]["n"], "v": row}
        return vector.astype(np.float32)

    def _negatives_step(self, learner: np.ndarray, slots: np.ndarray) -> None:
        """One SGD step on all of an event's negatives (distinct rows of the cache) at once, each
        gradient taken at the same learner factors (a mini-batch), in place."""
        latents = self._latents.values
        courses = latents[slots]
        gradients = 2 * (courses @ learner)
        np.minimum(np.maximum(gradients, -CLIP_GRADIENT, out=gradients), CLIP_GRADIENT, out=gradients)
        learner_gradient = gradients @ courses + len(slots) * self.l2 * learner
        latents[slots] = courses - self.learning_rate * (gradients[:, None] * learner + self.l2 * courses)
        learner -= self.learning_rate * learner_gradient

    def _step(self, learner: np.ndarray, course_id: str, y: float) -> None:
        """One step of river's ``FunkMF.learn_one`` on ``learner`` and the course's row, in place."""
        course = self._latents.view(course_id)
        gradient = min(max(2 * (np.dot(learner, course).item() - y), -CLIP_GRADIENT), CLIP_GRADIENT)
        learner_gradient = gradient * course + self.l2 * learner
        course_gradient = gradient * learner + self.l2 * course
        learner -= self.learning_rate * learner_gradient
        course -= self.learning_rate * course_gradient

    def scores(self, learner: np.ndarray | None, course_ids: Sequence[str]) -> np.ndarray:
        """The dot product of the learner's factors with each course's; 0 for a course never used
        (or a learner without factors). ``learner`` may also hold one learner's factors a row, one
        row for each course (a segment of lists)."""
        if learner is None:
            return np.zeros(len(course_ids))
        latents = self._latents.get_many(course_ids)
        if np.ndim(learner) == 1:
            return latents @ np.asarray(learner, dtype=np.float64)
        return np.einsum("ij,ij->i", latents, learner)
