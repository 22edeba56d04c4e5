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
course's factors start from a normal draw seeded by its id, and negatives are drawn by
splitmix64 seeded by a hash of the event's id, so a replay learns exactly the same numbers.

The use's step is river's ``FunkMF.learn_one`` (squared loss, clipped gradient, both gradients
taken before either vector moves) on the arrays directly, the same arithmetic in the same
order, so the same bits (``tests/test_recommender.py`` checks it against river). An event's
negatives then take one mini-batch step together (each gradient at the same learner factors)
rather than one step each, with the same ranking quality on OULAD AAA (NDCG@10 within 0.001 of
one step each). The draws of the negatives, checked against the learner's Bloom filter of
taken courses (``online.bloom``), and both steps are compiled kernels (numba): for vectors
of 20 numbers, array calls from Python cost far more than the arithmetic. They are compiled
when this module is imported (about a second), or read back from numba's cache: in
``__pycache__`` beside this file or in the user's cache directory; where neither is writable,
``NUMBA_CACHE_DIR`` names one (the worker's image sets it).

>>> import numpy as np
>>> factors = CourseFactors(n_factors=4, negatives=2)
>>> from online.bloom import BloomFilter
>>> used = {"ann": BloomFilter(), "bob": BloomFilter()}
>>> learners = {"ann": None, "bob": None}
>>> for day in range(40):
...     for learner, course in (("ann", "algebra"), ("bob", "poetry"), ("ann", "calculus"), ("bob", "novels")):
...         used[learner].add(course)
...         learners[learner] = factors.learn_one(learners[learner], course, used[learner], seed=f"{learner}-{course}-{day}")
>>> scores = factors.scores(learners["ann"], ["calculus", "novels"])
>>> bool(scores[0] > scores[1])
True
>>> factors.scores(learners["ann"], ["never used"]).tolist()
[0.0]
"""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping, Sequence
from typing import Any

import numba
import numpy as np
from river import base

from online.bloom import HASHES, BloomFilter, positions
from online.rows import RowCache


#: River's ``FunkMF`` default gradient clip.
CLIP_GRADIENT = 1e12
#: Draws for each negative before it is given up (each drew a course the learner used).
ATTEMPTS = 10


def _initial(key: str, n_factors: int) -> np.ndarray:
    """River's default initialisation (normal, sigma 0.1), seeded by ``key``: the same on every replay."""
    seed = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).normal(0.0, 0.1, n_factors)


