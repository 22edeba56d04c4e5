"""``coursestream bench pipeline``: the stream worker against a bare Kafka pass-through, on one machine.

Everything runs on the embedded broker (Tansu) with the encoder service in this process, as in
``coursestream demo``; the learner events are real (OULAD module AAA and EdNet-KT4 from
``../shared/data``, interleaved by time since each log's start) and so is the catalogue (OULAD
AAA's resources and assessments, EdNet's TOEIC parts, embedded by the encoder service), with every
modality on: each course also shows an image and a video of real photographs (scikit-image's,
see :func:`with_media`), so learners' profiles hold image and video interests besides the text
one. One run measures:

- **ceiling**: a bare aiokafka consume-then-produce process passing the same events from a
  learner-events topic to a recommendations topic (same partitions, same broker, same fetch
  wait as the worker);
- **Faust floor**: the same through ``streams.tools.floor``, the worker with the recommender taken
  out (same Faust set-up and batches, a table row and a send for each event): what Faust itself
  costs here, so the gap to the ceiling splits into Faust's share and the recommender's;
- **worker**: the same events through one worker, as fast as the producer sends them: events/s
  answered, with a recommendation published for every one (or, with ``coalesce_bursts``, for
  each learner's last event of a batch segment, naming the earlier ones it answers: then
  ``events_per_list``), ``ratio_to_passthrough`` and ``ratio_to_faust_floor``;
- **freshness**: event-to-recommendation latency (the event's produce time, which the worker
  copies into ``trigger.ingested_at``, to the recommendation's arrival at a consumer) at
  saturation and at fixed offered loads from a paced producer, and the two baselines' latency
  (produce to arrival of the passed-on event) at the same loads;
- **vector search**: for each phase of a worker, the time its vector store spent searching
  (``coursestream_vector_store_seconds{operation="search"}`` read from its ``/metrics``, the
  engine's own time on the store thread, during which the embedded engine holds the GIL), per
  list and per search call, so the search's cost shows at each catalogue size;
- **cost growth**: latency at one offered load with catalogues of growing size (real course
  vectors plus noisy copies, each copy's payload labelled ``synthetic_copy_of``) and with
  growing numbers of learners (copies of real learners with remapped ids, ``~L<copy>``), bytes
  per learner profile (and how many hold each media interest) and the worker's resident memory.

Every measured event must come out as exactly one recommendation naming it as its trigger (or
among its ``coalesced`` triggers); ``checks`` counts what did not. A coalesced event's latency
runs to the list that answers it.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import json
import math
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from online.catalogue import MODALITIES
from online.events import ClickEvent, CourseContent, MediaRef, QuizEvent, VideoEvent, VideoRef
from online.profile import LearnerProfile
from online.sources import InvalidRow, ednet_catalogue, oulad_catalogue, read_ednet_kt4, read_oulad
from streams.encoder_client import EncoderClient
from streams.replay import replay_events
from streams.settings import Settings
from streams.tools.embedded_broker import FETCH_MAX_WAIT_MS, true_end_offsets
from streams.tools.photos import PHOTOS, crops, jpeg, mp4
from streams.tools.processes import WorkerProcess, embedded_env, embedded_services, settings_from
from streams.topics import ensure_topics
from streams.vectorstore import MEDIA_VECTORS, CoursePoint, EdgeVectorStore, course_point

LearnerEvent = ClickEvent | VideoEvent | QuizEvent

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
#: The OULAD presentations replayed (the ones meant for tuning and benchmarks).
OULAD_PRESENTATIONS = [("AAA", "2013J"), ("AAA", "2014J")]
#: Length of the noise added to a copied course vector (unit length), spread evenly over its
#: components whatever its size: a copy's cosine to its original is about 0.9.
COPY_NOISE = 0.5
#: Keyframes of each course's video.
VIDEO_KEYFRAMES = 2
#: Learner events sent (and answered) before anything is measured.
WARM_UP_EVENTS = 200
#: What :meth:`Phase.check` counts.
PROBLEMS = ("missing", "duplicate", "wrong_trigger", "unexpected")


_START = time.monotonic()


def progress(message: str) -> None:
    """A line on stderr: where the run is (stdout is for the figures)."""
    print(f"[{time.monotonic() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)


def real_events(data: Path, limit: int) -> list[LearnerEvent]:
    """The first ``limit`` events of OULAD AAA and EdNet-KT4 together, each log's time counted from its start."""

    def timed(results: Iterable[Any]) -> Iterator[tuple[float, LearnerEvent]]:
        start = None
        for result in results:
            if isinstance(result, InvalidRow):
                continue
            start = result.event_time.timestamp() if start is None else start
            yield result.event_time.timestamp() - start, result

    logs = [
        timed(read_oulad(data / "oulad", presentations=OULAD_PRESENTATIONS)),
        timed(read_ednet_kt4(data / "ednet" / "KT4")),
    ]
    merged = heapq.merge(*logs, key=lambda pair: pair[0])
    return [event for _, event in (next(merged) for _ in range(limit))]


