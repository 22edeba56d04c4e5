"""Produce historical logs into the input topics: learner events keyed by user, in time order.

Pacing: as fast as possible (default), ``rate`` events per second, or ``speed`` times
real time (event-time gaps divided by ``speed``).

**Dry run.** :func:`validate` reads a whole log and sends nothing. Its :class:`ValidationReport`
counts events by kind, invalid rows by reason (with examples), learners and courses, and says
whether the events come in time order. A replay makes the same pass first, so that its progress
bar has a total and an ETA.

**Resuming.** A log's reader yields a deterministic stream: the same events, with the same ids,
in the same order, every time the same files are read. A :class:`Checkpoint` records how many
events of that stream, from the first, the broker acknowledged. It belongs to one source (path,
format, and the size and modification time of every file read) and one destination (bootstrap
servers, topic). It is written only after the send futures of the events it counts resolved:
every :data:`CHECKPOINT_EVENTS` events or :data:`CHECKPOINT_SECONDS` seconds, before a pause
longer than that, and when the replay ends, however it ends (the last event, a stop request, an
error), after waiting for the sends in flight. A replay given the checkpoint skips the events it
counts. So a replay stopped by Ctrl-C, SIGTERM or an error of its source resumes with nothing
sent twice. One killed outright (SIGKILL, a crash) sends again what it sent after its last
checkpoint, and one stopped by a send that failed for good sends again what it sent after that
one: with the same event ids (the README says what the worker and subscribers do with them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from online.events import ClickEvent, CourseContent, QuizEvent, VideoEvent
from online.sources import InvalidRow, ReadResult, open_log
from streams.settings import Settings

LearnerEventT = ClickEvent | VideoEvent | QuizEvent

#: A checkpoint is written once this many more events are acknowledged ...
CHECKPOINT_EVENTS = 1_000
#: ... or this many seconds after the last one, whichever comes first.
CHECKPOINT_SECONDS = 1.0
#: Invalid rows a report keeps as examples of each reason.
EXAMPLES_PER_REASON = 3

# A word with a digit in it: an id, a number, a row count.
_VARYING = re.compile(r"[\w#-]*\d[\w#-]*")


def producer(settings: Settings) -> AIOKafkaProducer:
    """A producer that keeps each key's order through retries (acks from all replicas)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        linger_ms=5,
        **settings.kafka_client_options(),
    )


# --- Validation -------------------------------------------------------------------------------


def reason_pattern(reason: str) -> str:
    """A reason with its ids and numbers replaced by ``*``: what invalid rows are grouped by.

    >>> reason_pattern("l85 has no TOEIC part in EdNet-Contents (part -1)")
    '* has no TOEIC part in EdNet-Contents (part *)'
    >>> reason_pattern("click.count: Input should be a valid integer")
    'click.count: Input should be a valid integer'
    """
    return _VARYING.sub("*", reason)


@dataclass(frozen=True)
class InvalidReason:
    """Invalid rows whose reasons differ only in ids and numbers."""

    pattern: str
    """The reason, ids and numbers replaced by ``*`` (:func:`reason_pattern`)."""
    rows: int
    examples: tuple[InvalidRow, ...]
    """The first rows of the source with this reason, as read (at most :data:`EXAMPLES_PER_REASON`)."""


