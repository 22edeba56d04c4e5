"""Produce historical logs into the input topics: learner events keyed by user, in time order.

Pacing: as fast as possible (default), ``rate`` events per second, or ``speed`` times
real time (event-time gaps divided by ``speed``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from online.events import ClickEvent, CourseContent, QuizEvent, VideoEvent
from streams.settings import Settings

LearnerEventT = ClickEvent | VideoEvent | QuizEvent


def producer(settings: Settings) -> AIOKafkaProducer:
    """A producer that keeps each key's order through retries (acks from all replicas)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        linger_ms=5,
        **settings.kafka_client_options(),
    )


async def replay_events(
    settings: Settings,
    events: Iterable[LearnerEventT],
    *,
    rate: float | None = None,
    speed: float | None = None,
    total: int | None = None,
    progress: bool = True,
) -> int:
    """Send events (already in event-time order) to the learner-events topic; returns the count."""
    sent = 0
    start = time.monotonic()
    first_time: float | None = None
    kafka = producer(settings)
    await kafka.start()
    try:
        with tqdm(total=total, unit="event", disable=not progress, smoothing=0.1) as bar:
            for event in events:
                if rate:
                    delay = sent / rate - (time.monotonic() - start)
                elif speed:
                    event_time = event.event_time.timestamp()
                    first_time = event_time if first_time is None else first_time
                    delay = (event_time - first_time) / speed - (time.monotonic() - start)
                else:
                    delay = 0.0
                if delay > 0:
                    await asyncio.sleep(delay)
                await kafka.send(
                    settings.topic_learner_events, event.model_dump_json().encode(), key=event.user_id.encode()
                )
                sent += 1
                bar.update()
            await kafka.flush()
    finally:
        await kafka.stop()
    return sent


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