def real_catalogue(data: Path) -> list[CourseContent]:
    """OULAD AAA's and EdNet's courses, with media (:func:`with_media`)."""
    return with_media([*oulad_catalogue(data / "oulad", presentations=OULAD_PRESENTATIONS),
                       *ednet_catalogue(data / "ednet" / "contents")])


def with_media(courses: Sequence[CourseContent], seed: int = 0) -> list[CourseContent]:
    """The courses, each with an image and a video: a view of one of :data:`PHOTOS` (in turn, course
    by course) and a video of other views of it. A photograph's media are made once and shared by
    its courses; the encoder service still embeds them course by course, as it would in production."""
    rng = np.random.default_rng(seed)
    media = []
    for name in PHOTOS:
        image, *keyframes = crops(name, 1 + VIDEO_KEYFRAMES, rng)
        media.append({"images": [MediaRef(data=base64.b64encode(jpeg(image)).decode())],
                      "video": VideoRef(data=base64.b64encode(mp4(keyframes)).decode())})
    return [course.model_copy(update=media[n % len(media)]) for n, course in enumerate(courses)]


async def embed(encoder_url: str, courses: Sequence[CourseContent], batch: int = 32) -> list[CoursePoint]:
    """The courses as the worker would index them, embedded by the encoder service."""
    client = EncoderClient(encoder_url, timeout_s=300)
    points = []
    try:
        for start in range(0, len(courses), batch):
            chunk = courses[start : start + batch]
            result = await client.embed(chunk)
            points += [course_point(c, e.vectors, result.model_version, None) for c, e in zip(chunk, result.embeddings)]
    finally:
        await client.aclose()
    return points


def scaled_catalogue(real: Sequence[CoursePoint], size: int, using: str, seed: int = 0) -> list[CoursePoint]:
    """The real courses, then noisy copies of them up to ``size`` (labelled ``synthetic_copy_of``).

    Copies carry the vectors the worker reads: the ranking vector (``using``) and the media ones
    (:data:`~streams.vectorstore.MEDIA_VECTORS`) their original has, each with noise of its own."""
    rng = np.random.default_rng(seed)
    points = list(real[:size])
    for n in range(size - len(points)):
        original = real[n % len(real)]
        vectors = {}
        for name in (using, *MEDIA_VECTORS.values()):
            if name in original.vectors:
                vector = original.vectors[name]
                vector = vector + rng.normal(0.0, COPY_NOISE / math.sqrt(len(vector)), vector.shape)
                vectors[name] = (vector / np.linalg.norm(vector)).astype(np.float32)
        course_id = f"{original.course_id}~copy{n}"
        payload = {**original.payload, "course_id": course_id, "synthetic_copy_of": original.course_id}
        points.append(CoursePoint(course_id, vectors, payload))
    return points


def modalities(points: Sequence[CoursePoint], using: str) -> list[str]:
    """The modalities every course of the catalogue has: text (the ranking vector ``using``) and
    each media modality (:data:`~online.catalogue.MODALITIES`)."""
    names = {"text": using} | {m: MEDIA_VECTORS[m] for m in MODALITIES}
    return [modality for modality, name in names.items() if all(name in point.vectors for point in points)]


