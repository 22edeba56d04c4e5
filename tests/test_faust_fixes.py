"""The Faust fixes: stream partitions are resumed and sought with the consumer's flow stopped;
an agent working through a batch names Faust's current event; an untested Faust release is
refused; the worker leaves the embedded broker's set-up to the command that starts it.

The race the first closes needs a restart with changelogs to read; the SIGKILL-restart tests in
``test_pipeline.py`` and ``test_crash.py`` are where its effect shows (no skipped offsets). The
worker's tests on several partitions show the second: a table row read or written under the
wrong event would come from, or go to, another partition's store.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from types import SimpleNamespace

import faust
import pytest
from faust.tables.recovery import Recovery

from streams import faust_fixes
from tests.kafka_io import PROJECT_ROOT


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


def test_an_untested_faust_release_is_refused() -> None:
    faust_fixes.check_faust_release("0.15.3")
    for untested in ("0.16.0", "0.10.4", "1.0.0"):
        with pytest.raises(RuntimeError, match="untested"):
            faust_fixes.check_faust_release(untested)


def test_the_worker_imports_no_tool_and_leaves_the_broker_set_up_to_start_up() -> None:
    """Even on the embedded broker, importing the worker loads nothing of ``streams.tools``: the
    command that starts it applies the broker's work-arounds."""
    probe = ("import sys, streams.worker\n"
             "from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread as T\n"
             "from streams import faust_fixes as f\n"
             "assert not [m for m in sys.modules if m.startswith('streams.tools')], 'a tool was imported'\n"
             "assert T._create_worker_consumer is f._create_worker_consumer and T._highwaters is f._highwaters\n"
             "from streams.cli import prepare_broker\n"
             "prepare_broker(streams.worker.settings)\n"
             "assert T._highwaters is not f._highwaters, 'the work-arounds were not applied'\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COURSESTREAM_KAFKA_EMBEDDED": "1", "COURSESTREAM_WEB_ENABLED": "false"})
    assert done.returncode == 0, done.stderr[-3000:]
