"""``coursestream demo``: the whole system on one machine, no external servers.

A real Kafka-protocol broker (Tansu) on a free port, the encoder service in this process
(CPU), one worker process with the embedded Qdrant engine and RocksDB tables, all under
a temporary folder. It indexes the OULAD sample that ships with the package (module AAA,
presentation 2013J; see ``streams/sample/oulad/ATTRIBUTION.md``), replays its real learner
events, prints recommendations as they are published, and stops everything on Ctrl-C or
when every event has its recommendation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import get_origin

from aiokafka import AIOKafkaConsumer

from online.events import ClickEvent, QuizEvent, Recommendation, VideoEvent
from online.sources import InvalidRow, oulad_catalogue, read_oulad
from streams.replay import publish_courses, replay_events
from streams.settings import Settings
from streams.tools.processes import WorkerProcess, embedded_env, embedded_services, settings_from
from streams.topics import ensure_topics

SAMPLE = Path(__file__).parents[1] / "sample" / "oulad"


def sample_events(limit: int | None) -> Iterator[ClickEvent | VideoEvent | QuizEvent]:
    count = 0
    for result in read_oulad(SAMPLE):
        if isinstance(result, InvalidRow):
            continue
        if limit is not None and count >= limit:
            return
        count += 1
        yield result


async def _wait_for(settings: Settings, topic: str, expected: int, on_record=None, timeout_s: float = 600.0) -> int:
    """Read ``topic`` from the start until ``expected`` records arrived; returns how many did."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap_servers, auto_offset_reset="earliest",
        enable_auto_commit=False, fetch_max_wait_ms=10, **settings.kafka_client_options(),
    )
    await consumer.start()
    seen = 0
    deadline = time.monotonic() + timeout_s
    try:
        while seen < expected and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                for message in batch:
                    seen += 1
                    if on_record:
                        on_record(message.value)
    finally:
        await consumer.stop()
    return seen


def _line(rec: Recommendation, titles: Mapping[str, str]) -> str:
    top = " | ".join(f"{titles.get(item.course_id, item.course_id)} {item.score:.2f}" for item in rec.items[:2])
    return f"{rec.user_id} after a {rec.trigger.kind} -> {top or '(nothing yet)'}"


async def _demo(settings: Settings, max_events: int | None, show: int, rate: float | None) -> dict[str, float]:
    courses = list(oulad_catalogue(SAMPLE))
    titles = {course.course_id: course.title for course in courses}
    print(f"indexing {len(courses)} courses of the OULAD sample through the encoder ...", flush=True)
    started = time.monotonic()
    waiting = asyncio.create_task(_wait_for(settings, settings.topic_course_indexed, len(courses)))
    await publish_courses(settings, courses)
    indexed = await waiting
    print(f"indexed {indexed} courses in {time.monotonic() - started:.1f}s", flush=True)

    events = list(sample_events(max_events))
    latencies: list[float] = []
    printed = 0

    def on_recommendation(raw: bytes) -> None:
        nonlocal printed
        rec = Recommendation.model_validate_json(raw)
        latencies.append((rec.generated_at - rec.trigger.ingested_at).total_seconds() * 1000)
        if printed < show:
            print(rec.model_dump_json(indent=2), flush=True)
        elif printed % max(1, len(events) // 20) == 0:
            print(_line(rec, titles), flush=True)
        printed += 1

    print(f"replaying {len(events)} real learner events ...", flush=True)
    started = time.monotonic()
    waiting = asyncio.create_task(_wait_for(settings, settings.topic_recommendations, len(events), on_recommendation))
    await replay_events(settings, events, rate=rate, progress=False)
    received = await waiting
    elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "courses_indexed": indexed,
        "events_replayed": len(events),
        "recommendations": received,
        "events_per_s": round(received / elapsed, 1),
        "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else float("nan"),
        "latency_p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 1) if latencies else float("nan"),
    }


def run_demo(max_events: int | None = 2000, show: int = 5, rate: float | None = None) -> int:
    """Run the demo; returns the process exit code."""
    with tempfile.TemporaryDirectory(prefix="coursestream-demo-") as tmp, embedded_services() as (broker, encoder_url):
        print(f"broker (tansu) on {broker.bootstrap_servers}; state under {tmp}", flush=True)
        print(f"encoder service on {encoder_url}", flush=True)
        env = embedded_env(broker.bootstrap_servers, encoder_url, Path(tmp))
        settings = settings_from(env)
        ensure_topics(settings)
        worker = WorkerProcess(env, Path(tmp) / "worker.log").start()
        try:
            figures = asyncio.run(_demo(settings, max_events, show, rate))
        except KeyboardInterrupt:
            print("interrupted: stopping", flush=True)
            return 130
        finally:
            code = worker.stop()
            if code not in (0, -signal.SIGTERM):
                print(f"worker exited with {code}; its log:\n{worker.log()[-5000:]}")
        print("summary: " + ", ".join(f"{key}={value}" for key, value in figures.items()), flush=True)
        return 0 if figures["recommendations"] >= figures["events_replayed"] else 1