def build_store(path: Path, points: Sequence[CoursePoint], batch: int = 2000) -> float:
    """Write the worker's embedded vector store before it starts; returns the seconds taken."""
    started = time.monotonic()
    store = EdgeVectorStore(path)
    store.ensure_collection({name: len(vector) for point in points for name, vector in point.vectors.items()})
    for start in range(0, len(points), batch):
        store.upsert(points[start : start + batch])
    store.optimize()
    store.close()
    return time.monotonic() - started


def learner_copy(event: LearnerEvent, copy: int, occurrence: str = "") -> LearnerEvent:
    """The event as copy ``copy`` of its learner made it (``occurrence`` tells repeats apart): ids remapped."""
    return event.model_copy(update={"user_id": f"{event.user_id}~L{copy}",
                                    "event_id": f"{event.event_id}~L{copy}{occurrence}"})


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def latency_figures(latencies_ms: Sequence[float]) -> dict[str, float]:
    if not latencies_ms:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    return {"p50_ms": round(statistics.median(latencies_ms), 1), "p99_ms": round(percentile(latencies_ms, 99), 1),
            "max_ms": round(max(latencies_ms), 1)}


class Collector:
    """Reads a topic from its start for the whole run, noting when each event's answer arrived."""

    def __init__(self, settings: Settings, topic: str, answers: Callable[[int, bytes], list[Answer]]) -> None:
        self.settings, self.topic, self.parse = settings, topic, answers
        #: (arrival time, the answer) for each event a record answers
        self.answers: list[tuple[float, Answer]] = []
        self.records = 0
        self._task: asyncio.Task | None = None
        self._arrived = asyncio.Event()

    async def start(self) -> Collector:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers, enable_auto_commit=False,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS, **self.settings.kafka_client_options(),
        )
        await consumer.start()
        partitions = [TopicPartition(self.topic, p) for p in range(self.settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._run(consumer))
        return self

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=100, max_records=10_000)
                arrived = time.time()
                for batch in batches.values():
                    self.records += len(batch)
                    for message in batch:
                        self.answers.extend((arrived, answer) for answer in self.parse(message.timestamp, message.value))
                self._arrived.set()
        finally:
            await consumer.stop()

    async def until(self, count: int, timeout_s: float) -> bool:
        """Wait until ``count`` answers arrived in all; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while len(self.answers) < count:
            if time.monotonic() > deadline or (self._task is not None and self._task.done()):
                return False
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), 1.0)
            except TimeoutError:
                pass
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class Answer:
    """What came out for an event: which event it answers, for whom, and when that event was produced."""

    event_id: str
    user_id: str
    kind: str
    produced_at: float

    @classmethod
    def of_recommendation(cls, timestamp_ms: int, raw: bytes) -> list[Answer]:
        """A list answers its trigger and the events coalesced into it."""
        recommendation = json.loads(raw)
        return [
            cls(trigger["event_id"], recommendation["user_id"], trigger["kind"],
                datetime.fromisoformat(trigger["ingested_at"]).timestamp())
            for trigger in [*recommendation.get("coalesced", ()), recommendation["trigger"]]
        ]

    @classmethod
    def of_passed_event(cls, timestamp_ms: int, raw: bytes) -> list[Answer]:
        """The pass-through's output is the event itself, with the input's timestamp."""
        event = json.loads(raw)
        return [cls(event["event_id"], event["user_id"], event["kind"], timestamp_ms / 1000)]


@dataclass
class Phase:
    """Events sent in one go and what came back for them."""

    events: list[LearnerEvent]
    rate: float | None
    sent_at: float = 0.0
    send_s: float = 0.0
    cpu_s: float | None = None
    answers: list[tuple[float, Answer]] = field(default_factory=list)
    lists: int = 0
    #: the worker's timings during the phase (None: not a worker)
    times: WorkerTimes | None = None

    def check(self) -> Counter:
        """Missing, duplicate and wrongly attributed recommendations of this phase's events."""
        by_trigger: dict[str, list[Answer]] = {}
        for _, answer in self.answers:
            by_trigger.setdefault(answer.event_id, []).append(answer)
        problems: Counter = Counter()
        for event in self.events:
            recs = by_trigger.pop(event.event_id, [])
            problems["missing"] += not recs
            problems["duplicate"] += max(0, len(recs) - 1)
            problems["wrong_trigger"] += sum(a.user_id != event.user_id or a.kind != event.kind for a in recs)
        problems["unexpected"] += sum(map(len, by_trigger.values()))
        return problems

    def figures(self) -> dict[str, Any]:
        latencies = [(arrived - answer.produced_at) * 1000 for arrived, answer in self.answers]
        last = max((arrived for arrived, _ in self.answers), default=self.sent_at)
        return {
            "events": len(self.events),
            "offered_per_s": self.rate or "max",
            "sent_per_s": round(len(self.events) / self.send_s, 1) if self.send_s else None,
            "events_per_s": round(len(self.answers) / max(last - self.sent_at, 1e-9), 1),
            "events_per_list": round(len(self.answers) / self.lists, 2) if self.lists else None,
            "cpu_ms_per_event": round(1000 * self.cpu_s / len(self.events), 3) if self.cpu_s is not None else None,
            **latency_figures(latencies),
            **self.worker_figures(),
        }

    def worker_figures(self) -> dict[str, Any]:
        """Milliseconds of vector search per list and per search call, and of each step of the
        learner path per event (none for a baseline)."""
        if self.times is None or not self.lists:
            return {}
        times = self.times
        return {"vector_search_ms_per_list": round(1000 * times.search_s / self.lists, 3),
                "vector_search_ms_per_call": round(1000 * times.search_s / times.searches, 3) if times.searches else 0.0,
                "step_ms_per_event": {step: round(1000 * seconds / len(self.events), 3)
                                      for step, seconds in times.steps.items()}}


