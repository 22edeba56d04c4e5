"""The Faust floor: the least a Faust worker of ours does with a learner event (a benchmark baseline).

``coursestream bench pipeline`` runs it between its own pair of topics on the same broker, in
the same run as the recommender's worker. It is that worker with the recommender taken out: the
same app set-up (:func:`~streams.faust_app.create_app`), the same batches
(:func:`~streams.batches.take_ready`), a learner's table row read once and written once per
window of batches (:class:`~streams.batches.Unwritten`), the producer buffer handed on after it
and the events acked, and one record sent for each event (the event itself, with its produce
time). What the worker does above this floor is the recommender's own cost;
what lies between it and a bare aiokafka pass-through is Faust's.

Run it as ``python -m streams.floor`` with the worker's ``COURSESTREAM_*`` settings.
"""

from __future__ import annotations

import faust

from streams.batches import Unwritten, caught_up, take_ready
from streams.faust_app import create_app, raw_topic
from streams.faust_fixes import allow_batch_rows, processing
from streams.settings import Settings

settings = Settings()
app = create_app(settings)
learner_events = raw_topic(app, settings.topic_learner_events, settings.partitions)
passed_events = raw_topic(app, settings.topic_recommendations, settings.partitions)
#: user id (bytes) -> events of the learner passed on so far (decimal, bytes)
events_seen = app.Table("events-seen", key_type=bytes, value_type=bytes, partitions=settings.partitions)


@app.agent(learner_events)
async def pass_on(stream: faust.StreamT) -> None:
    """Learner events, a batch at a time -> each event on; each learner's count, one row a window."""
    allow_batch_rows(app)
    unwritten = Unwritten(settings.learner_write_interval_ms / 1000)
    counts: dict[bytes, tuple[int, faust.EventT]] = {}
    async for events in take_ready(stream, settings.learner_batch_size, settings.learner_batch_wait_ms / 1000,
                                   idle=unwritten.interval or None):
        unwritten.add(events)
        for event in events:
            key = event.message.key
            if key not in counts:
                with processing(event):
                    counts[key] = (int(events_seen.get(key, b"0")), event)
            counts[key] = (counts[key][0] + 1, event)
            await passed_events.send(key=key, value=event.message.value, partition=event.message.partition,
                                     timestamp=event.message.timestamp)
        if unwritten.due(caught_up(stream, events)):
            for key, (count, event) in counts.items():
                with processing(event):
                    events_seen[key] = str(count).encode()
            counts.clear()
            await app.producer.buffer.flush()
            await unwritten.acked(stream)


if __name__ == "__main__":
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    floor = faust.Worker(app, loglevel="warning")
    floor.spinner = None
    floor.execute_from_commandline()
