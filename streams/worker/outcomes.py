"""Attribution in the worker: each take-up owed to a recent list (``online.attribution``),
counted by the list's policy as Prometheus series.

A segment's take-ups and published lists are noted as they happen (an append each) and matched
at the segment's end in each learner's message order (partition offsets): a list answers its
triggering message, so a take-up is owed only to lists of the learner's earlier messages,
however the batch fell (lists are ranked after the segment's events are learned).

The recent lists live in this worker's memory (``online.attribution.MAX_LEARNERS`` learners at
most): a restart, or a partition moving to another worker, starts its learners' afresh, and a
list republished after a crash is counted again. The experiment report (``streams.experiment``)
counts from the topics by the same rule.
"""

from __future__ import annotations

from typing import Any

from faust.types import Message

from online.attribution import RecentLists
from online.recommender import LearnerEvent
from streams import metrics
from streams.worker.app import settings

#: Each learner's recent lists, as this worker showed them.
recent_lists = RecentLists()

for _policy in settings.policies:  # every variant's series exists from the start (alerts and panels read zeros)
    for _series in (metrics.recommendations, metrics.items_shown, metrics.lists_taken_up):
        _series.labels(_policy)


class Outcomes:
    """The take-ups and lists of the segment being processed, to attribute at its end."""

    def __init__(self) -> None:
        # (partition, offset, 0 for a take-up | 1 for a list, user, course id | (policy, items), event time)
        self._noted: list[tuple[int, int, int, str, Any, float]] = []

    def taken_up(self, message: Message, value: LearnerEvent) -> None:
        """The learner took a course up (their first use of it) with this message."""
        self._noted.append((message.partition, message.offset, 0, value.user_id, value.course_id,
                            value.event_time.timestamp()))

    def shown(self, message: Message, document: dict[str, Any]) -> None:
        """A list answering this message was published."""
        self._noted.append((message.partition, message.offset, 1, document["user_id"],
                            (document["policy"], document["items"]), document["trigger"]["event_time"].timestamp()))

    def attribute(self) -> None:
        """Match the segment's take-ups with the lists shown before each, in message order."""
        noted, self._noted = self._noted, []
        noted.sort(key=lambda entry: entry[:3])
        for _, _, kind, user, what, time in noted:
            if kind:
                recent_lists.shown(user, what[0], time, what[1])
            elif (take_up := recent_lists.taken_up(user, what, time)) is not None:
                metrics.take_ups.labels(take_up.policy, str(take_up.rank), str(take_up.explore).lower()).inc()
                if take_up.first_of_list:
                    metrics.lists_taken_up.labels(take_up.policy).inc()

    def forget(self, user: str) -> None:
        """Drop the learner's recent lists (a forget request; call after :meth:`attribute`)."""
        recent_lists.forget(user)