@dataclass(frozen=True)
class WorkerTimes:
    """A worker's timings so far, from its ``/metrics``: vector search seconds and calls, and
    seconds in each step of the learner path."""

    search_s: float
    searches: float
    steps: dict[str, float]

    def __sub__(self, before: WorkerTimes) -> WorkerTimes:
        return WorkerTimes(self.search_s - before.search_s, self.searches - before.searches,
                           {step: s - before.steps.get(step, 0.0) for step, s in self.steps.items()})


async def worker_times(metrics_url: str) -> WorkerTimes:
    """A worker's :class:`WorkerTimes` now, from its Prometheus text."""
    async with httpx.AsyncClient() as client:
        response = await client.get(metrics_url, timeout=10.0)
    response.raise_for_status()
    search = {"_sum": 0.0, "_count": 0.0}
    steps: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            suffix = sample.name.removeprefix(family.name)
            if family.name == "coursestream_vector_store_seconds":
                if sample.labels.get("operation") == "search" and suffix in search:
                    search[suffix] += sample.value
            elif family.name == "coursestream_learner_step_seconds" and suffix == "_sum":
                steps[sample.labels["step"]] = sample.value
    return WorkerTimes(search["_sum"], search["_count"], steps)


class Pipeline:
    """A topic pair on the broker with whatever processes its events (a worker or the pass-through)."""

    def __init__(self, settings: Settings, pid: int,
                 answers: Callable[[int, bytes], list[Answer]] = Answer.of_recommendation) -> None:
        self.settings, self.pid = settings, pid
        self.metrics_url: str | None = None  # a worker's, once it serves them: its phases report its timings
        self.collector = Collector(settings, settings.topic_recommendations, answers)
        self.phases: list[Phase] = []

    async def send(self, events: list[LearnerEvent], rate: float | None = None, timeout_s: float = 600.0) -> Phase:
        """Send the events (paced at ``rate``, else as fast as possible) and wait for their answers."""
        phase = Phase(events, rate)
        expected = len(self.collector.answers) + len(events)
        records_before = self.collector.records
        times_before = await worker_times(self.metrics_url) if self.metrics_url else None
        cpu_before = cpu_seconds(self.pid)
        phase.sent_at = time.time()
        started = time.monotonic()
        await replay_events(self.settings, events, rate=rate, progress=False)
        phase.send_s = time.monotonic() - started
        await self.collector.until(expected, timeout_s)  # on timeout, the check counts what is missing
        phase.cpu_s = cpu_seconds(self.pid) - cpu_before
        if times_before is not None:
            phase.times = await worker_times(self.metrics_url) - times_before
        phase.answers = self.collector.answers[expected - len(events):]
        phase.lists = self.collector.records - records_before
        self.phases.append(phase)
        return phase


