"""Every use of Faust's private internals, in one place: each says why, and the release range
it was written against is checked before any is applied (``pyproject.toml`` pins the same range).

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

**Batches of our own** (``streams.batches.take_ready``): a stream reads its channel in a
background task only through a private method (as ``Stream.take_events`` does), and a processor
is removed only through the private list: :func:`read_in_background`, :func:`remove_processor`.

**Hooks for brokers that need them** (used only by ``streams.tools.embedded_broker`` for
Tansu's quirks, and only when the settings say the broker is the embedded one): the worker
consumer's fetch wait, which Faust hard-codes to 1.5 s (``_create_worker_consumer``), and the
end offsets table recovery reads (``_highwaters``).
"""

from __future__ import annotations

import functools
import importlib.metadata
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import faust
from aiokafka.structs import TopicPartition

# Faust has no public setter of its current event: it sets it only while iterating a stream.
from faust.streams import _current_event
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import EventT, StreamT

#: The faust-streaming releases these fixes were written against: [first, end).
TESTED_RELEASES = ((0, 15, 3), (0, 16))

_on_recovery_completed = Recovery.on_recovery_completed
_create_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer
_highwaters = AIOKafkaConsumerThread._highwaters


def check_faust_release(version: str | None = None) -> None:
    """Refuse (RuntimeError) a faust-streaming release outside :data:`TESTED_RELEASES`: the
    internals patched here may have changed."""
    version = version or importlib.metadata.version("faust-streaming")
    release = tuple(int(part) for part in version.split(".")[:3] if part.isdigit())
    first, end = TESTED_RELEASES
    if not first <= release < end:
        raise RuntimeError(f"faust-streaming {version} is untested: streams/faust_fixes.py patches internals of "
                           f"{'.'.join(map(str, first))} up to {'.'.join(map(str, end))} (exclusive)")


async def _on_recovery_completed_with_flow_stopped(self: Recovery, generation_id: int = 0) -> None:
    self.app.consumer.stop_flow()
    await _on_recovery_completed(self, generation_id)


def apply_faust_fixes() -> None:
    """Patch Faust's recovery (idempotent); every worker applies it, whatever the broker."""
    check_faust_release()
    Recovery.on_recovery_completed = _on_recovery_completed_with_flow_stopped  # type: ignore[method-assign]


def _consumer_with_fetch_wait(self: AIOKafkaConsumerThread, transport: object, fetch_wait_ms: int) -> object:
    consumer = _create_worker_consumer(self, transport)
    consumer._fetch_max_wait_ms = fetch_wait_ms  # aiokafka reads it when the consumer starts
    return consumer


def set_worker_fetch_wait(fetch_wait_ms: int) -> None:
    """Make the worker consumer wait at most ``fetch_wait_ms`` for a fetch (idempotent)."""
    check_faust_release()
    AIOKafkaConsumerThread._create_worker_consumer = functools.partialmethod(  # type: ignore[method-assign]
        _consumer_with_fetch_wait, fetch_wait_ms=fetch_wait_ms)


EndOffsets = Callable[[str, Mapping[TopicPartition, int]], Awaitable[dict[TopicPartition, int]]]


def correct_end_offsets(correct: EndOffsets) -> None:
    """Pass the end offsets Faust reads (table recovery's highwaters) through ``correct``, which
    gets the bootstrap servers and the reported offsets (idempotent)."""
    check_faust_release()

    async def highwaters(self: AIOKafkaConsumerThread, partitions: object) -> dict[TopicPartition, int]:
        reported = await _highwaters(self, partitions)
        return await correct(",".join(f"{url.host}:{url.port or 9092}" for url in self.transport.url), reported)

    AIOKafkaConsumerThread._highwaters = highwaters  # type: ignore[method-assign]


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


def read_in_background(stream: StreamT) -> None:
    """Have ``stream`` read its channel in a background task, handing each event to its processors."""
    stream._enable_passive(aiter(stream.channel))  # type: ignore[attr-defined]


def remove_processor(stream: StreamT, processor: Callable[[object], Awaitable[object]]) -> None:
    """Undo ``stream.add_processor(processor)``."""
    stream._processors.remove(processor)  # type: ignore[attr-defined]


def waiting(stream: StreamT) -> Any:
    """The queue of events the stream read from the broker and no agent took yet (Faust exposes
    no public view of it; batching by lag needs to know whether it is empty)."""
    return stream.channel.queue  # type: ignore[attr-defined]


#: Table rows that may wait in Faust's producer buffer before Faust stops reading input to send
#: them. Faust's default (100) stalled the input after nearly every batch, which writes its rows
#: at once (hundreds for a full batch); each batch hands its rows on before the next.
CHANGELOG_BUFFER_MESSAGES = 10_000


def allow_batch_rows(app: faust.App) -> None:
    """Let a batch's table rows wait in the producer buffer without stopping the input (call it
    from an agent: the producer exists once the app runs). Faust has no setting for the limit."""
    app.producer.buffer.max_messages = CHANGELOG_BUFFER_MESSAGES
