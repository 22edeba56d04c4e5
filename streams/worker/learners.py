"""The learner agent: learner events in, profiles and shared models updated, a fresh explained
list out for every event; rank requests answered; forget requests carried out.

Each batch flows through named steps: **parse** (``parse``; malformed messages to the dead-letter
topic), **learn** (``learn``: profile and partition models, one event at a time, in order; a
learner's feedback: ``feedback``), **candidates** (``candidates``: one store call for the segment's lists), **features**, **order**
and **explain** (``online.features``, ``online.order``, ``online.explain``, run by each partition's
engine over its lists: ``ranking``), **publish** (``publish``; at a segment's end its take-ups are
owed to the lists shown before them: ``outcomes``) and **write** (``write``: each changed row once
a window, then the acks). The time each step takes is the metric ``coursestream_learner_step_seconds``.

Lists are ranked a segment at a time: the learner events since the last ranking, then the rank
requests after them (a segment ends before a learner event that follows a request: a request is
answered from the state before it). So a list reflects its learner's profile just after the
triggering event, and the partition's shared models as of the segment's end, at most
``learner_batch_size - 1`` events later. The list an event is taken to answer (what the bandit
and the re-ranker learn from) is the learner's last one published before it.
``COURSESTREAM_LEARNER_BATCH_SIZE=1`` ranks and publishes each list before the next event is
learned. Profiles, latest lists and shared-model rows wait in memory (where the next batches and
the read API find them) until the window is due, then are written before Faust acks the
window's events: a crash before then redelivers all of them, and none of their rows was written.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

import faust
from faust.types import EventT

from online.events import Feedback, ForgetRequest, RankRequest
from online.profile import LearnerProfile
from online.recommender import LearnerEvent, Shown
from online.taken import TakenCourses
from streams import metrics
from streams.batches import Unwritten, caught_up, take_ready
from streams.faust_fixes import allow_batch_rows, processing
from streams.worker.app import app, latest_recommendations, learner_events, profiles, settings, taken
from streams.worker.course_index import course_index, replica
from streams.worker.dead_letters import dead_letter
from streams.worker.feedback import learn_from_feedback
from streams.worker.learn import Wanted, learn, load_profile
from streams.worker.outcomes import Outcomes
from streams.worker.parse import LearnerMessage, parse
from streams.worker.publish import publish, recommendation
from streams.worker.ranking import Queued, answer, coalesce, rank
from streams.worker.write import write

log = logging.getLogger(__name__)


def forget(request: ForgetRequest, unwritten: Collection[str] = ()) -> None:
    """Delete the learner's rows from every per-learner table: the deletes are tombstones on the
    changelogs, so no recovery brings them back. Idempotent. ``unwritten`` names the tables whose
    row for the learner was dropped before it was written. (No vector-store point and no row of
    ``learned`` belongs to one learner: those hold courses and shared models.)"""
    key = request.user_id.encode()
    removed = [table.name for table in (profiles, latest_recommendations, taken)
               if table.pop(key, None) is not None or table.name in unwritten]
    metrics.forget_requests.labels("deleted" if removed else "nothing-kept").inc()
    # The audit line names the request, not the learner: the requester keeps that link.
    log.warning("audit: forget request %s handled; removed rows of %s", request.request_id, removed or "no table")


class LearnerWindow(Unwritten):
    """The learner messages processed since the rows they change were last written, and those
    rows (see the module)."""

    def __init__(self, interval: float) -> None:
        super().__init__(interval)
        # the row, and the profile as a reader of it sees it (what the learner's next event learns from)
        self.profiles: dict[bytes, tuple[bytes, LearnerProfile, EventT]] = {}
        self.latest: dict[bytes, tuple[Shown, bytes, EventT]] = {}
        self.taken: dict[bytes, TakenCourses] = {}  # read this window (exact, for prerequisites)
        self.taken_changed: dict[bytes, EventT] = {}
        self.partitions: dict[int, EventT] = {}
        self.to_rank: list[Queued] = []
        self.requests: list[tuple[EventT, RankRequest]] = []
        self.outcomes = Outcomes()  # take-ups and lists, attributed at each segment's end

    async def process(self, events: Sequence[EventT]) -> None:
        """parse -> learn each -> rank (candidates, features, order, explain) -> publish."""
        self.add(events)
        with metrics.learner_steps["parse"].time():
            parsed = await parse(events)
        try:  # one store call for the batch's courses: learning then finds them in the catalogue
            await course_index.ensure([value.course_id for _, value in parsed if isinstance(value, LearnerEvent)])
        except Exception:  # each event asks again, and is dead-lettered if it still fails
            log.exception("could not read the courses of a batch")
        for event, value in parsed:
            with processing(event):
                await self.take(event, value)
        await self.rank()

    async def take(self, event: EventT, value: LearnerMessage) -> None:
        """Queue a rank request; carry out a forget request; learn a learner event (its list queued)."""
        key = event.message.key
        if isinstance(value, RankRequest):
            self.requests.append((event, value))
            return
        if isinstance(value, ForgetRequest):
            await self.rank()
            dropped = [table.name for table, rows in ((profiles, self.profiles), (latest_recommendations, self.latest),
                                                      (taken, self.taken_changed)) if rows.pop(key, None) is not None]
            self.taken.pop(key, None)
            forget(value, dropped)
            self.outcomes.forget(value.user_id)
            return
        try:
            if self.requests:
                await self.rank()
            with metrics.learner_steps["learn"].time():
                await self.learn(event, value)
        except Exception as error:  # a bug or an outage must not stop the stream
            self.reread(key)
            log.exception("failed to process %s", value.event_id)
            await dead_letter(event.message, f"processing failed: {error!r}", type(error).__name__)
            return
        metrics.events.labels(value.kind).inc()

    async def profile(self, user: bytes) -> LearnerProfile:
        """The learner's profile as this window has left it so far."""
        return self.profiles[user][1] if user in self.profiles else await load_profile(user)

    def reread(self, user: bytes) -> None:
        """The learner's kept profile read again from its row: a failed event may have changed it part way."""
        if user in self.profiles:
            row, _, event = self.profiles[user]
            self.profiles[user] = (row, LearnerProfile.from_bytes(row), event)

    def taken_courses(self, user: bytes) -> TakenCourses:
        """Every course the learner took, exactly, as this window has left it so far."""
        if user not in self.taken:
            self.taken[user] = TakenCourses.from_bytes(taken.get(user))
        return self.taken[user]

    async def learn(self, event: EventT, value: LearnerEvent | Feedback) -> None:
        key = event.message.key
        await course_index.ensure([value.course_id])
        profile = await self.profile(key)
        unwritten = self.latest.get(key)
        last = unwritten[0] if unwritten else None
        courses = self.taken_courses(key)
        if isinstance(value, Feedback):
            wanted = learn_from_feedback(event, value, profile, last, courses)
        else:
            first_use, applied = not profile.has_taken(value.course_id), profile.events
            redelivered = profile.seen(value.event_id, event.message.offset)
            wanted = learn(event, value, profile, last, courses)
            # A set: a redelivered event adds nothing, but its row is written all the same, as the
            # profile's is: after a crash the local store can be ahead of the changelog. (Taken rows
            # are written after profiles, so a local taken row ahead means the profile is ahead too,
            # and the event reads as redelivered.)
            if courses.add(value.course_id) or redelivered:
                self.taken_changed[key] = event
            if first_use and profile.events > applied:  # a take-up (a redelivered event is not applied)
                self.outcomes.taken_up(event.message, value)
        # Kept even when the event was redelivered and skipped: after a crash the local store can
        # be ahead of the changelog (rows written, not yet sent), and writing the row sends them.
        # Stored now, as if written: the learner's next event learns from the same (quantised)
        # profile however the events fall into batches. ``profile`` itself stays for the list.
        row, stored = profile.stored()
        self.profiles[key] = (row, stored, event)
        if profile.forgotten:
            metrics.knowledge_forgotten.inc(profile.forgotten)
        self.partitions[event.message.partition] = event
        if settings.recommend_on_event:
            self.to_rank.append((event, value, wanted))

    async def rank(self) -> None:
        """Rank the segment's lists and answer its requests; publish them in order."""
        to_rank, requests = self.to_rank, self.requests
        self.to_rank, self.requests = [], []
        earlier: dict[bytes, list[tuple[EventT, LearnerEvent]]] = {}
        if settings.coalesce_bursts:
            to_rank, earlier = coalesce(to_rank)
        if to_rank:
            try:
                lists = await rank([wanted for _, _, wanted in to_rank])
            except Exception as error:  # a bug or an outage must not stop the stream
                log.exception("failed to rank the lists of %d events", len(to_rank))
                for event, _, _ in to_rank:
                    for failed, _ in [*earlier.get(event.message.key, ()), (event, None)]:
                        await dead_letter(failed.message, f"processing failed: {error!r}", type(error).__name__)
                lists = []
            with metrics.learner_steps["publish"].time():
                for (event, value, wanted), items in zip(to_rank, lists):
                    coalesced = [(v, e.message) for e, v in earlier.get(event.message.key, ())]
                    await self.publish(event, recommendation(value, event.message, items, wanted.policy, coalesced))
        for event, request in requests:
            with processing(event):
                try:
                    key = event.message.key
                    answered = await answer(request, event.message, await self.profile(key), self.taken_courses(key))
                except Exception as error:
                    log.exception("failed to process %s", request.event_id)
                    await dead_letter(event.message, f"processing failed: {error!r}", type(error).__name__)
                    continue
            metrics.events.labels(request.kind).inc()
            await self.publish(event, answered)
        self.outcomes.attribute()

    async def publish(self, event: EventT, document: dict) -> None:
        published = await publish(event, document)
        self.outcomes.shown(event.message, document)
        self.latest[event.message.key] = (Shown.of(document["items"]), published, event)

    def profile_row(self, user: bytes) -> bytes | None:
        """The learner's profile row, if changed since the last write."""
        return self.profiles[user][0] if user in self.profiles else None

    def taken_row(self, user: bytes) -> bytes | None:
        """The learner's taken-courses row, if changed since the last write."""
        return self.taken[user].to_bytes() if user in self.taken_changed else None

    def latest_row(self, user: bytes) -> bytes | None:
        """The learner's latest list row, if published since the last write."""
        return self.latest[user][1] if user in self.latest else None

    async def write(self, stream: faust.StreamT) -> None:
        with metrics.learner_steps["write"].time():
            await write(self, stream, self.partitions,
                        {key: (row, event) for key, (row, _, event) in self.profiles.items()},
                        {key: (published, event) for key, (_, published, event) in self.latest.items()},
                        {key: (self.taken[key].to_bytes(), event) for key, event in self.taken_changed.items()})
        self.profiles.clear()
        self.latest.clear()
        self.taken.clear()
        self.taken_changed.clear()
        self.partitions.clear()


#: What the learner agent processed and has not written yet.
unwritten = LearnerWindow(settings.learner_write_interval_ms / 1000)


@app.agent(learner_events)
async def update_profiles(stream: faust.StreamT) -> None:
    """Learner events, a batch at a time -> profiles (exactly once in effect) -> fresh
    recommendations; rank request -> its answer; forget request -> the learner's rows deleted."""
    if replica is not None:
        await replica.caught_up.wait()  # rank against the whole catalogue, as every worker does
    allow_batch_rows(app)
    async for events in take_ready(stream, settings.learner_batch_size, settings.learner_batch_wait_ms / 1000,
                                   idle=unwritten.interval or None):
        if events:
            metrics.learner_batch_events.observe(len(events))
            await unwritten.process(events)
        if unwritten.due(caught_up(stream, events)):
            await unwritten.write(stream)