@dataclass(frozen=True)
class ValidationReport:
    """What a whole log holds, read and validated, nothing sent (``coursestream replay --dry-run``)."""

    source: str
    format: str
    events: int
    by_kind: dict[str, int]
    invalid_rows: int
    invalid_reasons: tuple[InvalidReason, ...]
    """Most frequent first."""
    learners: int
    courses: int
    earliest: datetime | None
    """The earliest event time (None without events)."""
    latest: datetime | None
    out_of_order: int
    """Events earlier than the event before them: 0 when the log comes in time order."""

    @property
    def in_time_order(self) -> bool:
        return self.out_of_order == 0

    def to_json(self) -> str:
        """The report as a JSON document (times RFC 3339; examples with ``raw`` cut to 200 characters)."""
        document = {
            "source": self.source,
            "format": self.format,
            "events": self.events,
            "by_kind": self.by_kind,
            "learners": self.learners,
            "courses": self.courses,
            "earliest": self.earliest.isoformat() if self.earliest else None,
            "latest": self.latest.isoformat() if self.latest else None,
            "in_time_order": self.in_time_order,
            "out_of_order": self.out_of_order,
            "invalid_rows": self.invalid_rows,
            "invalid_reasons": [
                {
                    "reason": reason.pattern,
                    "rows": reason.rows,
                    "examples": [
                        {"source": row.source, "row": row.row, "reason": row.reason, "raw": row.raw[:200]}
                        for row in reason.examples
                    ],
                }
                for reason in self.invalid_reasons
            ],
        }
        return json.dumps(document, indent=2)

    def text(self) -> str:
        """The report for people, a few lines plus three lines an invalid reason."""
        kinds = ", ".join(f"{kind} {count:,}" for kind, count in sorted(self.by_kind.items()))
        if self.earliest is None or self.latest is None:
            times = "no events"
        else:
            order = (
                "in time order"
                if self.in_time_order
                else f"NOT in time order: {self.out_of_order:,} events earlier than the one before"
            )
            times = f"{self.earliest.isoformat()} to {self.latest.isoformat()}, {order}"
        lines = [
            f"{self.source} ({self.format})",
            f"  events        {self.events:,}" + (f" ({kinds})" if kinds else ""),
            f"  learners      {self.learners:,}",
            f"  courses       {self.courses:,}",
            f"  event times   {times}",
            f"  invalid rows  {self.invalid_rows:,}",
        ]
        for reason in self.invalid_reasons:
            lines.append(f"    {reason.rows:>9,}  {reason.pattern}")
            lines += [f"               {row.source} row {row.row}: {row.reason}" for row in reason.examples]
        return "\n".join(lines)


def validate(results: Iterable[ReadResult], source: str, format: str, *, progress: bool = False) -> ValidationReport:
    """Read every result of a log (e.g. ``open_log(source)``) into a :class:`ValidationReport`."""
    by_kind: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    examples: dict[str, list[InvalidRow]] = {}
    learners: set[str] = set()
    courses: set[str] = set()
    earliest: datetime | None = None
    latest: datetime | None = None
    previous: datetime | None = None
    out_of_order = 0
    for result in tqdm(results, desc="validating", unit=" rows", disable=not progress, smoothing=0.1):
        if isinstance(result, InvalidRow):
            pattern = reason_pattern(result.reason)
            reasons[pattern] += 1
            kept = examples.setdefault(pattern, [])
            if len(kept) < EXAMPLES_PER_REASON:
                kept.append(result)
            continue
        by_kind[result.kind] += 1
        learners.add(result.user_id)
        courses.add(result.course_id)
        moment = result.event_time
        if previous is not None and moment < previous:
            out_of_order += 1
        previous = moment
        earliest = moment if earliest is None else min(earliest, moment)
        latest = moment if latest is None else max(latest, moment)
    return ValidationReport(
        source=source,
        format=format,
        events=sum(by_kind.values()),
        by_kind=dict(sorted(by_kind.items())),
        invalid_rows=sum(reasons.values()),
        invalid_reasons=tuple(
            InvalidReason(pattern, rows, tuple(examples[pattern])) for pattern, rows in reasons.most_common()
        ),
        learners=len(learners),
        courses=len(courses),
        earliest=earliest,
        latest=latest,
        out_of_order=out_of_order,
    )


# --- Checkpoints ------------------------------------------------------------------------------


def _source_files(source: Path, format: str) -> list[Path]:
    """The files a reader of ``source`` reads: the file, or every file under the folder.

    EdNet-KT4 also reads the EdNet-Contents folder beside it.
    """
    if source.is_file():
        return [source]
    folders = [source, *([source.parent / "contents"] if format == "ednet-kt4" else [])]
    return sorted(path for folder in folders for path in folder.rglob("*") if path.is_file())


