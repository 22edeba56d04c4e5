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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


class RowCache:
    """Fixed-width float rows by key, read through ``load`` once each."""

    def __init__(self, width: int, load: Callable[[str], Sequence[float]]) -> None:
        self._load = load
        self._slots: dict[str, int] = {}
        self._values = np.zeros((64, width))

    def _slot(self, key: str) -> int:
        slot = len(self._slots)
        if slot == len(self._values):
            self._values = np.concatenate([self._values, np.zeros_like(self._values)])
        self._slots[key] = slot
        return slot

    def get_many(self, keys: Sequence[str]) -> np.ndarray:
        """The rows of ``keys``, a row each (a copy)."""
        slots = self.slots(keys)  # first: reading new keys may grow the array
        return self._values[slots]

    def slots(self, keys: Sequence[str]) -> np.ndarray:
        """Where the rows of ``keys`` are in :attr:`values` (read through ``load`` if new), for a
        caller that changes many rows in place (and writes its mapping itself)."""
        slots = self._slots
        found = [slots.get(key, -1) for key in keys]
        if -1 in found:
            for key in dict.fromkeys(key for key, slot in zip(keys, found) if slot == -1):
                slot = self._slot(key)  # first: it may grow the array
                self._values[slot] = self._load(key)
            found = [slots[key] for key in keys]
        return np.array(found, dtype=np.intp)

    @property
    def values(self) -> np.ndarray:
        """The rows, as :meth:`slots` indexes them; valid until the next new key is read."""
        return self._values

    def get(self, key: str) -> np.ndarray:
        """The row of one key (a copy)."""
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slot(key)
            self._values[slot] = self._load(key)
        return self._values[slot].copy()

    def view(self, key: str) -> np.ndarray:
        """The row of one key as a view, for a caller that changes it in place (and writes its
        mapping itself); valid until the next key is read."""
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slot(key)
            self._values[slot] = self._load(key)
        return self._values[slot]

    def set(self, key: str, values: Sequence[float] | np.ndarray) -> None:
        """Record what the model just wrote to its mapping."""
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slot(key)
        self._values[slot] = values
