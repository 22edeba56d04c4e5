"""Every use of Faust's private internals, in one place, with the reason for each (any broker).

They hold for the faust-streaming releases in :data:`TESTED`; importing this module with
another release fails at once, rather than a worker misbehaving later.

**A race that skips input after table recovery.** faust-streaming 0.15.3, ``Recovery.on_recovery_completed``, resumes the stream partitions,
seeks them to their committed offsets and only then resumes the app's flow control, which
clears every stream's queue (``clear_on_resume``). When recovery had to read changelogs,
the consumer's own flow is still on from that phase, so the fetcher can deliver records of
the just-resumed partitions into the stream queues before that clear. The clear drops them
while the fetch position and Faust's read offset have already moved past: the worker goes
on from a later offset and the skipped events are never processed (and Faust's gap
bookkeeping may even commit past them). Seen here after a SIGKILL restart: a worker went
from offset 249 straight to 341 on one partition.

The fix stops the consumer's flow before that method runs, so nothing is fetched until it
has sought to the committed offsets and resumed the flow itself; records a fetch returns
meanwhile are discarded by Faust and fetched again from the committed offset.

**Tables inside a batch** (Faust's ``Stream.take_events``, or ``streams.batches.take_ready``).
A table read or write takes its partition from Faust's current event (RocksDB keeps a database
per partition; the changelog record goes to that partition). Both set the current event only in
the background task that fills their buffer, never in the agent's, so an agent working through
a batch says which event it is on with :func:`processing`.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import importlib.metadata
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from packaging.specifiers import SpecifierSet
from packaging.version import Version

# Faust has no public setter of its current event: it sets it only while iterating a stream.
from faust.streams import _current_event
from faust.tables.recovery import Recovery
from faust.types import EventT

#: The faust-streaming releases these fixes were written and tested against (pyproject pins the same).
TESTED = SpecifierSet(">=0.15.3,<0.16")
_INSTALLED = Version(importlib.metadata.version("faust-streaming"))
if _INSTALLED not in TESTED:
    raise ImportError(f"faust-streaming {_INSTALLED} is installed; streams.faust_fixes reaches into its internals "
                      f"and is tested with {TESTED} only")

#: Table rows that may wait in Faust's producer buffer before Faust stops reading input to send
#: them. Faust's default (100) stalled the input after nearly every batch, which writes its rows
#: at once (hundreds for a full batch); each batch hands its rows on before the next.
CHANGELOG_BUFFER_MESSAGES = 10_000

_on_recovery_completed = Recovery.on_recovery_completed


async def _on_recovery_completed_with_flow_stopped(self: Recovery, generation_id: int = 0) -> None:
    self.app.consumer.stop_flow()
    await _on_recovery_completed(self, generation_id)


def apply_faust_fixes() -> None:
    """Patch Faust's recovery (idempotent); every worker applies it, whatever the broker."""
    Recovery.on_recovery_completed = _on_recovery_completed_with_flow_stopped  # type: ignore[method-assign]


@contextmanager
def processing(event: EventT | None) -> Iterator[None]:
    """Make ``event`` Faust's current event while the block runs: the partition tables use
    (None: leave the current event as it is)."""
    if event is None:
        yield
        return
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def allow_batch_rows(app: faust.App) -> None:
    """Let a batch's table rows wait in the producer buffer without stopping the input (call it
    from an agent: the producer exists once the app runs). Faust has no setting for the limit."""
    app.producer.buffer.max_messages = CHANGELOG_BUFFER_MESSAGES


def waiting(stream: faust.StreamT) -> Any:
    """The queue of events the stream read from the broker and no agent took yet (Faust exposes
    no public view of it; batching by lag needs to know whether it is empty)."""
    return stream.channel.queue  # type: ignore[attr-defined]


def read_in_background(stream: faust.StreamT, processor: Callable[[Any], Awaitable[Any]]) -> Callable[[], None]:
    """Run ``processor`` on each of the stream's events in Faust's own background reader, as
    ``Stream.take_events`` does (Faust has no public way to read a stream without an agent's
    loop); returns what detaches the processor."""
    stream.add_processor(processor)
    stream._enable_passive(aiter(stream.channel))  # type: ignore[attr-defined]
    return lambda: stream._processors.remove(processor)  # type: ignore[attr-defined]
