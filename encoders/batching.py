"""Dynamic batching: concurrent requests share forward passes.

Each request brings a list of items. Requests wait in a bounded queue; one loop gathers their
items into a batch of at most ``max_batch_size``, waiting at most ``max_wait_ms`` after the
oldest waiting request arrived, runs the batch function once in a worker thread (so the event
loop keeps serving while the model runs) and hands each request its slice of the results. A
request larger than a batch is spread over consecutive passes. When ``max_queue`` requests
are already waiting, :meth:`Batcher.submit` raises :class:`Busy` at once instead of letting
the queue, and everyone's latency, grow without limit.

>>> import asyncio
>>> async def demo():
...     double = lambda numbers: [2 * n for n in numbers]
...     async with Batcher(double, max_batch_size=8, max_wait_ms=50, max_queue=4) as batcher:
...         results = await asyncio.gather(*(batcher.submit([n, n + 1]) for n in range(4)))
...     return results, batcher.forward_passes
>>> asyncio.run(demo())
([[0, 2], [2, 4], [4, 6], [6, 8]], 1)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Busy(RuntimeError):
    """Too many requests are waiting: retry later (HTTP 503 with Retry-After)."""


@dataclass(eq=False)
class _Request(Generic[T, R]):
    items: list[T]
    future: asyncio.Future[list[R]]
    arrived: float
    results: list[R] = field(default_factory=list)
    taken: int = 0  # items already handed to a forward pass


class Batcher(Generic[T, R]):
    """Runs ``fn`` (a list of items -> a list of results, in order) over dynamic batches.

    ``executor`` runs ``fn``; by default a private single thread. Pass one shared executor
    to several batchers so their passes take turns rather than fight over the same cores.
    ``on_batch`` is called with the size of each batch (for metrics).
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        *,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        executor: Executor | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.on_batch = on_batch
        #: Forward passes run so far.
        self.forward_passes = 0
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="batcher")
        self._waiting: deque[_Request[T, R]] = deque()
        self._pending = 0  # items waiting, over all requests
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def queue_depth(self) -> int:
        """Requests waiting for (the rest of) a forward pass."""
        return len(self._waiting)

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        """Stop the loop; requests still waiting fail. A pass already running finishes in its thread."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        _fail(self._waiting, RuntimeError("the batcher stopped"))
        self._waiting.clear()
        self._pending = 0

    async def __aenter__(self) -> Batcher[T, R]:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def submit(self, items: Sequence[T]) -> list[R]:
        """The results for ``items``, computed in shared forward passes; :class:`Busy` if the queue is full."""
        if not items:
            return []
        if self._task is None or self._task.done():
            raise RuntimeError("the batcher is not running")
        if len(self._waiting) >= self.max_queue:
            raise Busy(f"{len(self._waiting)} requests are already waiting")
        loop = asyncio.get_running_loop()
        request: _Request[T, R] = _Request(list(items), loop.create_future(), loop.time())
        self._waiting.append(request)
        self._pending += len(request.items)
        self._arrived.set()
        return await request.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            deadline = self._waiting[0].arrived + self.max_wait
            while self._pending < self.max_batch_size and (timeout := deadline - loop.time()) > 0:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), timeout)
                except TimeoutError:
                    break
            batch, parts = self._take()
            if batch:
                await self._run_pass(loop, batch, parts)

    def _take(self) -> tuple[list[T], list[tuple[_Request[T, R], int]]]:
        """Up to ``max_batch_size`` items from the oldest requests, and how many came from each."""
        batch: list[T] = []
        parts: list[tuple[_Request[T, R], int]] = []
        while self._waiting and len(batch) < self.max_batch_size:
            request = self._waiting[0]
            left = len(request.items) - request.taken
            if request.future.done():  # its caller gave up, or an earlier pass failed
                self._waiting.popleft()
                self._pending -= left
                continue
            n = min(left, self.max_batch_size - len(batch))
            batch.extend(request.items[request.taken : request.taken + n])
            request.taken += n
            self._pending -= n
            parts.append((request, n))
            if request.taken == len(request.items):
                self._waiting.popleft()
        return batch, parts

    async def _run_pass(
        self, loop: asyncio.AbstractEventLoop, batch: list[T], parts: list[tuple[_Request[T, R], int]]
    ) -> None:
        self.forward_passes += 1
        if self.on_batch is not None:
            self.on_batch(len(batch))
        try:
            results = await loop.run_in_executor(self._executor, self.fn, batch)
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
        except asyncio.CancelledError:
            _fail((request for request, _ in parts), RuntimeError("the batcher stopped"))
            raise
        except Exception as error:  # the callers get the error; the loop goes on
            _fail((request for request, _ in parts), error)
            return
        start = 0
        for request, n in parts:
            request.results.extend(results[start : start + n])
            start += n
            if len(request.results) == len(request.items) and not request.future.done():
                request.future.set_result(request.results)


def _fail(requests: Iterable[_Request[T, R]], error: Exception) -> None:
    for request in requests:
        if not request.future.done():
            request.future.set_exception(error)
