"""The courses a learner dismissed lately, kept in their profile in at most 192 bytes.

A dismissed course is not shown to the learner for :data:`DISMISS_DAYS` days of event time
after the dismissal (``online.candidates.shortlist`` drops it, as it drops taken courses).
A profile keeps at most :data:`DISMISSALS` of them, 12 bytes each: a 48-bit key of the course
id and the end of its hiding (event time, whole seconds). Eviction: a dismissal past its end
is dropped when the next one is added; when all are still hiding, the one ending soonest makes
room. Dismissing a course again hides it for the whole time again.

The key is made of the course id's Bloom filter positions (``online.bloom.positions``, which
the catalogue keeps for every course), so a whole candidate list is checked with a few array
operations; two course ids share a key with odds of about 1 in 10^14.

>>> dismissed = Dismissals()
>>> dismissed.add("cs50", time=0.0)
>>> from online.bloom import positions
>>> import numpy as np
>>> rows = np.array([positions("cs50"), positions("ml101")])
>>> dismissed.hides(rows, time=86_400.0).tolist()   # a day later
[True, False]
>>> dismissed.hides(rows, time=(DISMISS_DAYS + 1) * 86_400.0).tolist()   # once it has ended
[False, False]
>>> Dismissals.from_bytes(dismissed.to_bytes()) == dismissed
True
"""

from __future__ import annotations

import numpy as np

from online.bloom import positions

#: How long a dismissed course stays hidden from the learner, in days of event time.
DISMISS_DAYS = 30
#: Dismissals a profile keeps at most (see the module for which goes first).
DISMISSALS = 16
_SECONDS_PER_DAY = 86_400
#: Bits of a Bloom position: positions are below 3,072 bits (online.bloom.SIZE_BYTES * 8).
_POSITION_BITS = 12
_ENTRY = np.dtype([("key", "<u8"), ("until", "<u4")])
#: No dismissals; shared, as entries are replaced, never changed in place.
_NONE = np.zeros(0, dtype=_ENTRY)


def course_keys(bloom_positions: np.ndarray) -> np.ndarray:
    """The key of each course given by its Bloom positions (a row each): 12 bits a position."""
    rows = np.asarray(bloom_positions, dtype=np.uint64).reshape(-1, bloom_positions.shape[-1])
    shifts = np.arange(rows.shape[1], dtype=np.uint64) * np.uint64(_POSITION_BITS)
    return np.bitwise_or.reduce(rows << shifts, axis=1)


class Dismissals:
    """A learner's recent dismissals: course keys and until when each hides its course."""

    __slots__ = ("_entries",)

    def __init__(self, entries: np.ndarray | None = None) -> None:
        self._entries = _NONE if entries is None else entries

    def __bool__(self) -> bool:
        return bool(len(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dismissals) and self.to_bytes() == other.to_bytes()

    def add(self, course_id: str, time: float) -> None:
        """Hide ``course_id`` for :data:`DISMISS_DAYS` from ``time`` (event time, seconds)."""
        key = course_keys(np.array([positions(course_id)]))[0]
        until = min(int(time) + DISMISS_DAYS * _SECONDS_PER_DAY, np.iinfo(np.uint32).max)
        kept = self._entries[(self._entries["key"] != key) & (self._entries["until"] > time)]
        kept = np.sort(kept, order="until")[-(DISMISSALS - 1):] if len(kept) >= DISMISSALS else kept
        self._entries = np.concatenate([kept, np.array([(key, until)], dtype=_ENTRY)])

    def hides(self, bloom_positions: np.ndarray, time: float) -> np.ndarray:
        """Whether each course (a row of Bloom positions each) is hidden at ``time``."""
        hiding = self._entries["key"][self._entries["until"] > time]
        if not len(hiding) or not len(bloom_positions):
            return np.zeros(len(bloom_positions), dtype=bool)
        return np.isin(course_keys(bloom_positions), hiding)

    def to_bytes(self) -> bytes:
        return self._entries.tobytes()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Dismissals:
        return cls(np.frombuffer(raw, dtype=_ENTRY).copy())
