"""``coursestream demo``: the whole system on one machine, no external servers, telling its story.

A real Kafka-protocol broker (Tansu) on a free port, the encoder service in this process (CPU),
one worker process with the embedded Qdrant engine and RocksDB tables, all under a temporary
folder. It indexes the OULAD sample that ships with the package (module AAA, presentation
2013J; see ``streams/sample/oulad/ATTRIBUTION.md``) and replays its real learner events at a
steady rate. For a few learners it prints what they did and the list they got back (titles,
the strongest reason in words); then a summary: events, lists, events/s, and the latency from
an event's send to the arrival of its list, at that pace. ``--json`` prints every published
document instead, one a line. ``--serve`` keeps everything running afterwards for the live page.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from online.events import ClickEvent, QuizEvent, VideoEvent
from online.sources import InvalidRow, oulad_catalogue, read_oulad
from streams.replay import publish_courses, replay_events
from streams.settings import Settings
from streams.tools.processes import WorkerProcess, embedded_env, embedded_services, settings_from
from streams.topics import ensure_topics

SAMPLE = Path(__file__).parents[1] / "sample" / "oulad"
LearnerEvent = ClickEvent | VideoEvent | QuizEvent
#: Events a followed learner's story shows, and items of each list.
STORY_EVENTS = 4
STORY_ITEMS = 3


def sample_events(limit: int | None) -> Iterator[LearnerEvent]:
    """The sample's valid learner events in event-time order, the first ``limit`` of them."""
    count = 0
    for result in read_oulad(SAMPLE):
        if isinstance(result, InvalidRow):
            continue
        if limit is not None and count >= limit:
            return
        count += 1
        yield result


def followed_learners(events: Sequence[LearnerEvent], count: int) -> list[str]:
    """The first ``count`` learners to appear who have at least :data:`STORY_EVENTS` events: their
    lists change as they go."""
    seen: dict[str, int] = {}
    for event in events:
        seen[event.user_id] = seen.get(event.user_id, 0) + 1
    return [user for user, n in seen.items() if n >= STORY_EVENTS][:count]


def what_happened(event: LearnerEvent, titles: Mapping[str, str]) -> str:
    """An event in words: ``3 clicks on Forum 546614 (AAA 2013J)``."""
    title = titles.get(event.course_id, event.course_id)
    if isinstance(event, ClickEvent):
        return f"{event.count} clicks on {title}" if event.count > 1 else f"clicked {title}"
    if isinstance(event, VideoEvent):
        return f"watched {event.watched_seconds:.0f} s of {title}"
    score = event.score if event.score is not None else float(bool(event.correct))
    return f"scored {score:.0%} on {title}"


def top_reason(item: Mapping[str, Any]) -> str:
    """The item's strongest reason in words (an exploring item's first reason says it explores)."""
    reasons = item["reasons"]
    if item.get("explore") and len(reasons) > 1:
        return f"{reasons[1]['text']} [exploring]"
    return reasons[0]["text"] if reasons else ""


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass
class Tally:
    """What came back: lists, and each one's latency from its event's send to its arrival here."""

    expected: int
    lists: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def count(self, document: Mapping[str, Any], arrived: float) -> None:
        self.lists += 1
        sent = document["trigger"].get("ingested_at")
        if sent:
            self.latencies_ms.append(max(0.0, arrived - datetime.fromisoformat(sent).timestamp()) * 1000)
        if self.lists >= self.expected:
            self.done.set()

    def summary(self, events: int, learners: int, rate: float | None) -> str:
        elapsed = time.monotonic() - self.started
        pace = f"at {rate:g} events/s" if rate else "as fast as possible"
        return (f"summary: {events} events from {learners} learners sent {pace}; {self.lists} lists in {elapsed:.1f} s "
                f"({events / elapsed:.1f} events/s); event to list p50 {percentile(self.latencies_ms, 0.5):.0f} ms, "
                f"p99 {percentile(self.latencies_ms, 0.99):.0f} ms")


class Story:
    """Prints, for the followed learners, each of their first events and the list it brought."""

    def __init__(self, events: Sequence[LearnerEvent], followed: Sequence[str], titles: Mapping[str, str],
                 out: Callable[[str], None]) -> None:
        self.titles, self.out = titles, out
        self.followed = set(followed)
        self.by_id = {e.event_id: e for e in events if e.user_id in self.followed}
        self.told: dict[str, int] = dict.fromkeys(followed, 0)

    def tell(self, document: Mapping[str, Any]) -> None:
        event = self.by_id.get(document["trigger"]["event_id"])
        if event is None or self.told[event.user_id] >= STORY_EVENTS:
            return
        self.told[event.user_id] += 1
        self.out(f"{event.user_id} on {event.event_time:%Y-%m-%d}: {what_happened(event, self.titles)}")
        for item in document["items"][:STORY_ITEMS]:
            self.out(f"    {item['rank']}. {item.get('title') or item['course_id']}: {top_reason(item)}")


