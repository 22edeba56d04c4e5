"""What every log reader yields: contract events in event-time order, or the rows that made none.

A reader yields :data:`ReadResult` values: a contract event (``ClickEvent``, ``VideoEvent``,
``QuizEvent``), or an :class:`InvalidRow` naming the source row that could not become an event
and why. Nothing is dropped silently, so a replay can count what it skipped and a dry run can
list it:

>>> from datetime import datetime, timezone
>>> results = [
...     InvalidRow("log.csv", 2, "click,,u1", "event_id: Field required"),
...     ClickEvent(event_id="e1", user_id="u1", course_id="c1", action="open",
...                event_time=datetime(2024, 5, 1, tzinfo=timezone.utc)),
... ]
>>> [r.event_id for r in results if not isinstance(r, InvalidRow)]
['e1']
>>> [f"{r.source}:{r.row}: {r.reason}" for r in results if isinstance(r, InvalidRow)]
['log.csv:2: event_id: Field required']

Events come in event-time order. An ``InvalidRow`` comes where the reader finds the problem:
rows it cannot even place in time (unreadable, wrong number of cells) come as it scans the
file, which for the readers that sort is before the first event; rows that fail the contract
come at their time. Their position says nothing about time.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

# The contract words its validation errors in one place; reports here read the same as the
# dead letters of the live topics.
from online.events import ClickEvent, QuizEvent, VideoEvent, validation_reason

Event = ClickEvent | VideoEvent | QuizEvent
"""A learner event of the contract."""

#: How a reader orders its results: compared as tuples, event time first.
SortKey = tuple[int | str, ...]

_EventT = TypeVar("_EventT", bound=Event)


@dataclass(frozen=True, slots=True)
class InvalidRow:
    """A source row that produced no event, and why."""

    source: str
    """The file it came from."""
    row: int
    """1-based number of the record in ``source`` (a line for JSON Lines; the CSV header not counted)."""
    raw: str
    """The record as read: CSV cells re-joined by the delimiter, Parquet rows as JSON, OULAD clicks
    re-made from their parsed values."""
    reason: str


ReadResult = Event | InvalidRow
"""One item of a reader's output."""


def row_event_id(*parts: object, occurrence: int = 1) -> str:
    """The event id of a source row: the parts that identify it, and which repeat it is.

    Ids come from the row's content, not from its position, so a replayed log (or a sample cut
    from it) gives the same ids. A key that the source repeats gets ``#2``, ``#3``, ... in file
    order.

    >>> row_event_id("oulad:AAA-2013J:vle:546652", 28400, -10)
    'oulad:AAA-2013J:vle:546652:28400:-10'
    >>> row_event_id("oulad:AAA-2013J:vle:546652", 28400, -10, occurrence=2)
    'oulad:AAA-2013J:vle:546652:28400:-10#2'
    """
    key = ":".join(str(part) for part in parts)
    return key if occurrence == 1 else f"{key}#{occurrence}"


def build_event(model: type[_EventT], source: str, row: int, raw: str, **fields: Any) -> _EventT | InvalidRow:
    """Make a contract event of a source row, or the :class:`InvalidRow` saying why it is not one.

    >>> build_event(ClickEvent, "x.csv", 7, "raw", event_id="e", user_id="u", course_id="c",
    ...             event_time="2024-05-01T10:00:00Z", action="open", count=0).reason
    'count: Input should be greater than or equal to 1'
    """
    try:
        return model(**fields)
    except ValidationError as error:
        return InvalidRow(source, row, raw, validation_reason(error))


def merge_in_time_order(streams: Iterable[Iterable[tuple[SortKey, ReadResult]]]) -> Iterator[ReadResult]:
    """Merge streams that are each sorted by key into one stream sorted by key.

    Equal keys keep the order of the streams, then the order within a stream, so the merge is
    deterministic and results themselves are never compared.

    >>> list(merge_in_time_order([[((1, "b"), "b1"), ((3, "b"), "b3")], [((1, "a"), "a1")]]))
    ['a1', 'b1', 'b3']
    """
    for _, result in heapq.merge(*streams, key=lambda keyed: keyed[0]):
        yield result
