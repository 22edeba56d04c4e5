"""Attribution: which recommendation list a take-up is owed to, to compare ranking policies (A/B).

A **take-up** is a learner's first use of a course (as the recommender counts it: the first
click, video or quiz event of the learner on it). It is owed to the most recent of the learner's
lists that showed the course, among the :data:`RECENT_LISTS` lists last shown to them before it,
if that list answered a message at most :data:`WINDOW_DAYS` of event time before the take-up.
That list's policy gets the take-up, at the rank the course was shown at, exploring or not. A
list is **taken up** once a take-up is owed to it; a policy's take-up rate is its lists taken up
over its lists.

"Before" is the order of the learner's messages (their partition's offsets): a list answers its
triggering message (a learner event, feedback or a rank request), so a take-up is owed only to
lists that answered an earlier message of the learner, however the worker batched them (the
list of an event is ranked after the event is learned). Feedback and rank requests take nothing
up. A forget request forgets the learner's lists.

The worker counts take-ups as Prometheus series (``streams.worker.outcomes``); the experiment
report (``coursestream experiment report``) applies the same rule to the topics.

>>> lists = RecentLists()
>>> lists.shown("ann", "reranked-v3", 0.0, [{"course_id": "intro", "explore": False},
...                                         {"course_id": "loops", "explore": True}])
>>> lists.taken_up("ann", "loops", 3600.0)
TakeUp(policy='reranked-v3', rank=2, explore=True, first_of_list=True)
>>> lists.taken_up("ann", "intro", 3600.0).first_of_list   # the list was already taken up
False
>>> lists.taken_up("ann", "art", 3600.0) is None           # not shown
True
>>> lists.shown("ann", "reranked-v3", 0.0, [{"course_id": "art", "explore": False}])
>>> lists.taken_up("ann", "art", 2 * 86_400.0) is None     # shown too long before
True
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from online.events import ClickEvent, Feedback, ForgetRequest, QuizEvent, RankRequest, VideoEvent

#: A learner's lists a take-up may be owed to: the last ones shown before it.
RECENT_LISTS = 8
#: The oldest list a take-up may be owed to, in days of event time before the take-up.
WINDOW_DAYS = 1.0
#: Learners whose recent lists a worker keeps in memory; the least recently active go first.
MAX_LEARNERS = 100_000


@dataclass(slots=True)
class ShownList:
    """A list as attribution keeps it: its policy, its trigger's event time, what it showed."""

    policy: str
    time: float
    course_ids: tuple[str, ...]
    explore: tuple[bool, ...]
    taken_up: bool = False


@dataclass(frozen=True, slots=True)
class TakeUp:
    """A take-up owed to a list: the list's policy, the rank the course had in it (1 = top),
    whether it was there to explore, and whether it is the list's first take-up."""

    policy: str
    rank: int
    explore: bool
    first_of_list: bool


class RecentLists:
    """The last :data:`RECENT_LISTS` lists of each learner, and the rule of the module.

    ``max_learners`` bounds memory (None: no bound, as the experiment report runs); past it, the
    learner least recently shown a list or taking something up is forgotten.
    """

    def __init__(self, per_learner: int = RECENT_LISTS, window_days: float = WINDOW_DAYS,
                 max_learners: int | None = MAX_LEARNERS) -> None:
        self.per_learner = per_learner
        self.window_s = window_days * 86_400.0
        self.max_learners = max_learners
        self._lists: OrderedDict[str, deque[ShownList]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._lists)

    def shown(self, user: str, policy: str, time: float, items: Sequence[Mapping[str, Any]]) -> None:
        """A list was shown to ``user`` (``items`` in the contract's shape, best first), answering
        a message of event time ``time`` (seconds)."""
        recent = self._lists.get(user)
        if recent is None:
            recent = self._lists[user] = deque(maxlen=self.per_learner)
            if self.max_learners is not None and len(self._lists) > self.max_learners:
                self._lists.popitem(last=False)
        else:
            self._lists.move_to_end(user)
        recent.append(ShownList(policy, time, tuple(item["course_id"] for item in items),
                                tuple(bool(item.get("explore")) for item in items)))

    def taken_up(self, user: str, course_id: str, time: float) -> TakeUp | None:
        """``user`` took ``course_id`` up at event time ``time``: the take-up owed to their most
        recent list that showed it, if any is recent enough (see the module)."""
        recent = self._lists.get(user)
        if recent is None:
            return None
        self._lists.move_to_end(user)
        for shown in reversed(recent):
            if course_id in shown.course_ids:
                if time - shown.time > self.window_s:
                    return None
                first, shown.taken_up = not shown.taken_up, True
                j = shown.course_ids.index(course_id)
                return TakeUp(shown.policy, j + 1, shown.explore[j], first)
        return None

    def forget(self, user: str) -> None:
        """Drop what is kept of ``user`` (a forget request)."""
        self._lists.pop(user, None)


