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
from streams.embedded_broker import EmbeddedBroker, free_port, terminate
from streams.replay import publish_courses, replay_events
from streams.settings import Settings
from streams.topics import ensure_topics

SAMPLE = Path(__file__).parent / "sample" / "oulad"


def embedded_env(bootstrap_servers: str, encoder_url: str, data_dir: Path, app_id: str = "coursestream-demo",
                 partitions: int = 2) -> dict[str, str]:
    """Settings (as environment variables) of a worker on the embedded broker, isolated by app id.

    Each call picks a free port for the worker's HTTP API, so several workers can share a machine.
    """
    env = {
        "COURSESTREAM_WEB_PORT": str(free_port()),
        "COURSESTREAM_APP_ID": app_id,
        "COURSESTREAM_KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "COURSESTREAM_KAFKA_EMBEDDED": "1",
        # Tansu: joining a group takes about half the session timeout.
        "COURSESTREAM_KAFKA_SESSION_TIMEOUT_S": "6",
        "COURSESTREAM_KAFKA_HEARTBEAT_INTERVAL_S": "2",
        "COURSESTREAM_DATA_DIR": str(data_dir),
        "COURSESTREAM_PARTITIONS": str(partitions),
        "COURSESTREAM_ENCODER_URL": encoder_url,
    }
    for topic in ("learner_events", "course_content", "recommendations", "dead_letter", "course_indexed",
                  "content_retry", "course_vectors"):
        env[f"COURSESTREAM_TOPIC_{topic.upper()}"] = f"{app_id}.{topic.replace('_', '-')}"
    return env


@contextlib.contextmanager
def embedded_services() -> Iterator[tuple[EmbeddedBroker, str]]:
    """A Tansu broker and the encoder service (in this process, CPU, models loaded): the broker and
    the encoder's URL. Both stop on exit."""
    from encoders.service import serve_in_background
    from encoders.settings import EncoderSettings

    with EmbeddedBroker() as broker:
        encoder = serve_in_background(EncoderSettings(), port=0)
        try:
            encoder.wait_ready()
            yield broker, encoder.url
        finally:
            encoder.stop()


def settings_from(env: Mapping[str, str]) -> Settings:
    """The settings a process started with ``env`` would read (ignoring this process's own).

    List settings are JSON in the environment, as pydantic-settings reads them there.
    """
    values: dict[str, object] = {}
    for key, value in env.items():
        name = key.removeprefix("COURSESTREAM_").lower()
        field = Settings.model_fields.get(name)
        values[name] = json.loads(value) if field is not None and get_origin(field.annotation) is list else value
    return Settings(**values)


class WorkerProcess:
    """``coursestream worker`` (or another Faust worker's ``python -m`` arguments) as a child process
    with ``env`` settings, its output in a log file."""

    def __init__(self, env: Mapping[str, str], log_path: Path,
                 arguments: Sequence[str] = ("streams", "worker", "--loglevel", "warning")) -> None:
        self.env = {**os.environ, **env, "TOKENIZERS_PARALLELISM": "false"}
        self.log_path = log_path
        self.arguments = arguments
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", *self.arguments],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to flush or commit anything."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL after 30 s); returns the exit code."""
        return None if self.process is None else terminate(self.process, timeout_s=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


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