async def read_topic(settings: Settings, topic: str, on_record: Callable[[bytes, float], None],
                     until: Callable[[], bool], timeout_s: float = 600.0) -> None:
    """Read ``topic`` from the start, handing each record and its arrival time on, until ``until()``."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap_servers, auto_offset_reset="earliest",
        enable_auto_commit=False, fetch_max_wait_ms=10, **settings.kafka_client_options(),
    )
    await consumer.start()
    deadline = time.monotonic() + timeout_s
    try:
        while not until() and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=100)).values():
                arrived = time.time()
                for message in batch:
                    on_record(message.value, arrived)
    finally:
        await consumer.stop()


async def index_sample(settings: Settings, say: Callable[[str], None]) -> dict[str, str]:
    """Send the sample's catalogue and wait until the worker indexed all of it; its titles by id."""
    courses = list(oulad_catalogue(SAMPLE))
    say(f"indexing {len(courses)} courses of the OULAD sample (module AAA 2013J) through the encoder ...")
    started, indexed = time.monotonic(), 0

    def count(_: bytes, __: float) -> None:
        nonlocal indexed
        indexed += 1

    reading = asyncio.create_task(read_topic(settings, settings.topic_course_indexed, count,
                                             lambda: indexed >= len(courses)))
    await publish_courses(settings, courses)
    await reading
    say(f"indexed {indexed} courses in {time.monotonic() - started:.1f} s")
    return {course.course_id: course.title for course in courses}


async def replay(settings: Settings, events: Sequence[LearnerEvent], rate: float | None,
                 on_list: Callable[[dict[str, Any]], None], tally: Tally) -> None:
    """Send the events at ``rate`` while reading the lists they bring."""
    def received(raw: bytes, arrived: float) -> None:
        document = json.loads(raw)
        tally.count(document, arrived)
        on_list(document)

    reading = asyncio.create_task(read_topic(settings, settings.topic_recommendations, received, tally.done.is_set))
    await replay_events(settings, events, rate=rate, progress=False)
    await reading


def run_demo(events: int | None = 600, rate: float | None = 20.0, follow: int = 3, as_json: bool = False,
             serve: bool = False) -> int:
    """Run the demo (see the module); returns the process exit code."""
    def say(line: str) -> None:  # the story on stdout; with --json, stdout is the documents' alone
        print(line, file=sys.stderr if as_json else sys.stdout, flush=True)

    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # the models' loading bars would garble the story
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="coursestream-demo-") as tmp, embedded_services() as (broker, encoder_url):
        env = {**embedded_env(broker.bootstrap_servers, encoder_url, Path(tmp)), "COURSESTREAM_WEB_TOKEN": token}
        settings = settings_from(env)
        page = f"http://127.0.0.1:{settings.web_port}/#token={token}"
        say(f"broker (Tansu) on {broker.bootstrap_servers}, encoder on {encoder_url}, state under {tmp}")
        ensure_topics(settings)
        worker = WorkerProcess(env, Path(tmp) / "worker.log").start()
        try:
            titles = asyncio.run(index_sample(settings, say))
            say(f"live page: {page}")
            replayed = list(sample_events(events))
            followed = followed_learners(replayed, follow)
            learners = len({e.user_id for e in replayed})
            pace = f"{rate:g} events/s" if rate else "as fast as possible"
            say(f"replaying {len(replayed)} real learner events of {learners} learners at {pace}; "
                f"the story of {len(followed)} of them:")
            story = Story(replayed, followed, titles, say)
            tally = Tally(len(replayed))
            show = (lambda d: print(json.dumps(d), flush=True)) if as_json else story.tell
            asyncio.run(replay(settings, replayed, rate, show, tally))
            say(tally.summary(len(replayed), learners, rate))
            if serve:
                say(f"everything keeps running: open {page} (Ctrl-C stops)")
                wait_for_interrupt()
        except KeyboardInterrupt:
            say("interrupted: stopping")
            return 130
        finally:
            code = worker.stop()
            if code not in (0, -signal.SIGTERM):
                say(f"worker exited with {code}; its log:\n{worker.log()[-5000:]}")
        return 0 if tally.lists >= len(replayed) else 1


def wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