def replay_key(settings: Settings, source: Path, format: str) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the source (path, format, the size and
    modification time of every file read) and the destination (bootstrap servers, topic)."""
    source = source.resolve()
    stats = [(path, path.stat()) for path in _source_files(source, format)]
    return {
        "source": str(source),
        "format": format,
        "files": [[str(path), stat.st_size, stat.st_mtime_ns] for path, stat in stats],
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "topic": settings.topic_learner_events,
    }


def default_checkpoint_path(settings: Settings, key: dict[str, Any]) -> Path:
    """``COURSESTREAM_DATA_DIR/replay/{source name}-{hash}.json``, one file per source and destination.

    The hash leaves the files' sizes and times out, so a changed source finds its old
    checkpoint and is refused, rather than silently sent again from the start.
    """
    identity = {name: key[name] for name in ("source", "format", "bootstrap_servers", "topic")}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return settings.data_dir / "replay" / f"{Path(key['source']).name}-{digest}.json"


class CheckpointMismatch(ValueError):
    """A checkpoint file records another source, a changed source, or another destination."""


@dataclass
class Checkpoint:
    """How far the replay of one source to one topic got, in events of the source's ordered stream."""

    path: Path
    key: dict[str, Any]
    """What it belongs to (:func:`replay_key`)."""
    acknowledged: int = 0
    """Events, from the first, that the broker acknowledged."""
    total: int | None = None
    """Events in the stream, once known."""

    @classmethod
    def load(cls, path: Path, key: dict[str, Any]) -> Checkpoint:
        """The checkpoint saved at ``path`` (a fresh one if there is none).

        Raises :class:`CheckpointMismatch` if it was saved for another ``key``: resuming would
        skip events that were never sent.
        """
        if not path.exists():
            return cls(path, key)
        saved = json.loads(path.read_text())
        differing = [name for name in key if saved["key"].get(name) != key[name]]
        if differing:
            what = {
                "source": "another source",
                "format": "another format",
                "files": "the source as it was (its files changed since)",
                "bootstrap_servers": "other brokers",
                "topic": "another topic",
            }
            raise CheckpointMismatch(
                f"checkpoint {path} ({saved['acknowledged']:,} events sent) is for "
                + ", ".join(what.get(name, f"another {name}") for name in differing)
            )
        return cls(path, key, saved["acknowledged"], saved["total"])

    @property
    def complete(self) -> bool:
        """Whether every event of the stream was acknowledged."""
        return self.total is not None and self.acknowledged >= self.total

    def save(self) -> None:
        """Write the file atomically: a crash leaves the previous record or this one, never a mix."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "key": self.key,
            "acknowledged": self.acknowledged,
            "total": self.total,
            "saved_at": datetime.now(timezone.utc).isoformat(),
        }
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(document, indent=2))
        os.replace(temporary, self.path)


class _Acknowledgements:
    """The producer's send futures in send order, and the checkpoint they advance."""

    def __init__(self, checkpoint: Checkpoint | None) -> None:
        self.checkpoint = checkpoint
        self.start = checkpoint.acknowledged if checkpoint else 0
        self.count = 0
        """Futures resolved without error, from the first."""
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._saved_count = 0
        self._saved_at = time.monotonic()

    def add(self, future: asyncio.Future[Any]) -> None:
        """Track a send; count the resolved ones at the front, and save the checkpoint when due."""
        self._pending.append(future)
        while self._pending and self._pending[0].done():
            self._pending[0].result()  # raises a failed send's error, which stays first: nothing after it counts
            self._pending.popleft()
            self.count += 1
        events, seconds = self.count - self._saved_count, time.monotonic() - self._saved_at
        if events and (events >= CHECKPOINT_EVENTS or seconds >= CHECKPOINT_SECONDS):
            self.save()

    async def wait(self) -> None:
        """Wait for every send, in order (raising the first error), then save the checkpoint."""
        try:
            while self._pending:
                await self._pending[0]
                self._pending.popleft()
                self.count += 1
        finally:
            self.save()

    def save(self) -> None:
        if self.checkpoint is not None:
            self.checkpoint.acknowledged = self.start + self.count
            self.checkpoint.save()
        self._saved_count, self._saved_at = self.count, time.monotonic()


# --- Sending ----------------------------------------------------------------------------------


