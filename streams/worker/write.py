"""Step 8, write: each row a window of batches changed (shared models, profiles, latest lists, taken courses)
written once and handed to the Kafka producer, then the window's events acked.

A crash before the ack redelivers every event of the window, and none of their rows was
written; profiles skip what they already applied (``online.profile``), so redelivery changes
nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping

import faust
from faust.types import EventT

from streams import metrics
from streams.batches import Unwritten
from streams.faust_fixes import processing
from streams.worker.app import app, latest_recommendations, profiles, taken
from streams.worker.partitions import save_learned


async def write(
    window: Unwritten,
    stream: faust.StreamT,
    partitions: Mapping[int, EventT],
    profile_rows: Mapping[bytes, tuple[bytes, EventT]],
    latest_rows: Mapping[bytes, tuple[bytes, EventT]],
    taken_rows: Mapping[bytes, tuple[bytes, EventT]],
) -> None:
    """Write the changed rows (each under an event of its partition), flush, then ack ``window``."""
    for partition, event in partitions.items():
        with processing(event):
            save_learned(partition)
    for key, (row, event) in profile_rows.items():
        with processing(event):
            profiles[key] = row
    for key, (row, event) in latest_rows.items():
        with processing(event):
            latest_recommendations[key] = row
    for key, (row, event) in taken_rows.items():  # after the profiles: see LearnerWindow.learn
        with processing(event):
            taken[key] = row
    await app.producer.buffer.flush()  # the buffer holds one window's rows at most
    metrics.learner_write_events.observe(len(window.events))
    await window.acked(stream)
