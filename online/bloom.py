"""A fixed-size Bloom filter: which courses a learner has taken, in a few hundred bytes.

No false negatives: a course the learner took is always reported taken. A course never
taken is reported taken with a small probability that grows with the count (with the
defaults, 384 bytes and 4 hashes: about 0.1% at 100 courses, 1% at 300, 5% at 500), and is
then simply not recommended to that learner.

>>> taken = BloomFilter()
>>> taken.add("cs50")
>>> "cs50" in taken, "ml101" in taken
(True, False)
>>> BloomFilter(taken.to_bytes()) == taken
True
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

SIZE_BYTES = 384
HASHES = 4


def positions(item: str, size: int = SIZE_BYTES * 8) -> tuple[int, ...]:
    """The item's ``HASHES`` bit positions in a filter of ``size`` bits (bit ``p`` is bit
    ``p % 8`` of byte ``p // 8``).

    >>> len(positions("cs50")), all(0 <= p < SIZE_BYTES * 8 for p in positions("cs50"))
    (4, True)
    """
    digest = hashlib.blake2b(item.encode(), digest_size=4 * HASHES).digest()
    return tuple(int.from_bytes(digest[4 * i : 4 * i + 4], "little") % size for i in range(HASHES))


@functools.lru_cache(maxsize=200_000)
def _mask(item: str, size: int) -> int:
    """The item's bits as one int."""
    mask = 0
    for position in positions(item, size):
        mask |= 1 << position
    return mask


class BloomFilter:
    """The bits are kept as one int (little-endian, as stored): a lookup is one ``&``."""

    def __init__(self, bits: bytes | None = None) -> None:
        self._size = len(bits) if bits is not None else SIZE_BYTES
        self._bits = int.from_bytes(bits, "little") if bits is not None else 0

    def add(self, item: str) -> None:
        self._bits |= _mask(item, self._size * 8)

    def __contains__(self, item: str) -> bool:
        mask = _mask(item, self._size * 8)
        return self._bits & mask == mask

    def bits(self) -> np.ndarray:
        """The filter's bits as an array, bit ``p`` at index ``p``: membership of many items at
        once is ``bits[positions].all(axis=1)``, each item given by its :func:`positions` (ranking
        asks about whole candidate lists).

        >>> taken = BloomFilter()
        >>> taken.add("cs50")
        >>> taken.bits()[np.array([positions("cs50"), positions("ml101")])].all(axis=1).tolist()
        [True, False]
        """
        return np.unpackbits(np.frombuffer(self.to_bytes(), dtype=np.uint8), bitorder="little")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BloomFilter) and (self._size, self._bits) == (other._size, other._bits)

    def to_bytes(self) -> bytes:
        return self._bits.to_bytes(self._size, "little")
