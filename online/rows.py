"""Rows of a model's table held as one array, for reads of many courses at once.

A model keeps its state in a mapping the caller provides (a stream processor's table); ranking
reads the rows of a whole candidate list at a time. :class:`RowCache` reads each row from the
mapping once, keeps it as a row of one array, and answers a list of keys with one fancy index.
The model writes through it (:meth:`RowCache.set`) whenever it writes the mapping, so the cache
stays true to the mapping as long as nothing else writes that mapping.

>>> table = {"a": [1.0, 2.0]}
>>> cache = RowCache(2, lambda key: table.get(key) or (0.0, 0.0))
>>> cache.get_many(["a", "b", "a"]).tolist()
[[1.0, 2.0], [0.0, 0.0], [1.0, 2.0]]
>>> cache.set("b", [3.0, 4.0])
>>> cache.get_many(["b"]).tolist()
[[3.0, 4.0]]
>>> cache.get_many([str(n) for n in range(100)]).shape  # the array grows as keys arrive
(100, 2)

Keys given as :class:`RowKeys` (the course ids at some rows of a catalogue) are found by row:
each row's slot is looked up once, then kept in an array indexed by row.

>>> course_ids = ["b", "c", "a"]
>>> cache.get_many(RowKeys(course_ids, np.array([2, 0, 2]))).tolist()
[[1.0, 2.0], [3.0, 4.0], [1.0, 2.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


class RowKeys(Sequence[str]):
    """The keys at ``rows`` of ``keys``, a list that only ever grows at its end (a catalogue's
    course ids: a row keeps its course), so :class:`Slots` finds them by row."""

    def __init__(self, keys: list[str], rows: np.ndarray) -> None:
        self.keys, self.rows = keys, rows

    def __getitem__(self, i: int) -> str:  # type: ignore[override]
        return self.keys[self.rows[i]]

    def __len__(self) -> int:
        return len(self.rows)


class Slots:
    """A slot for each key, 0, 1, ... in the order keys arrive; a key keeps its slot."""

    def __init__(self) -> None:
        #: the key of each slot
        self.keys: list[str] = []
        self._index: dict[str, int] = {}
        # the slot of each row of the last RowKeys' keys (-1: not looked up yet)
        self._row_keys: list[str] | None = None
        self._row_slots = np.zeros(0, dtype=np.intp)

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, key: str) -> int | None:
        return self._index.get(key)

    def add(self, key: str) -> int:
        """A slot for a new key."""
        slot = self._index[key] = len(self.keys)
        self.keys.append(key)
        return slot

    def of(self, keys: Sequence[str]) -> np.ndarray:
        """The slot of each of ``keys``, new keys given the next slots in order; :class:`RowKeys`
        looked up once per row of their keys."""
        if isinstance(keys, RowKeys):
            return self._by_row(keys)
        index = self._index
        found = [index.get(key, -1) for key in keys]
        if -1 in found:
            for key, slot in zip(keys, found):
                if slot == -1 and key not in index:
                    self.add(key)
            found = [index[key] for key in keys]
        return np.array(found, dtype=np.intp)

    def _by_row(self, keys: RowKeys) -> np.ndarray:
        if keys.keys is not self._row_keys:
            self._row_keys, self._row_slots = keys.keys, np.zeros(0, dtype=np.intp)
        if len(self._row_slots) < len(keys.keys):
            grown = np.full(max(len(keys.keys), 2 * len(self._row_slots)), -1, dtype=np.intp)
            grown[: len(self._row_slots)] = self._row_slots
            self._row_slots = grown
        found = self._row_slots[keys.rows]
        if (found < 0).any():
            new = np.unique(keys.rows[found < 0])
            self._row_slots[new] = self.of([keys.keys[row] for row in new.tolist()])
            found = self._row_slots[keys.rows]
        return found


class RowCache:
    """Fixed-width float rows by key, read through ``load`` once each."""

    def __init__(self, width: int, load: Callable[[str], Sequence[float]]) -> None:
        self._load = load
        self._slots = Slots()
        self._values = np.zeros((64, width))

    def _grow(self) -> None:
        """Room in the array for every slot."""
        size = len(self._values)
        while size < len(self._slots):
            size *= 2
        if size > len(self._values):
            grown = np.zeros((size, self._values.shape[1]))
            grown[: len(self._values)] = self._values
            self._values = grown

    def _read(self, start: int) -> None:
        """Read the rows of the slots from ``start`` on through ``load``."""
        self._grow()
        for slot in range(start, len(self._slots)):
            self._values[slot] = self._load(self._slots.keys[slot])

    def get_many(self, keys: Sequence[str]) -> np.ndarray:
        """The rows of ``keys``, a row each (a copy)."""
        slots = self.slots(keys)  # first: reading new keys may grow the array
        return self._values[slots]

    def slots(self, keys: Sequence[str]) -> np.ndarray:
        """Where the rows of ``keys`` are in :attr:`values` (read through ``load`` if new), for a
        caller that changes many rows in place (and writes its mapping itself)."""
        known = len(self._slots)
        found = self._slots.of(keys)
        self._read(known)
        return found

    @property
    def values(self) -> np.ndarray:
        """The rows, as :meth:`slots` indexes them; valid until the next new key is read."""
        return self._values

    def get(self, key: str) -> np.ndarray:
        """The row of one key (a copy)."""
        return self.view(key).copy()

    def view(self, key: str) -> np.ndarray:
        """The row of one key as a view, for a caller that changes it in place (and writes its
        mapping itself); valid until the next key is read."""
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots.add(key)
            self._read(slot)
        return self._values[slot]

    def set(self, key: str, values: Sequence[float] | np.ndarray) -> None:
        """Record what the model just wrote to its mapping."""
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots.add(key)
            self._grow()
        self._values[slot] = values
