"""``coursestream experiment report``: which ranking policy (A/B variant) learners do better with,
from the learner-events and recommendations topics, or from files of them.

The topics are read from the beginning to their end as the command starts (every partition);
files are JSON Lines: the learner-topic messages in the order they were sent (a replayed log:
``coursestream replay`` sends each learner's in order) and the recommendations as published
(``coursestream subscribe`` prints them). Messages that the worker would refuse are skipped, as
the worker dead-letters them; a recommendation answering a trigger already answered (delivery
is at least once) is counted once. Then every list is placed after the message it answers and
take-ups are owed by ``online.attribution``'s rule; ``online.evaluation.experiment`` compares
the policies (the command, in ``streams.cli``).

It keeps each learner's taken courses and event ids in memory: size it for the topics' retention.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from online.attribution import Message, PolicyTally, tally
from online.events import InvalidEvent, parse_learner_message
from streams.settings import Settings


def learner_messages(values: Iterable[tuple[bytes | None, bytes | None]]) -> Iterator[Message]:
    """The messages of ``(key, value)`` pairs the worker would process, in order (a message whose
    key is given and is not its user is refused, as the worker refuses it)."""
    for key, value in values:
        try:
            message = parse_learner_message(value)
        except InvalidEvent:
            continue
        if key is not None and key != message.user_id.encode():
            continue
        yield message


def recommendations_by_trigger(values: Iterable[bytes]) -> dict[str, dict[str, Any]]:
    """The first recommendation answering each trigger event id."""
    found: dict[str, dict[str, Any]] = {}
    for value in values:
        try:
            document = orjson.loads(value)
            found.setdefault(document["trigger"]["event_id"], document)
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
    return found


async def _read_to_end(settings: Settings, topics: list[str]) -> dict[str, list[tuple[int, int, bytes | None, bytes | None]]]:
    """Every record of ``topics`` up to their ends as now: ``(partition, offset, key, value)`` by topic."""
    wait_ms = settings.kafka_embedded_fetch_wait_ms if settings.kafka_embedded else 500
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False,
                                fetch_max_wait_ms=wait_ms, **settings.kafka_client_options())
    await consumer.start()
    records: dict[str, list[tuple[int, int, bytes | None, bytes | None]]] = {topic: [] for topic in topics}
    try:
        await consumer.topics()  # the cluster's metadata, partitions included
        partitions = [TopicPartition(topic, p) for topic in topics
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return records
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        if settings.kafka_embedded:  # Tansu reports the end of a topic short (streams.tools.embedded_broker)
            from streams.tools.embedded_broker import true_end_offsets

            end = await true_end_offsets(settings.kafka_bootstrap_servers, end)
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for tp, batch in (await consumer.getmany(timeout_ms=200, max_records=10_000)).items():
                records[tp.topic].extend((tp.partition, m.offset, m.key, m.value) for m in batch if m.offset < end[tp])
    finally:
        await consumer.stop()
    return records


def tally_topics(settings: Settings) -> dict[str, PolicyTally]:
    """Each policy's lists and take-ups from the learner-events and recommendations topics."""
    events, recommendations = settings.topic_learner_events, settings.topic_recommendations
    records = asyncio.run(_read_to_end(settings, [events, recommendations]))
    ordered = sorted(records[events], key=lambda record: record[:2])  # each learner's messages in their order
    return tally(learner_messages((key, value) for _, _, key, value in ordered),
                 recommendations_by_trigger(value for _, _, _, value in records[recommendations] if value))


def tally_files(events: Path, recommendations: Path) -> dict[str, PolicyTally]:
    """Each policy's lists and take-ups from JSON Lines files of both (see the module)."""
    with events.open("rb") as event_lines, recommendations.open("rb") as recommendation_lines:
        lists = recommendations_by_trigger(line for line in recommendation_lines if line.strip())
        return tally(learner_messages((None, line) for line in event_lines if line.strip()), lists)


def experiment_tallies(
    settings: Settings, events: Path | None = None, recommendations: Path | None = None
) -> dict[str, PolicyTally]:
    """Each policy's lists and take-ups: from files when both are given, else from the topics."""
    if (events is None) != (recommendations is None):
        raise ValueError("give both --events and --recommendations, or neither (the topics)")
    return tally_files(events, recommendations) if events and recommendations else tally_topics(settings)


def default_control(settings: Settings, tallies: Mapping[str, PolicyTally]) -> str | None:
    """The policy the others are compared with: the first of the settings' that published a list."""
    return next((policy for policy in settings.policies if policy in tallies), None)
