"""Test-side plumbing: plain Kafka clients (kafka-python)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def produce(bootstrap_servers: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5)
    count = 0
    for key, value in messages:
        producer.send(topic, value=value, key=key)
        count += 1
    producer.flush()
    producer.close()
    return count


class TopicReader:
    """Reads a topic from the beginning and keeps what it read, so later waits go on where it stopped."""

    def __init__(self, bootstrap_servers: str, topic: str,
                 decode: Callable[[ConsumerRecord], object] = lambda message: json.loads(message.value),
                 describe: Callable[[], str] = lambda: "", fetch_max_wait_ms: int = 10) -> None:
        self.topic, self.decode, self.describe = topic, decode, describe
        self.records: list = []
        # Tansu answers a fetch when the wait expires, empty if finding the offset took longer:
        # topics of tens of thousands of large records need a longer wait than 10 ms.
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                                       fetch_max_wait_ms=fetch_max_wait_ms)
        self._assigned = False

    def read_until(self, until: Callable[[list], bool], timeout_s: float = 120.0) -> list:
        """Poll until ``until(records)`` holds for everything read so far; fail after a timeout."""
        deadline = time.monotonic() + timeout_s
        while not self._assigned:
            if partitions := self._consumer.partitions_for_topic(self.topic):
                self._consumer.assign([TopicPartition(self.topic, p) for p in sorted(partitions)])
                self._consumer.seek_to_beginning()
                self._assigned = True
            elif time.monotonic() > deadline:
                raise TimeoutError(f"topic {self.topic} never appeared\n{self.describe()}")
            else:
                time.sleep(0.2)
        while not until(self.records):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: {len(self.records)} records after {timeout_s}s\n{self.describe()}")
            for batch in self._consumer.poll(timeout_ms=200 + self._consumer.config["fetch_max_wait_ms"]).values():
                self.records.extend(self.decode(message) for message in batch)
        return self.records

    def read_to_end(self, timeout_s: float = 120.0) -> list:
        """Poll until every partition is read up to its high watermark (from the fetch responses:
        right on every broker, unlike ListOffsets on the embedded one)."""
        def at_end(_: list) -> bool:
            partitions = self._consumer.assignment()
            return bool(partitions) and all(
                (high := self._consumer.highwater(tp)) is not None and self._consumer.position(tp) >= high
                for tp in partitions)
        return self.read_until(at_end, timeout_s)

    def close(self) -> None:
        self._consumer.close()


def committed(bootstrap_servers: str, group: str, topic: str) -> int:
    """How many messages of ``topic`` the consumer group has committed (a fresh topic: the sum of
    its committed offsets), asked without joining the group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False)
    try:
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in consumer.partitions_for_topic(topic) or ())
    finally:
        consumer.close()


def consume(
    bootstrap_servers: str,
    topic: str,
    until: Callable[[list], bool],
    timeout_s: float = 120.0,
    decode: Callable[[ConsumerRecord], object] = lambda message: json.loads(message.value),
    describe: Callable[[], str] = lambda: "",
    fetch_max_wait_ms: int = 10,
) -> list:
    """Read a topic from the beginning until ``until(records)`` holds; fail after a timeout."""
    reader = TopicReader(bootstrap_servers, topic, decode, describe, fetch_max_wait_ms)
    try:
        return reader.read_until(until, timeout_s)
    finally:
        reader.close()
