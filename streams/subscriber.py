"""An example downstream subscriber of the recommendations topic, in plain kafka-python.

It reads with a consumer group (so several copies share the partitions and a restart
resumes where it stopped), validates every message against the published JSON Schema,
and drops duplicates by trigger event id: delivery is at least once, so after a worker
crash the same trigger can be answered twice. Copy it as the start of your own consumer.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterator

import jsonschema
from kafka import KafkaConsumer

from online.schemas import schema
from streams.settings import Settings


class SeenTriggers:
    """The most recent ``capacity`` trigger event ids: duplicates arrive close together.

    >>> seen = SeenTriggers(capacity=2)
    >>> [seen.add(i) for i in ("a", "b", "b", "c", "a")]  # "a" was forgotten to keep two
    [True, True, False, True, True]
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, event_id: str) -> bool:
        """Remember ``event_id``; False if it was already seen."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True


def recommendations(
    settings: Settings,
    group_id: str,
    on_invalid: Callable[[bytes, str], None] = lambda raw, reason: None,
    idle_timeout_s: float | None = None,
) -> Iterator[dict]:
    """Valid, de-duplicated recommendations from the output topic (stops after ``idle_timeout_s`` idle)."""
    validator = jsonschema.Draft202012Validator(schema("recommendation"))
    seen = SeenTriggers()
    consumer = KafkaConsumer(
        settings.topic_recommendations,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group_id,
        auto_offset_reset="earliest",
        consumer_timeout_ms=int(idle_timeout_s * 1000) if idle_timeout_s else float("inf"),
        session_timeout_ms=int(settings.kafka_session_timeout_s * 1000),
        heartbeat_interval_ms=int(settings.kafka_heartbeat_interval_s * 1000),
        **settings.kafka_client_options(),
    )
    try:
        for message in consumer:
            try:
                recommendation = json.loads(message.value)
                validator.validate(recommendation)
            except (ValueError, jsonschema.ValidationError) as error:
                on_invalid(message.value, str(error).splitlines()[0])
                continue
            if seen.add(recommendation["trigger"]["event_id"]):
                yield recommendation
    finally:
        consumer.close()
