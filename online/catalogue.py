"""The courses ranking reads, as columns: one array a field, one row a course.

Ranking a list asks the same few things of every candidate (its vector, prerequisites, level,
module, when it was indexed, whether the learner took it); asking them of one array per field
for a whole segment of lists costs a few numpy calls instead of a dict walk per candidate. Rows
are appended as courses become known and updated in place when a course is re-indexed; a row
is never removed (a course id keeps its row).

>>> import numpy as np
>>> catalogue = Catalogue()
>>> catalogue.put("intro", np.array([1.0, 0.0]), {"title": "Intro", "part_of": "m1"})
0
>>> catalogue.put("loops", np.array([0.6, 0.8]), {"prerequisites": ["intro"], "level": "beginner"})
1
>>> catalogue.rows(["loops", "nowhere", "intro"]).tolist()
[1, -1, 0]
>>> catalogue.dependents["intro"], catalogue.has_prerequisites[:2].tolist(), catalogue.title(0)
([1], [False, True], 'Intro')
>>> catalogue.similarity(np.array([1.0, 0.0]), np.array([0, 1])).round(2).tolist()
[1.0, 0.6]
>>> _ = catalogue.put("art", None, {}, media={"image": np.ones(MEDIA_DIM)})
>>> catalogue.media_norms["image"][:3].round(2).tolist()  # 0: no image (unknown, not dissimilar)
[0.0, 0.0, 5.66]
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from online.bloom import HASHES, positions

#: Difficulty of a course level, on the scale of mastery (probability of a correct answer).
LEVEL_DIFFICULTY = {"beginner": 0.3, "intermediate": 0.55, "advanced": 0.8}
#: The code of a field's value that is not set.
UNSET = -1
#: The media modalities ranked besides text, each by a reduced vector the encoder service returns
#: as the named vector ``{modality}_reduced`` (a fixed projection versioned with its model).
MODALITIES = ("image", "video")
#: The size of a reduced media vector: small enough for an interest per modality in the 2 KB profile.
MEDIA_DIM = 32
#: UTF-8 bytes of the longest ``part_of`` used as a context key as it is (see :func:`context_key`).
CONTEXT_KEY_BYTES = 32


def context_key(part_of: str | None) -> str | None:
    """The key a course's ``part_of`` (module, programme) is known by as a context: itself when it
    is short, else ``#`` and 16 hex digits of its hash, so that a learner's context always fits in
    their profile and every context keeps its own key.

    >>> context_key("AAA-2013J")
    'AAA-2013J'
    >>> context_key("programme " * 10)
    '#7c1becb58dd7c5a1'
    """
    if part_of is None or len(part_of.encode()) <= CONTEXT_KEY_BYTES:
        return part_of
    return "#" + hashlib.blake2b(part_of.encode(), digest_size=8).hexdigest()


class _Codes:
    """Small ints for the values of a keyword field (module, language, model version)."""

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}

    def code(self, value: str | None, add: bool = False) -> int:
        """The value's code; :data:`UNSET` for None; -2 for a value no course has (with ``add``, a new code)."""
        if value is None:
            return UNSET
        found = self._codes.get(value)
        if found is None:
            if not add:
                return -2
            found = self._codes[value] = len(self._codes)
        return found