async def _pause(seconds: float, stop: asyncio.Event | None) -> None:
    """Sleep, waking early when ``stop`` is set."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def replay_events(
    settings: Settings,
    events: Iterable[LearnerEventT],
    *,
    rate: float | None = None,
    speed: float | None = None,
    total: int | None = None,
    progress: bool = True,
    checkpoint: Checkpoint | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Send events (already in event-time order) to the learner-events topic; returns how many it sent.

    With a ``checkpoint``, ``events`` is the source's whole ordered stream: the first
    ``checkpoint.acknowledged`` are skipped (an earlier replay sent them), and the checkpoint
    advances as the broker acknowledges sends (see the module docstring); when the events run
    out, ``checkpoint.total`` is set. Once ``stop`` is set, no further event is sent. However the
    replay ends, it waits for the sends in flight and saves the checkpoint before it returns or
    raises. ``total`` (the stream's length) gives the progress bar its ETA.
    """
    acknowledgements = _Acknowledgements(checkpoint)
    skip = acknowledgements.start
    sent = 0
    first_time: float | None = None
    kafka = producer(settings)
    await kafka.start()
    try:
        with tqdm(total=total, initial=skip, unit=" events", disable=not progress, smoothing=0.1) as bar:
            start = time.monotonic()
            try:
                for event in islice(events, skip, None):
                    if rate:
                        delay = sent / rate - (time.monotonic() - start)
                    elif speed:
                        event_time = event.event_time.timestamp()
                        first_time = event_time if first_time is None else first_time
                        delay = (event_time - first_time) / speed - (time.monotonic() - start)
                    else:
                        delay = 0.0
                    if delay > CHECKPOINT_SECONDS:  # record what was sent before a long pause
                        await acknowledgements.wait()
                    if delay > 0:
                        await _pause(delay, stop)
                    if stop is not None and stop.is_set():
                        break
                    acknowledgements.add(
                        await kafka.send(
                            settings.topic_learner_events,
                            event.model_dump_json().encode(),
                            key=event.user_id.encode(),
                        )
                    )
                    sent += 1
                    bar.update()
                else:
                    if checkpoint is not None:
                        checkpoint.total = skip + sent
            finally:
                await acknowledgements.wait()
    finally:
        await kafka.stop()
    return sent


async def replay_log(
    settings: Settings,
    source: Path,
    format: str,
    *,
    rate: float | None = None,
    speed: float | None = None,
    checkpoint_path: Path | None = None,
    from_start: bool = False,
    progress: bool = True,
) -> int:
    """``coursestream replay``: send a log, resuming after its checkpoint; returns the exit code.

    A first run validates the log (printing the :class:`ValidationReport`) to learn its length,
    then sends it. A later run with the same source and destination resumes after the events the
    checkpoint (``checkpoint_path``, by default :func:`default_checkpoint_path`) counts;
    ``from_start`` ignores it. Ctrl-C or SIGTERM stops the replay after the event in hand: it
    waits for the sends in flight, saves the checkpoint and returns 128 + the signal number. A
    checkpoint of a changed source or another destination is refused (returns 2).
    """
    key = replay_key(settings, source, format)
    path = checkpoint_path or default_checkpoint_path(settings, key)
    try:
        checkpoint = Checkpoint(path, key) if from_start else Checkpoint.load(path, key)
    except CheckpointMismatch as error:
        print(f"{error}: pass --from-start to send the whole log again, or another --checkpoint", file=sys.stderr)
        return 2
    topic = settings.topic_learner_events
    if checkpoint.complete:
        print(f"all {checkpoint.total:,} events of {source} were already sent to {topic} (checkpoint {path});"
              " --from-start sends them again")
        return 0
    if checkpoint.total is None:
        report = validate(open_log(source, format), str(source), format, progress=progress)
        print(report.text(), flush=True)
        checkpoint.total = report.events
    else:
        print(f"resuming after {checkpoint.acknowledged:,} of {checkpoint.total:,} events (checkpoint {path})",
              flush=True)

    invalid = 0

    def events() -> Iterator[LearnerEventT]:
        nonlocal invalid
        for result in open_log(source, format):
            if isinstance(result, InvalidRow):
                invalid += 1
            else:
                yield result

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        stop.set()
        loop.remove_signal_handler(signum)  # a second one acts at once

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        sent = await replay_events(settings, events(), rate=rate, speed=speed, total=checkpoint.total,
                                   progress=progress, checkpoint=checkpoint, stop=stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    print(f"sent {sent} learner events; skipped {invalid} invalid rows")
    if received:
        print(f"stopped by {signal.Signals(received[0]).name}: {checkpoint.acknowledged:,} of {checkpoint.total:,}"
              f" events sent, recorded in {path}; run the same command again to resume", file=sys.stderr)
        return 128 + received[0]
    return 0


async def publish_courses(settings: Settings, courses: Iterable[CourseContent]) -> int:
    """Send course content to the course-content topic, keyed by course id; returns the count."""
    kafka = producer(settings)
    await kafka.start()
    sent = 0
    try:
        for course in courses:
            await kafka.send(
                settings.topic_course_content, course.model_dump_json().encode(), key=course.course_id.encode()
            )
            sent += 1
        await kafka.flush()
    finally:
        await kafka.stop()
    return sent