@dataclass
class PolicyTally:
    """What one policy's lists did: per learner ``[lists, lists taken up]``, and the totals."""

    learners: dict[str, list[int]] = field(default_factory=dict)
    items: int = 0
    take_ups: int = 0
    exploring_take_ups: int = 0
    by_rank: Counter[int] = field(default_factory=Counter)

    @property
    def lists(self) -> int:
        return sum(lists for lists, _ in self.learners.values())

    @property
    def lists_taken_up(self) -> int:
        return sum(taken for _, taken in self.learners.values())


Message = ClickEvent | VideoEvent | QuizEvent | Feedback | RankRequest | ForgetRequest


def tally(messages: Iterable[Message], lists: Mapping[str, Mapping[str, Any]]) -> dict[str, PolicyTally]:
    """Each policy's lists and take-ups over a log: ``messages`` are the learner-events topic's
    (each learner's in their order), ``lists`` the recommendations by ``trigger.event_id`` (one
    each: delivery is at least once). Each list is placed right after the message it answers and
    each take-up owed by the rule of the module. A message whose event id came before (sent
    twice) is skipped, as the worker's profile skips it, and its list is not counted again. A
    list whose message is not in ``messages`` is counted, and nothing can be owed to it.

    >>> from datetime import datetime, timezone
    >>> when = datetime(2024, 5, 1, tzinfo=timezone.utc)
    >>> def click(i, course):
    ...     return ClickEvent(event_id=f"e{i}", user_id="ann", course_id=course, action="open", event_time=when)
    >>> def answer(i, *courses):
    ...     return {"user_id": "ann", "policy": "p", "trigger": {"event_id": f"e{i}", "event_time": when.isoformat()},
    ...             "items": [{"course_id": c, "explore": False} for c in courses]}
    >>> found = tally([click(1, "a"), click(2, "b"), click(3, "b"), click(4, "c")],
    ...               {f"e{i}": answer(i, *shown) for i, shown in [(1, "bc"), (2, "dc"), (3, "d"), (4, "e")]})
    >>> found["p"].learners["ann"], found["p"].take_ups, dict(found["p"].by_rank)   # b from list 1, c from list 2
    ([4, 2], 2, {1: 1, 2: 1})
    """
    recent = RecentLists(max_learners=None)
    found: dict[str, PolicyTally] = {}
    taken: dict[str, set[str]] = {}
    seen: set[str] = set()
    placed: set[str] = set()

    def count_list(listed: Mapping[str, Any]) -> PolicyTally:
        policy = found.setdefault(listed["policy"], PolicyTally())
        policy.learners.setdefault(listed["user_id"], [0, 0])[0] += 1
        policy.items += len(listed["items"])
        return policy

    for message in messages:
        if isinstance(message, ForgetRequest):
            taken.pop(message.user_id, None)
            recent.forget(message.user_id)
            continue
        if message.event_id in seen:
            continue
        seen.add(message.event_id)
        user = message.user_id
        if isinstance(message, ClickEvent | VideoEvent | QuizEvent) and message.course_id not in taken.setdefault(user, set()):
            taken[user].add(message.course_id)
            take_up = recent.taken_up(user, message.course_id, message.event_time.timestamp())
            if take_up is not None:
                policy = found[take_up.policy]
                policy.take_ups += 1
                policy.exploring_take_ups += take_up.explore
                policy.by_rank[take_up.rank] += 1
                policy.learners[user][1] += take_up.first_of_list
        listed = lists.get(message.event_id)
        if listed is not None and listed["user_id"] == user:
            placed.add(message.event_id)
            count_list(listed)
            recent.shown(user, listed["policy"], _timestamp(listed["trigger"]["event_time"]), listed["items"])
    for event_id, listed in lists.items():
        if event_id not in placed:
            count_list(listed)
    return found


def _timestamp(value: Any) -> float:
    """Seconds of an RFC 3339 string (as published) or a datetime."""
    from datetime import datetime

    return (datetime.fromisoformat(value) if isinstance(value, str) else value).timestamp()