def _seed(key: str) -> int:
    """A 64-bit seed from ``key`` (an event id), signed as the kernel takes it: the same on every replay."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little", signed=True)


# Explicit signatures compile the kernels (or read them from numba's cache) when this module is
# imported, so a worker's first event does not wait about a second for the compiler.
_BYTES = numba.types.Array(numba.uint8, 1, "C", readonly=True)  # np.frombuffer over bytes


@numba.njit(numba.int64[::1](numba.int64, numba.int64, numba.uint32[:, ::1], _BYTES, numba.int64), cache=True)
def _negatives(seed: int, used: int, hashes: np.ndarray, taken: np.ndarray, count: int) -> np.ndarray:
    """Up to ``count`` distinct courses (rows of ``hashes``, in arrival order) not in the Bloom
    filter ``taken`` (its bytes) nor ``used``, each given ``ATTEMPTS`` uniform draws (splitmix64
    from ``seed``, a signed 64-bit word); in draw order."""
    n, size = hashes.shape[0], taken.shape[0] * 8
    picked = np.empty(count, dtype=np.int64)
    found = 0
    state = np.uint64(seed)
    for _ in range(count if n > 1 else 0):
        for _attempt in range(ATTEMPTS):
            state += np.uint64(0x9E3779B97F4A7C15)
            z = (state ^ (state >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            row = np.int64((z ^ (z >> np.uint64(31))) % np.uint64(n))
            if row == used:
                continue
            known = True
            for h in hashes[row]:
                bit = np.int64(h) % size
                known = known and (taken[bit >> 3] >> (bit & 7)) & 1 == 1
            if known:
                continue
            if not (picked[:found] == row).any():
                picked[found] = row
                found += 1
            break
    return picked[:found]


@numba.njit(numba.void(numba.float64[:, ::1], numba.float64[::1], numba.intp[::1], numba.float64, numba.float64,
                       numba.float64), cache=True)
def _step(latents: np.ndarray, learner: np.ndarray, slots: np.ndarray, learning_rate: float, l2: float,
          clip: float) -> None:
    """A use's SGD steps, in place: river's ``FunkMF.learn_one`` toward 1 on the row ``slots[0]``
    (both gradients taken before either vector moves), then one mini-batch step toward 0 on the
    negatives ``slots[1:]`` (distinct rows), each gradient at the same learner factors."""
    n = learner.shape[0]
    course = latents[slots[0]]
    gradient = 2.0 * (np.dot(learner, course) - 1.0)
    gradient = min(max(gradient, -clip), clip)
    for f in range(n):
        learner_gradient = gradient * course[f] + l2 * learner[f]
        course[f] -= learning_rate * (gradient * learner[f] + l2 * course[f])
        learner[f] -= learning_rate * learner_gradient
    if slots.shape[0] == 1:
        return
    learner_gradient = (slots.shape[0] - 1) * l2 * learner
    for j in range(1, slots.shape[0]):
        negative = latents[slots[j]]
        gradient = min(max(2.0 * np.dot(negative, learner), -clip), clip)
        for f in range(n):
            learner_gradient[f] += gradient * negative[f]
            negative[f] -= learning_rate * (gradient * learner[f] + l2 * negative[f])
    for f in range(n):
        learner[f] -= learning_rate * learner_gradient[f]


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
        # each of those courses' Bloom filter hashes (``online.bloom``: positions in a filter of 2**32
        # bits are the hashes themselves; the kernel takes them modulo the learner's filter), a row each
        # and room for more
        self._hashes = np.zeros((0, HASHES), dtype=np.uint32)

    def learn_one(self, learner: np.ndarray | None, course_id: str, taken: BloomFilter, seed: str) -> np.ndarray:
        """Learn that a learner with factors ``learner`` (None: new) used ``course_id``; returns
        their new factors. ``taken`` holds the courses the learner has used (never negatives)."""
        if self._courses is None:
            self._courses = sorted(self.table, key=lambda known: self.table[known]["n"])
            self._hashes = np.array([positions(c, 1 << 32) for c in self._courses], dtype=np.uint32).reshape(-1, HASHES)
        if course_id not in self.table:
            self.table[course_id] = {"n": len(self._courses), "v": _initial(course_id, self.n_factors).tolist()}
            self._latents.set(course_id, self.table[course_id]["v"])
            self._courses.append(course_id)
            if len(self._courses) > len(self._hashes):  # grown by doubling: an arrival rarely copies it
                self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes, shape=(len(self._hashes) + 64, HASHES))])
            self._hashes[len(self._courses) - 1] = positions(course_id, 1 << 32)
        vector = _initial(seed, self.n_factors) if learner is None else np.array(learner, dtype=np.float64)
        courses = self._courses
        picked = _negatives(_seed(seed), self.table[course_id]["n"], self._hashes[: len(courses)],
                            np.frombuffer(taken.to_bytes(), dtype=np.uint8), self.negatives)
        moved = [course_id, *(courses[row] for row in picked.tolist())]
        slots = self._latents.slots(moved)
        _step(self._latents.values, vector, slots, self.learning_rate, self.l2, CLIP_GRADIENT)
        table = self.table
        for moved_id, row in zip(moved, self._latents.values[slots].tolist()):  # each changed row written once
            table[moved_id] = {"n": table[moved_id]["n"], "v": row}
        return vector.astype(np.float32)

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
