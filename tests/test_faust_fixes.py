"""The Faust recovery fix: stream partitions are resumed and sought with the consumer's flow stopped.

The race it closes needs a restart with changelogs to read; the SIGKILL-restart tests in
``test_pipeline.py`` and ``test_crash.py`` are where its effect shows (no skipped offsets).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

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
    import streams.app  # noqa: F401  (applies the fix on import)

    assert Recovery.on_recovery_completed is faust_fixes._on_recovery_completed_with_flow_stopped
