"""A fix for a Faust race that skips input after table recovery (any broker, not just Tansu).

faust-streaming 0.15.3, ``Recovery.on_recovery_completed``, resumes the stream partitions,
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
"""

from __future__ import annotations

from faust.tables.recovery import Recovery

_on_recovery_completed = Recovery.on_recovery_completed


async def _on_recovery_completed_with_flow_stopped(self: Recovery, generation_id: int = 0) -> None:
    self.app.consumer.stop_flow()
    await _on_recovery_completed(self, generation_id)


def apply_faust_fixes() -> None:
    """Patch Faust's recovery (idempotent); every worker applies it, whatever the broker."""
    Recovery.on_recovery_completed = _on_recovery_completed_with_flow_stopped  # type: ignore[method-assign]
