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


def consume(
    bootstrap_servers: str,
    topic: str,
    until: Callable[[list], bool],
    timeout_s: float = 120.0,
    decode: Callable[[ConsumerRecord], object] = lambda message: json.loads(message.value),
    describe: Callable[[], str] = lambda: "",
) -> list:
    """Read a topic from the beginning until ``until(records)`` holds; fail after a timeout."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, fetch_max_wait_ms=10)
    deadline = time.monotonic() + timeout_s
    while not (partitions := consumer.partitions_for_topic(topic)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} never appeared\n{describe()}")
        time.sleep(0.2)
    consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
    consumer.seek_to_beginning()
    records: list = []
    try:
        while not until(records):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: {len(records)} records after {timeout_s}s\n{describe()}")
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(decode(message) for message in batch)
    finally:
        consumer.close()
    return records
