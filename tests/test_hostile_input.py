"""Hostile input: generated bad messages are rejected with a reason, and a real worker fed ten
thousand of them among valid events never stops, dead-letters each bad one and processes each
valid one: count in = processed + dead-lettered.

The long version sends more: ``HOSTILE_BAD_MESSAGES=30000 pytest -o timeout=1800 tests/test_hostile_input.py``.
"""

from __future__ import annotations

import base64
import os
import random
import re

import httpx
import pytest
from hypothesis import given, settings
from kafka import KafkaProducer

from online.events import DEAD_LETTER_KEEPS_BYTES, MAX_EVENT_BYTES, InvalidEvent, Recommendation, parse_learner_event
from online.profile import MAX_BYTES, LearnerProfile
from online.recommender import Recommender
from online.sources import oulad_catalogue
from streams.tools.demo import SAMPLE, sample_events
from tests.hostile import MUTATIONS, Message, draw_many, event_dicts, keyed, mutated, valid_messages
from tests.kafka_io import consume
from tests.test_pipeline import new_pipeline

BAD_MESSAGES = int(os.environ.get("HOSTILE_BAD_MESSAGES", "10000"))
VALID_MESSAGES = BAD_MESSAGES // 20


def accepted(key: bytes | None, value: bytes | None) -> bool:
    """What the worker's learner agent accepts: a valid event keyed by its user."""
    return key == parse_learner_event(value).user_id.encode()


@settings(max_examples=1500, deadline=None)
@given(mutated())
def test_every_kind_of_bad_message_is_rejected_with_a_reason(case: tuple[str, Message]) -> None:
    how, (key, value) = case
    try:
        assert not accepted(key, value), f"{how}: accepted {value[:200]!r}"
    except InvalidEvent as error:
        assert str(error), how


@settings(max_examples=300, deadline=None)
@given(event_dicts)
def test_any_valid_event_is_learned_into_a_small_profile(event: dict) -> None:
    key, value = keyed(event)
    assert accepted(key, value)
    profile, engine = LearnerProfile(), Recommender()
    assert engine.learn_one(profile, parse_learner_event(value), None, {}, offset=0)
    assert len(profile.to_bytes()) <= MAX_BYTES


def oversized() -> list[Message]:
    """Over the worker's limit; the last three over a Kafka broker's default 1 MB too (Tansu takes them)."""
    return [(b"u-big", b"{" + b" " * MAX_EVENT_BYTES + b"}"), (b"u-big", b"x" * 900_000),
            (b"u-big", b'{"kind": "click", "pad": "' + b"y" * 1_500_000 + b'"}'), (b"u-big", b"z" * 3_000_000),
            (b"k" * 1_000_000, b"w" * 1_000_000)]


def produce_in_bulk(servers: str, topic: str, messages: list[Message]) -> list[tuple[int, int]]:
    """Send every message; returns each one's (partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=20, batch_size=256 * 1024,
                             max_request_size=8 * 1024 * 1024)
    futures = [producer.send(topic, key=key, value=value) for key, value in messages]
    producer.flush()
    placed = [(future.get(timeout=60).partition, future.get(timeout=60).offset) for future in futures]
    producer.close()
    return placed


@pytest.mark.broker
@pytest.mark.model
def test_a_worker_fed_ten_thousand_bad_messages_never_stops_and_accounts_for_each(
    broker, encoder_service, tmp_path
) -> None:
    pipeline = new_pipeline(broker, encoder_service, tmp_path)
    s = pipeline.settings
    drawn = draw_many(mutated(), BAD_MESSAGES - len(oversized()))
    assert {how for how, _ in drawn} == set(MUTATIONS)
    bad = [message for _, message in drawn] + oversized()
    known = [(e.user_id.encode(), e.model_dump_json().encode()) for e in sample_events(VALID_MESSAGES // 2)]
    valid = draw_many(valid_messages, VALID_MESSAGES - len(known)) + known  # unknown courses and users, and known
    labelled = [(message, False) for message in bad] + [(message, True) for message in valid]
    random.Random(7).shuffle(labelled)

    worker = pipeline.worker()
    try:
        pipeline.index(list(oulad_catalogue(SAMPLE)), worker)
        placed = produce_in_bulk(s.kafka_bootstrap_servers, s.topic_learner_events, [m for m, _ in labelled])
        sent_bad = {where: message for where, (message, ok) in zip(placed, labelled) if not ok}
        sent_valid = {where for where, (_, ok) in zip(placed, labelled) if ok}

        letters = consume(s.kafka_bootstrap_servers, s.topic_dead_letter,
                          lambda r: {(x["partition"], x["offset"]) for x in r} >= set(sent_bad), timeout_s=600,
                          describe=lambda: worker.log()[-3000:])
        recs = pipeline.recommendations(
            lambda r: {(x.trigger.partition, x.trigger.offset) for x in r} >= sent_valid, worker, timeout_s=600)

        assert worker.process.poll() is None, "the worker stopped"
        url = f"http://127.0.0.1:{pipeline.env['COURSESTREAM_WEB_PORT']}"
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        log = worker.log()
        assert not re.search(r"crashed|Traceback", log), log[-3000:]
        forged = [line for line in log.splitlines() if line.strip() and not line.startswith("[20")]
        assert not forged, f"log lines a message could forge: {forged[:3]}"
        dead_lettered = re.findall(r'^coursestream_dead_letters_total\{error_type="(\w+)"\} (\S+)$',
                                   httpx.get(f"{url}/metrics", timeout=10).text, re.MULTILINE)
        assert dead_lettered == [("InvalidEvent", f"{float(len(sent_bad))}")]
    finally:
        worker.stop()

    lettered = {(x["partition"], x["offset"]): x for x in letters if x["topic"] == s.topic_learner_events}
    processed = {(r.trigger.partition, r.trigger.offset) for r in recs if isinstance(r, Recommendation)}
    assert len(placed) == len(processed) + len(lettered), "count in = processed + dead-lettered"
    assert set(lettered) == set(sent_bad) and processed == sent_valid
    for where, (key, value) in sent_bad.items():
        letter = lettered[where]
        assert letter["reason"] and letter["error_type"] == "InvalidEvent"
        kept = base64.b64decode(letter["value"])
        original = value or b""
        assert letter["value_bytes"] == len(original) and kept == original[:DEAD_LETTER_KEEPS_BYTES]
        assert letter["value_kept_bytes"] == len(kept)
        assert letter["key"] is None if key is None else base64.b64decode(letter["key"]) == key[:DEAD_LETTER_KEEPS_BYTES]
