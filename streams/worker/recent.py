"""The lists this worker published lately, for the live page: a bounded ring of the documents as
sent, appended to when each is published (one deque append on the hot path).

>>> recent = RecentLists(size=2)
>>> for document in (b"1", b"2", b"3"):
...     recent.add(document)
>>> recent.count, recent.since(0, 10), recent.since(2, 10), recent.since(3, 10)
(3, [b'2', b'3'], [b'3'], [])
>>> recent.since(7, 10)  # a counter from before a restart: everything kept
[b'2', b'3']
"""

from __future__ import annotations

from collections import deque
from itertools import islice


class RecentLists:
    """The last ``size`` lists published, numbered from 1 in the order they were sent."""

    def __init__(self, size: int = 200) -> None:
        self._lists: deque[bytes] = deque(maxlen=size)
        self.count = 0

    def add(self, document: bytes) -> None:
        self._lists.append(document)
        self.count += 1

    def since(self, after: int, limit: int) -> list[bytes]:
        """The lists numbered above ``after`` still kept, at most the ``limit`` latest, oldest first
        (``after`` beyond the count, as after a restart: from the start)."""
        new = self.count - (after if after <= self.count else 0)
        new = min(new, len(self._lists), limit)
        return list(islice(self._lists, len(self._lists) - new, None))


#: What this worker published lately.
recent_lists = RecentLists()
