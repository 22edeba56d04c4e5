"""The content agents: course content in, embedded by the encoder service, upserted into the
vector store (recommendable at once); content the encoder cannot take now parked on the retry
topic and tried again later; and the worker's housekeeping tasks."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from datetime import datetime, timedelta

import faust
from faust.types import Message
from pydantic import ValidationError

from online.events import (
    CourseContent,
    CourseIndexed,
    InvalidEvent,
    ParkedContent,
    parse_course_content,
    utcnow,
    validation_reason,
)
from streams import metrics
from streams.encoder_client import EncoderRejected, EncoderUnavailable
from streams.garbage import collect_less_often
from streams.replica import point_to_bytes
from streams.worker.app import app, content_retry, course_content, course_indexed, course_vectors, settings
from streams.worker.course_index import course_index, replica
from streams.worker.dead_letters import dead_letter

log = logging.getLogger(__name__)
MODEL_VERSION_POLL_S = 30.0
#: course id -> when it was first parked, for the parked content being retried now
_retrying: dict[str, datetime] = {}
metrics.parked_age.set_function(
    lambda: max(((utcnow() - parked_at).total_seconds() for parked_at in _retrying.values()), default=0.0))


async def _index_and_announce(contents: Sequence[CourseContent]) -> None:
    points = await course_index.index(contents)
    metrics.courses_indexed.inc(len(points))
    log.info("indexed %d courses", len(points))
    for point in points:
        if replica is not None:
            await course_vectors.send(key=point.course_id.encode(), value=point_to_bytes(point))
        notice = CourseIndexed(
            course_id=point.course_id,
            model_version=point.payload["model_version"],
            vectors=sorted(point.vectors),
            indexed_at=utcnow(),
        )
        await course_indexed.send(key=point.course_id.encode(), value=notice.model_dump_json().encode())


async def park(message: Message, content: CourseContent, parked: ParkedContent | None, error: EncoderUnavailable) -> None:
    """Put content the encoder cannot take now on the retry topic, with a growing, jittered delay;
    after ``content_max_failures`` failures of the encoder on it, to the dead-letter topic instead."""
    attempts = parked.attempts + 1 if parked else 1
    failures = (parked.failures if parked else 0) + error.failed_on_content
    if failures >= settings.content_max_failures:
        reason = f"the encoder failed {failures} times while handling this course (of {attempts} attempts): {error}"
        await dead_letter(message, reason, "EncoderFailed")
        return
    delay = min(settings.retry_max_s, settings.retry_initial_s * 2 ** (attempts - 1)) * random.uniform(0.8, 1.2)
    parked = ParkedContent(content=content, attempts=attempts, failures=failures,
                           retry_at=utcnow() + timedelta(seconds=delay), last_error=str(error)[:1000],
                           parked_at=parked.parked_at if parked and parked.parked_at else utcnow())
    metrics.courses_parked.inc()
    log.warning("parked course %s (attempt %d, retry in %.0fs): %s", content.course_id, attempts, delay, error)
    await content_retry.send(key=content.course_id.encode(), value=parked.model_dump_json().encode())


async def index_contents(valid: Sequence[tuple[Message, CourseContent]]) -> None:
    """Index a batch of content; one the encoder refuses is tried course by course, so that a bad
    course goes to the dead letters alone; what the encoder cannot take now is parked."""
    try:
        await _index_and_announce([content for _, content in valid])
    except EncoderRejected as error:
        if len(valid) > 1:
            for one in valid:
                await index_contents([one])
        else:
            await dead_letter(valid[0][0], str(error), type(error).__name__)
    except EncoderUnavailable as error:
        for message, content in valid:
            await park(message, content, None, error)


@app.agent(course_content)
async def index_courses(stream: faust.StreamT) -> None:
    """Course content -> encoder service -> Qdrant, a batch per encoder call."""
    async for events in stream.take_events(settings.content_batch_size, within=0.5):
        valid: list[tuple[Message, CourseContent]] = []
        for event in events:
            try:
                valid.append((event.message, parse_course_content(event.message.value)))
            except InvalidEvent as error:
                await dead_letter(event.message, str(error), "InvalidEvent")
        if valid:
            await index_contents(valid)


@app.agent(content_retry)
async def retry_parked_courses(stream: faust.StreamT) -> None:
    """Parked content -> wait until its retry time -> index, or park again (dead-lettered once the
    encoder failed on it ``content_max_failures`` times)."""
    async for event in stream.events():
        try:
            parked = ParkedContent.model_validate_json(event.message.value)
        except ValidationError as error:
            await dead_letter(event.message, validation_reason(error), "InvalidEvent")
            continue
        course_id = parked.content.course_id
        _retrying[course_id] = parked.parked_at or utcnow()
        try:
            wait = (parked.retry_at - utcnow()).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
            await _index_and_announce([parked.content])
        except EncoderRejected as error:
            await dead_letter(event.message, str(error), type(error).__name__)
        except EncoderUnavailable as error:
            await park(event.message, parked.content, parked, error)
        finally:
            _retrying.pop(course_id, None)


@app.task
async def collect_garbage_less_often() -> None:
    """The cyclic garbage collector off what the worker loaded at start, and run less often
    (``streams.garbage``)."""
    collect_less_often()


@app.task
async def follow_model_version() -> None:
    """Learn the encoder's model version at start, and notice when it is upgraded."""
    while not app.should_stop:
        try:
            await course_index.refresh_model_version()
            metrics.dependency_up.labels("encoder").set(1)
        except EncoderUnavailable as error:
            metrics.dependency_up.labels("encoder").set(0)
            metrics.dependency_failures.labels("encoder").inc()
            log.warning("encoder unreachable; model version %s kept: %s", course_index.model_version, error)
        await app.sleep(MODEL_VERSION_POLL_S)


