"""The Faust fixes: stream partitions are resumed and sought with the consumer's flow stopped;
an agent working through a batch names Faust's current event.

The race the first closes needs a restart with changelogs to read; the SIGKILL-restart tests in
``test_pipeline.py`` and ``test_crash.py`` are where its effect shows (no skipped offsets). The
worker's tests on several partitions show the second: a table row read or written under the
wrong event would come from, or go to, another partition's store.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
from faust.tables.recovery import Recovery

from streams import faust_fixes


def test_recovery_completion_runs_with_the_consumer_flow_stopped(monkeypatch) -> None:
    flow_when_resuming: list[bool] = []

    async def original(recovery, generation_id: int = 0) -> None:
        flow_when_resuming.append(recovery.app.consumer.flow_active)
        recovery.app.consumer.flow_active = True  # Faust resumes the flow at its end

    consumer = SimpleNamespace(flow_active=True)
    consumer.stop_flow = lambda: setattr(consumer, "flow_active", False)
    monkeypatch.setattr(faust_fixes, "_on_recovery_completed", original)

    asyncio.run(faust_fixes._on_recovery_completed_with_flow_stopped(SimpleNamespace(app=SimpleNamespace(consumer=consumer))))

    assert flow_when_resuming == [False] and consumer.flow_active


def test_the_worker_app_applies_the_fix() -> None:
    import streams.worker  # noqa: F401  (applies the fix on import)

    assert Recovery.on_recovery_completed is faust_fixes._on_recovery_completed_with_flow_stopped


class _Event:  # a stand-in: Faust holds its current event by weak reference
    pass


def test_processing_makes_an_event_current_for_its_block_only() -> None:
    first, second = _Event(), _Event()
    assert faust.current_event() is None
    with faust_fixes.processing(first):
        assert faust.current_event() is first
        with faust_fixes.processing(second):
            assert faust.current_event() is second
        with faust_fixes.processing(None):
            assert faust.current_event() is first
        assert faust.current_event() is first
    assert faust.current_event() is None
