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
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import faust
from faust.types import TP, EventT, Message


async def take_ready(stream: faust.StreamT, max_: int, within: float) -> AsyncIterator[list[EventT]]:
    """The stream's events in batches of at most ``max_``, each what was ready or on its way.

    Events are acked once the agent asks for the next batch (as with ``take_events``): a crash
    while one is processed redelivers all of it.
    """
    loop = asyncio.get_running_loop()
    events: list[EventT] = []
    behind: dict[TP, int] = {}  # partition -> events after the batch's last one of it
    ready, taken = asyncio.Event(), asyncio.Event()
    held: asyncio.Future[None] | None = None  # set while the agent holds a batch
    deadline: asyncio.TimerHandle | None = None
    queue = stream.channel.queue  # type: ignore[attr-defined]  # events read from the broker, not yet taken

    def lag(message: Message) -> int:
        """Events after ``message`` in its partition, as of the last fetch; 0 if not known."""
        try:
            highwater = stream.app.consumer.highwater(message.tp)
        except (AssertionError, KeyError):  # aiokafka's answer for a partition just revoked: not ours to wait for
            return 0
        return max(0, (highwater or 0) - message.offset - 1)

    async def add(value: object) -> object:
        # A processor: Faust calls it for each event, in the task that reads the stream.
        nonlocal deadline
        if held is not None:
            await held  # the next event goes in the next batch
        event = stream.current_event
        assert event is not None  # set while the stream runs its processors
        events.append(event)
        behind[event.message.tp] = lag(event.message)
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
    stream.add_processor(add)
    stream._enable_passive(aiter(stream.channel))  # type: ignore[attr-defined]  # read in the background, as take_events does
    try:
        while not await stream.wait_for_stopped(ready):
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
                for event in batch:
                    await stream.ack(event)
                held.set_result(None)
                held = None
                taken.set()
    finally:
        if deadline is not None:
            deadline.cancel()
        stream.enable_acks = enable_acks
        stream._processors.remove(add)  # type: ignore[attr-defined]