class Catalogue:
    """Courses as columns (see the module). ``dim`` is the ranking vector's size, taken from the
    first vector put when not given."""

    def __init__(self, dim: int | None = None) -> None:
        self.index: dict[str, int] = {}
        self.course_ids: list[str] = []
        self.payloads: list[Mapping[str, Any]] = []
        self.prerequisites: list[tuple[str, ...]] = []
        #: course id -> the rows of the courses that list it as a prerequisite
        self.dependents: dict[str, list[int]] = {}
        self.parts = _Codes()
        self.languages = _Codes()
        self.versions = _Codes()
        self._dim = dim
        self._capacity = 0
        self._columns: dict[str, np.ndarray] = {}
        self._grow(64)

    def _grow(self, capacity: int) -> None:
        dim = self._dim or 1
        fresh = {
            "vectors": np.zeros((capacity, dim), dtype=np.float32),
            "norms": np.zeros(capacity),
            "indexed_at": np.full(capacity, np.nan),
            "difficulty": np.full(capacity, np.nan),
            "has_prerequisites": np.zeros(capacity, dtype=bool),
            "part_of": np.full(capacity, UNSET, dtype=np.int32),
            "language": np.full(capacity, UNSET, dtype=np.int32),
            "model_version": np.full(capacity, UNSET, dtype=np.int32),
            "bloom": np.zeros((capacity, HASHES), dtype=np.int64),
            "loaded_at": np.zeros(capacity),
            **{f"{m}_vectors": np.zeros((capacity, MEDIA_DIM), dtype=np.float32) for m in MODALITIES},
            **{f"{m}_norms": np.zeros(capacity) for m in MODALITIES},
        }
        for name, column in self._columns.items():
            fresh[name][: self._capacity] = column
        self._columns, self._capacity = fresh, capacity
        for name, column in fresh.items():
            setattr(self, name, column)
        #: each modality's reduced vectors and their norms (0: the course has none)
        self.media_vectors = {m: fresh[f"{m}_vectors"] for m in MODALITIES}
        self.media_norms = {m: fresh[f"{m}_norms"] for m in MODALITIES}

    # the columns, bound by _grow (typed here for readers and checkers)
    vectors: np.ndarray  #: the ranking vector of each course (zeros where it has none)
    norms: np.ndarray  #: each vector's L2 norm (0: no vector)
    indexed_at: np.ndarray  #: when each course was indexed, seconds (nan: before the log began)
    difficulty: np.ndarray  #: :data:`LEVEL_DIFFICULTY` of each course's level (nan: unknown)
    has_prerequisites: np.ndarray
    part_of: np.ndarray  #: code of each course's module or programme (``parts``)
    language: np.ndarray  #: code of each course's language (``languages``)
    model_version: np.ndarray  #: code of the encoder model its vector came from (``versions``)
    bloom: np.ndarray  #: each course id's Bloom filter positions (``online.bloom.positions``)
    loaded_at: np.ndarray  #: when the row was last put (the caller's clock)

    def __len__(self) -> int:
        return len(self.course_ids)

    def __contains__(self, course_id: object) -> bool:
        return course_id in self.index

    def put(self, course_id: str, vector: np.ndarray | None, payload: Mapping[str, Any], now: float = 0.0,
            media: Mapping[str, np.ndarray] | None = None) -> int:
        """Add or update a course; returns its row. ``media``: its reduced vector of each modality it
        has (:data:`MODALITIES`), a modality it lacks being unknown; None leaves them as they are."""
        row = self.index.get(course_id)
        if row is None:
            row = len(self.course_ids)
            if row == self._capacity:
                self._grow(2 * self._capacity)
            self.index[course_id] = row
            self.course_ids.append(course_id)
            self.payloads.append(payload)
            self.prerequisites.append(())
            self.bloom[row] = positions(course_id)
        else:
            self.payloads[row] = payload
        if vector is not None:
            if self._dim is None:
                self._dim = len(vector)
                self._columns["vectors"] = np.zeros((self._capacity, self._dim), dtype=np.float32)
                self.vectors = self._columns["vectors"]
            self.vectors[row] = vector
            self.norms[row] = float(np.linalg.norm(vector))
        for modality in MODALITIES if media is not None else ():
            reduced = media.get(modality)
            self.media_vectors[modality][row] = 0.0 if reduced is None else reduced
            self.media_norms[modality][row] = 0.0 if reduced is None else float(np.linalg.norm(reduced))
        for old in self.prerequisites[row]:
            self.dependents[old].remove(row)
        required = tuple(payload.get("prerequisites") or ())
        self.prerequisites[row] = required
        for prerequisite in required:
            self.dependents.setdefault(prerequisite, []).append(row)
        self.has_prerequisites[row] = bool(required)
        indexed_at = payload.get("indexed_at")
        self.indexed_at[row] = np.nan if indexed_at is None else indexed_at
        self.difficulty[row] = LEVEL_DIFFICULTY.get(payload.get("level") or "", math.nan)
        self.part_of[row] = self.parts.code(context_key(payload.get("part_of")), add=True)
        self.language[row] = self.languages.code(payload.get("language"), add=True)
        self.model_version[row] = self.versions.code(payload.get("model_version"), add=True)
        self.loaded_at[row] = now
        return row

    def put_many(self, courses: Iterable[tuple[str, np.ndarray | None, Mapping[str, Any]]], now: float = 0.0) -> None:
        for course_id, vector, payload in courses:
            self.put(course_id, vector, payload, now)

    def rows(self, course_ids: Sequence[str]) -> np.ndarray:
        """The row of each course, -1 for one not in the catalogue."""
        index = self.index
        return np.fromiter((index.get(c, -1) for c in course_ids), dtype=np.int64, count=len(course_ids))

    def title(self, row: int) -> str:
        """The course's title, or its id where it has none."""
        return self.payloads[row].get("title") or self.course_ids[row]

    def title_of(self, course_id: str) -> str:
        """A course's title by id: its id where it has none or is not in the catalogue."""
        row = self.index.get(course_id)
        return course_id if row is None else self.title(row)

    def similarity(self, interest: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
        """Cosine between ``interest`` and each row's vector (0 without an interest or a vector)."""
        if interest is None or not len(rows):
            return np.zeros(len(rows))
        interest_norm = float(np.linalg.norm(interest))
        norms = self.norms[rows] * interest_norm
        dots = self.vectors[rows] @ interest.astype(np.float32)
        return np.divide(dots, norms, out=np.zeros(len(rows)), where=norms > 0)