def _passthrough(bootstrap_servers: str, source: str, destination: str, partitions: int) -> None:
    """The ceiling: consume, then produce each record unchanged (a process of its own)."""

    async def run() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                                    fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=0)
        await consumer.start()
        await producer.start()
        assigned = [TopicPartition(source, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        while True:
            for tp, batch in (await consumer.getmany(timeout_ms=100)).items():
                for message in batch:
                    await producer.send(destination, message.value, key=message.key, partition=tp.partition,
                                        timestamp_ms=message.timestamp)

    asyncio.run(run())


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far (Linux): unlike wall time,
    it does not grow when other processes share the cores."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> dict[str, float]:
    """Resident and peak resident memory of a process, MB (Linux)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {name: round(int(fields[key].split()[0]) / 1024, 1) for name, key in (("rss_mb", "VmRSS"), ("peak_rss_mb", "VmHWM"))}


async def profile_bytes(settings: Settings) -> dict[str, Any]:
    """Size of each learner's latest profile row, from the profiles table's changelog, and how many
    of those profiles hold an interest in each media modality."""
    topic = f"{settings.app_id}-profiles-changelog"
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False,
                                fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    await consumer.start()
    latest: dict[bytes, tuple[int, tuple[str, ...]]] = {}  # learner -> bytes, media interests
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await true_end_offsets(settings.kafka_bootstrap_servers, await consumer.end_offsets(partitions))
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for batch in (await consumer.getmany(timeout_ms=200, max_records=10_000)).values():
                for message in batch:
                    if message.value is None:  # a forgotten learner's tombstone
                        latest.pop(message.key, None)
                    else:
                        media = tuple(LearnerProfile.from_bytes(message.value).media)
                        latest[message.key] = len(message.value), media
    finally:
        await consumer.stop()
    sizes = [size for size, _ in latest.values()]
    return {"learners": len(sizes), "mean_bytes": round(statistics.fmean(sizes), 1) if sizes else 0,
            "max_bytes": max(sizes, default=0),
            "media_interests": {m: sum(m in media for _, media in latest.values()) for m in MODALITIES}}


@dataclass
class Setup:
    """What every worker of a run shares."""

    bootstrap_servers: str
    encoder_url: str
    workdir: Path
    partitions: int
    real_points: list[CoursePoint]
    coalesce_bursts: bool = False


def _worker_env(setup: Setup, name: str) -> dict[str, str]:
    env = embedded_env(setup.bootstrap_servers, setup.encoder_url, setup.workdir / name / "state",
                       app_id=f"bench-{name}", partitions=setup.partitions)
    return env | {"COURSESTREAM_COALESCE_BURSTS": str(setup.coalesce_bursts).lower()}


async def _worker_pipeline(setup: Setup, name: str, catalogue_size: int, warm_up: list[LearnerEvent]
                           ) -> tuple[Pipeline, WorkerProcess, dict[str, Any]]:
    """A worker over a catalogue of ``catalogue_size`` courses, started and answering."""
    env = _worker_env(setup, name)
    settings = settings_from(env)
    ensure_topics(settings)
    points = scaled_catalogue(setup.real_points, catalogue_size, settings.ranking_vector)
    build_s = build_store(settings.data_dir / "qdrant-edge", points)
    (setup.workdir / name).mkdir(parents=True, exist_ok=True)
    worker = WorkerProcess(env, setup.workdir / name / "worker.log").start()
    pipeline = Pipeline(settings, worker.process.pid)
    await pipeline.collector.start()
    started = time.monotonic()
    await pipeline.send(warm_up, timeout_s=300)
    pipeline.metrics_url = f"http://127.0.0.1:{settings.web_port}/metrics"  # it serves them now
    catalogue = {"courses": len(points), "real": min(len(points), len(setup.real_points)),
                 "synthetic_copies": max(0, len(points) - len(setup.real_points)),
                 "modalities": modalities(points, settings.ranking_vector),
                 "store_build_s": round(build_s, 1), "worker_ready_s": round(time.monotonic() - started, 1)}
    return pipeline, worker, catalogue


async def _baseline(settings: Settings, pid: int, warm_up: list[LearnerEvent], events: list[LearnerEvent],
                    paced: Sequence[tuple[float, list[LearnerEvent]]]) -> dict[str, Any]:
    """What a process passing each event on (``pid``, between ``settings``' topics) sustains, and
    its latency at the offered loads."""
    pipeline = Pipeline(settings, pid, Answer.of_passed_event)
    await pipeline.collector.start()
    try:
        await pipeline.send(warm_up, timeout_s=300)
        saturated = await pipeline.send(events, timeout_s=300)
        freshness = {f"{rate:g}/s": (await pipeline.send(batch, rate=rate, timeout_s=300)).figures()
                     for rate, batch in paced}
    finally:
        await pipeline.collector.stop()
    figures = saturated.figures()
    checks: Counter = Counter()
    for phase in pipeline.phases:
        checks.update(phase.check())
    return {key: figures[key] for key in ("events", "sent_per_s", "events_per_s", "cpu_ms_per_event", "p50_ms", "p99_ms")
            } | {"freshness": freshness, "checks": {k: checks.get(k, 0) for k in PROBLEMS}}


async def _ceiling(setup: Setup, warm_up: list[LearnerEvent], events: list[LearnerEvent],
                   paced: Sequence[tuple[float, list[LearnerEvent]]]) -> dict[str, Any]:
    settings = settings_from(_worker_env(setup, "passthrough"))
    ensure_topics(settings)
    process = multiprocessing.get_context("spawn").Process(
        target=_passthrough, daemon=True,
        args=(settings.kafka_bootstrap_servers, settings.topic_learner_events, settings.topic_recommendations,
              settings.partitions),
    )
    process.start()
    try:
        return await _baseline(settings, process.pid, warm_up, events, paced)
    finally:
        process.terminate()
        process.join(10)


async def _faust_floor(setup: Setup, warm_up: list[LearnerEvent], events: list[LearnerEvent],
                       paced: Sequence[tuple[float, list[LearnerEvent]]]) -> dict[str, Any]:
    env = _worker_env(setup, "floor")
    settings = settings_from(env)
    ensure_topics(settings)
    (setup.workdir / "floor").mkdir(parents=True, exist_ok=True)
    floor = WorkerProcess(env, setup.workdir / "floor" / "worker.log", ("streams.tools.floor",)).start()
    try:
        return await _baseline(settings, floor.process.pid, warm_up, events, paced)
    finally:
        floor.stop()


def _learner_scale_events(base: Sequence[LearnerEvent], learners: int, already: int, measure: int, seed: int
                          ) -> tuple[list[LearnerEvent], list[LearnerEvent]]:
    """Events that bring the worker's learners from ``already`` to ``learners`` (each new copy's
    first event), then ``measure`` later events of learners picked at random among them."""
    by_learner: dict[str, list[LearnerEvent]] = {}
    for event in base:
        by_learner.setdefault(event.user_id, []).append(event)
    real = sorted(by_learner)
    new = [learner_copy(by_learner[real[n % len(real)]][0], n // len(real)) for n in range(already, learners)]
    rng = random.Random(seed)
    later = []
    for m in range(measure):
        n = rng.randrange(learners)
        history = by_learner[real[n % len(real)]]
        later.append(learner_copy(history[m % len(history)], n // len(real), f"~m{learners}.{m}"))
    return new, later


def run_pipeline_benchmark(
    events: int = 20_000,
    catalogue_sizes: Sequence[int] = (1_000, 10_000, 100_000),
    learner_counts: Sequence[int] = (10_000, 100_000),
    loads: Sequence[float] = (200.0, 1_000.0),
    load_seconds: float = 10.0,
    scale_load: float = 200.0,
    partitions: int = 2,
    coalesce_bursts: bool = False,
    data: Path = SHARED_DATA,
) -> dict[str, Any]:
    """One run of the whole benchmark (see the module docstring); a JSON-able dict."""
    return asyncio.run(_run(events, catalogue_sizes, learner_counts, loads, load_seconds, scale_load, partitions,
                            coalesce_bursts, data))


async def _run(n_events: int, catalogue_sizes: Sequence[int], learner_counts: Sequence[int], loads: Sequence[float],
               load_seconds: float, scale_load: float, partitions: int, coalesce_bursts: bool, data: Path
               ) -> dict[str, Any]:
    per_load = [int(rate * load_seconds) for rate in loads]
    scale_events = int(scale_load * load_seconds)
    progress("reading the real learner events")
    base = real_events(data, WARM_UP_EVENTS + n_events + sum(per_load) + scale_events)
    warm_up, rest = base[:WARM_UP_EVENTS], base[WARM_UP_EVENTS:]
    saturating, rest = rest[:n_events], rest[n_events:]
    paced = []
    for count in per_load:
        paced.append(rest[:count])
        rest = rest[count:]
    result: dict[str, Any] = {"machine": _machine()}
    with tempfile.TemporaryDirectory(prefix="coursestream-bench-") as tmp, embedded_services() as (broker, encoder_url):
        catalogue = real_catalogue(data)
        progress(f"embedding the real catalogue ({len(catalogue)} courses)")
        real_points = await embed(encoder_url, catalogue)
        setup = Setup(broker.bootstrap_servers, encoder_url, Path(tmp), partitions, real_points, coalesce_bursts)
        result["data"] = {"events": "OULAD AAA 2013J+2014J and EdNet-KT4 (real), interleaved by time since each "
                          "log's start", "catalogue": f"{len(real_points)} real courses (OULAD AAA, EdNet TOEIC parts)"
                          " with an image and a video of scikit-image's photographs each,"
                          " embedded by the encoder service; larger catalogues add noisy copies (synthetic_copy_of)"}
        progress("pass-through (ceiling)")
        result["ceiling"] = await _ceiling(setup, warm_up, saturating, list(zip(loads, paced)))
        progress(f"ceiling: {result['ceiling']['events_per_s']} events/s; the Faust floor")
        result["faust_floor"] = floor = await _faust_floor(setup, warm_up, saturating, list(zip(loads, paced)))
        floor["ratio_to_passthrough"] = round(floor["events_per_s"] / result["ceiling"]["events_per_s"], 3)
        progress(f"Faust floor: {floor['events_per_s']} events/s; starting the worker over {catalogue_sizes[0]:,} courses")
        checks: Counter = Counter()
        first, *others = catalogue_sizes
        pipeline, worker, built = await _worker_pipeline(setup, f"c{first}", first, warm_up)
        try:
            progress(f"worker: {len(saturating):,} events as fast as they go")
            saturated = await pipeline.send(saturating)
            result["worker"] = {**saturated.figures(), "coalesce_bursts": coalesce_bursts, "catalogue": built}
            result["worker"]["ratio_to_passthrough"] = round(
                result["worker"]["events_per_s"] / result["ceiling"]["events_per_s"], 3)
            # the same ratio in CPU time per event: what it would be on cores of its own
            result["worker"]["cpu_ratio_to_passthrough"] = round(
                result["ceiling"]["cpu_ms_per_event"] / result["worker"]["cpu_ms_per_event"], 3)
            result["worker"]["ratio_to_faust_floor"] = round(result["worker"]["events_per_s"] / floor["events_per_s"], 3)
            result["freshness"] = {"saturation": saturated.figures()}
            for rate, events in zip(loads, paced):
                progress(f"worker: {len(events):,} events at {rate:g}/s")
                result["freshness"][f"{rate:g}/s"] = (await pipeline.send(events, rate=rate)).figures()
            scale = {f"{first}": result["freshness"].get(f"{scale_load:g}/s")}
            learners_seen = 0
            by_learners = {}
            for count in learner_counts:
                new, later = _learner_scale_events(base, count, learners_seen, scale_events, seed=count)
                progress(f"worker: {len(new):,} events of new learners (to {count:,}), then {len(later):,} at {scale_load:g}/s")
                await pipeline.send(new)
                learners_seen = max(learners_seen, count)
                by_learners[str(count)] = (await pipeline.send(later, rate=scale_load)).figures()
            result["worker"].update(rss_mb(worker.process.pid))
            # measured with every modality the catalogue has on: its courses' text, images and video
            result["profiles"] = {**await profile_bytes(pipeline.settings), "catalogue_modalities": built["modalities"]}
            for phase in pipeline.phases:
                checks.update(phase.check())
            checked = sum(len(phase.events) for phase in pipeline.phases)
        finally:
            await pipeline.collector.stop()
            worker.stop()
        by_catalogue = {str(first): {**(scale[str(first)] or {}), **built}}
        for size in others:
            progress(f"worker over {size:,} courses")
            pipeline, worker, built = await _worker_pipeline(setup, f"c{size}", size, warm_up)
            try:
                phase = await pipeline.send(saturating[:scale_events], rate=scale_load)
                by_catalogue[str(size)] = {**phase.figures(), **built, **rss_mb(worker.process.pid)}
                for phase in pipeline.phases:
                    checks.update(phase.check())
                checked += sum(len(phase.events) for phase in pipeline.phases)
            finally:
                await pipeline.collector.stop()
                worker.stop()
        result["cost_growth"] = {"offered_per_s": scale_load, "by_catalogue_size": by_catalogue,
                                 "by_learners": by_learners}
        result["checks"] = {"events": checked,
                            **{k: checks.get(k, 0) for k in PROBLEMS}}
    return result


def _machine() -> dict[str, Any]:
    import os
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "broker": "embedded (Tansu)"}


def table(result: dict[str, Any]) -> str:
    """A short human summary of :func:`run_pipeline_benchmark`'s figures."""
    rows = [("pass-through (ceiling)", f"{result['ceiling']['events_per_s']:,.0f} events/s", "")]
    floor, worker = result["faust_floor"], result["worker"]
    rows.append(("Faust floor, saturated", f"{floor['events_per_s']:,.0f} events/s",
                 f"{floor['ratio_to_passthrough']:.1%} of ceiling; p50/p99 {floor['p50_ms']}/{floor['p99_ms']} ms"))
    rows.append(("worker, saturated", f"{worker['events_per_s']:,.0f} events/s",
                 (f"{worker['ratio_to_passthrough']:.1%} of ceiling, {worker['ratio_to_faust_floor']:.1%} of floor; "
                  f"p50/p99 {worker['p50_ms']}/{worker['p99_ms']} ms; {worker['events_per_list']} events per list")))
    steps = worker.get("step_ms_per_event") or {}
    rows.append(("worker, saturated: ms an event by step", f"{sum(steps.values()):.3f} ms",
                 ", ".join(f"{step} {ms:.3f}" for step, ms in steps.items())))
    for name, figures in result["freshness"].items():
        if name != "saturation":
            rows.append((f"latency at {name}", f"p50 {figures['p50_ms']} ms",
                         f"p99 {figures['p99_ms']} ms (floor {floor['freshness'][name]['p99_ms']} ms)"))
    growth = result["cost_growth"]
    for size, figures in growth["by_catalogue_size"].items():
        rows.append((f"{int(size):,} courses at {growth['offered_per_s']:g}/s", f"p50 {figures.get('p50_ms')} ms",
                     f"p99 {figures.get('p99_ms')} ms; vector search {figures.get('vector_search_ms_per_list')} ms"
                     f" a list, {figures.get('vector_search_ms_per_call')} ms a call"))
    for count, figures in growth["by_learners"].items():
        rows.append((f"{int(count):,} learners at {growth['offered_per_s']:g}/s", f"p50 {figures['p50_ms']} ms",
                     f"p99 {figures['p99_ms']} ms"))
    profiles = result["profiles"]
    interests = profiles["media_interests"]
    rows.append((f"profile bytes (mean/max), {'+'.join(profiles['catalogue_modalities'])} on",
                 f"{profiles['mean_bytes']:.0f}", f"{profiles['max_bytes']}; {'/'.join(interests)} interests in "
                 f"{'/'.join(f'{n:,}' for n in interests.values())} of {profiles['learners']:,} learners"))
    rows.append(("worker RSS (now/peak)", f"{worker['rss_mb']} MB", f"{worker['peak_rss_mb']} MB"))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b:>18}  {c}" for a, b, c in rows)
