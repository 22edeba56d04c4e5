"""The dynamic batcher on its own: plain functions stand in for a model. Every wait is on a
condition (a pass has started, the queue holds a request), never a fixed sleep."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from encoders.batching import Batcher, Busy


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Let the event loop run until ``condition()`` holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.001)


def double(numbers: list[int]) -> list[int]:
    return [2 * n for n in numbers]


def test_requests_larger_than_a_batch_are_split_and_reassembled() -> None:
    sizes: list[int] = []

    async def run() -> list[list[int]]:
        async with Batcher(double, max_batch_size=4, max_wait_ms=20, max_queue=8, on_batch=sizes.append) as batcher:
            return await asyncio.gather(batcher.submit(list(range(6))), batcher.submit([10, 11, 12]))

    assert asyncio.run(run()) == [[0, 2, 4, 6, 8, 10], [20, 22, 24]]
    assert sizes == [4, 4, 1]


def test_a_full_queue_raises_busy_at_once() -> None:
    started, release = threading.Event(), threading.Event()

    def slow(numbers: list[int]) -> list[int]:
        started.set()
        release.wait(5)
        return numbers

    async def run() -> None:
        async with Batcher(slow, max_batch_size=1, max_wait_ms=0, max_queue=1) as batcher:
            running = asyncio.ensure_future(batcher.submit([1]))  # taken by the (blocked) first pass
            await until(started.is_set)
            waiting = asyncio.ensure_future(batcher.submit([2]))  # fills the queue
            await until(lambda: batcher.queue_depth == 1)
            with pytest.raises(Busy):
                await batcher.submit([3])
            release.set()
            assert await asyncio.gather(running, waiting) == [[1], [2]]

    asyncio.run(run())


def test_an_error_fails_only_its_batch() -> None:
    def fragile(numbers: list[int]) -> list[int]:
        if 13 in numbers:
            raise ValueError("unlucky")
        return numbers

    async def run() -> None:
        async with Batcher(fragile, max_batch_size=1, max_wait_ms=0, max_queue=8) as batcher:
            with pytest.raises(ValueError, match="unlucky"):
                await batcher.submit([13])
            assert await batcher.submit([7]) == [7]

    asyncio.run(run())


def test_a_cancelled_request_is_skipped() -> None:
    seen: list[int] = []
    started, release = threading.Event(), threading.Event()

    def record(numbers: list[int]) -> list[int]:
        started.set()
        release.wait(5)
        seen.extend(numbers)
        return numbers

    async def run() -> None:
        async with Batcher(record, max_batch_size=1, max_wait_ms=0, max_queue=8) as batcher:
            first = asyncio.ensure_future(batcher.submit([1]))
            await until(started.is_set)  # the first pass is running
            abandoned = asyncio.ensure_future(batcher.submit([2, 3]))
            await until(lambda: batcher.queue_depth == 1)  # waiting behind it
            abandoned.cancel()
            release.set()
            assert await first == [1]
            assert await batcher.submit([4]) == [4]

    asyncio.run(run())
    assert seen == [1, 4]


def test_stop_fails_waiting_requests() -> None:
    async def run() -> None:
        batcher = Batcher(double, max_batch_size=4, max_wait_ms=10_000, max_queue=8)
        batcher.start()
        waiting = asyncio.ensure_future(batcher.submit([1]))
        await until(lambda: batcher.queue_depth == 1)
        await batcher.stop()
        with pytest.raises(RuntimeError, match="stopped"):
            await waiting
        with pytest.raises(RuntimeError, match="not running"):
            await batcher.submit([1])

    asyncio.run(run())
