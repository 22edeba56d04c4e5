"""Batches sized by the consumer's lag, not by a fixed wait.

Faust's ``Stream.take_events(max_, within)`` hands over a batch when it is full or when
``within`` has passed since the agent asked for it. At a low load an event waits ``within`` for
company that does not come; under load a batch holds only what the stream read within
``within``, however many events wait on the broker, so batches shrink as the work per batch gets
faster and the savings of working by batch shrink with them.

:func:`take_ready` hands over a batch when it is full, or when nothing more is on its way: the
stream's queue is empty and the partitions of its events have no lag (their high watermark is
the next offset). While they lag it waits for the rest, at most ``within`` from the batch's first
event. An event alone goes at once; a backlog goes ``max_`` events at a time.

Writing follows the lag too (:class:`Unwritten`). An agent that has caught up writes the table
rows a batch changed (each once) right after it: nobody waits behind it, and a later write would
come as a burst in front of the next events. While it lags, the rows of its batches wait in
memory and are written together once it catches up, or after ``interval`` seconds
(``COURSESTREAM_LEARNER_WRITE_INTERVAL_MS``), as Kafka Streams' record caches send a changed row
once per commit: under load the same shared rows change in batch after batch, and a row costs
about 0.1 ms (a store write and a changelog record through Faust).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

import faust
from faust.types import TP, EventT, Message

from streams.faust_fixes import read_in_background, waiting


def lag(stream: faust.StreamT, message: Message) -> int:
    """Events after ``message`` in its partition, as of the last fetch; 0 if not known."""
    try:
        highwater = stream.app.consumer.highwater(message.tp)
    except (AssertionError, KeyError):  # aiokafka's answer for a partition just revoked: not ours to wait for
        return 0
    return max(0, (highwater or 0) - message.offset - 1)


def caught_up(stream: faust.StreamT, events: Sequence[EventT]) -> bool:
    """Whether nothing is on its way after ``events``: the stream's queue is empty and their
    partitions have no lag."""
    queue = waiting(stream)
    last = {event.message.tp: event.message for event in events}
    return queue.empty() and not any(lag(stream, message) for message in last.values())


async def take_ready(
    stream: faust.StreamT, max_: int, within: float, idle: float | None = None
) -> AsyncIterator[list[EventT]]:
    """The stream's events in batches of at most ``max_``, each what was ready or on its way;
    an empty batch once ``idle`` seconds pass without one (time to write what the agent holds).

    Nothing is acked here: the agent acks each event (:meth:`Unwritten.acked`) once what it
    changed is written, so a crash before then redelivers it.
    """
    loop = asyncio.get_running_loop()
    events: list[EventT] = []
    behind: dict[TP, int] = {}  # partition -> events after the batch's last one of it
    ready, taken = asyncio.Event(), asyncio.Event()
    held: asyncio.Future[None] | None = None  # set while the agent holds a batch
    deadline: asyncio.TimerHandle | None = None
    queue = waiting(stream)

    async def add(value: object) -> object:
        # A processor: Faust calls it for each event, in the task that reads the stream.
        nonlocal deadline
        if held is not None:
            await held  # the next event goes in the next batch
        event = stream.current_event
        assert event is not None  # set while the stream runs its processors
        events.append(event)
        behind[event.message.tp] = lag(stream, event.message)
        if deadline is None:
            deadline = loop.call_later(within, ready.set)
        if len(events) >= max_ or (queue.empty() and not any(behind.values())):
            ready.set()
        if len(events) >= max_:
            taken.clear()
            await stream.wait(taken)  # type: ignore[arg-type]
        return value

    enable_acks = stream.enable_acks
    stream.enable_acks = False  # acked below, once processed
    detach = read_in_background(stream, add)
    try:
        while True:
            tick = loop.call_later(idle, ready.set) if idle is not None else None
            stopped = await stream.wait_for_stopped(ready)
            if tick is not None:
                tick.cancel()
            if stopped:
                break
            held = loop.create_future()
            if deadline is not None:
                deadline.cancel()
                deadline = None
            batch = list(events)  # no event joins while the agent holds it (``add`` awaits ``held``)
            try:
                yield batch
            finally:
                events.clear()
                behind.clear()
                ready.clear()
                held.set_result(None)
                held = None
                taken.set()
    finally:
        if deadline is not None:
            deadline.cancel()
        stream.enable_acks = enable_acks
        detach()


class Unwritten:
    """The events an agent processed since it last wrote what they changed, and when it writes
    next: once it has caught up, or ``interval`` seconds after the first of them (0: after every
    batch).

    An agent keeps the rows its events change in memory (where its next events read them) and,
    when :meth:`due`, writes each row once, hands them to the producer, and then acks the events
    with :meth:`acked`: a crash before that redelivers all of them, and nothing of theirs was
    written. (Faust's rebalance waits for every event taken to be acked: ``take_ready``'s idle
    batches wake the agent to write meanwhile.)

    >>> window = Unwritten(interval=60.0)
    >>> window.due(caught_up=True)
    False
    >>> window.add(["event"])
    >>> window.due(caught_up=False), window.due(caught_up=True)
    (False, True)
    >>> every_batch = Unwritten(interval=0.0)
    >>> every_batch.add(["event"])
    >>> every_batch.due(caught_up=False)
    True
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.events: list[EventT] = []
        self._since = 0.0

    def add(self, events: Sequence[EventT]) -> None:
        if events and not self.events:
            self._since = time.monotonic()
        self.events += events

    def due(self, caught_up: bool) -> bool:
        """Whether to write now: there is something to write, and the agent caught up or waited enough."""
        return bool(self.events) and (caught_up or time.monotonic() - self._since >= self.interval)

    async def acked(self, stream: faust.StreamT) -> None:
        """Ack the events, their rows written: Faust may commit their offsets now."""
        for event in self.events:
            await stream.ack(event)
        self.events = []
