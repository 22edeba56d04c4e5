"""The prequential harness: score every step with what was learned before it, then learn.

A run is a sequence of :class:`Block` values in time order. A block is one moment (an OULAD
day; one timestamp of a generic log): the :class:`Step` values scored at that moment, and the
events that happened at it. For each block the harness first asks every policy for its list
at every step, *then* hands the policies the block's events through ``learn_one``. So a
policy only ever learns from the past, and events of the same moment (whose order within it
is unknown, as within an OULAD day) never inform each other's scores.

>>> from datetime import datetime, timezone
>>> from online.events import ClickEvent
>>> def click(user, course, day):
...     return ClickEvent(event_id=f"{user}:{course}:{day}", user_id=user, course_id=course,
...                       action="open", event_time=datetime(2024, 5, day, tzinfo=timezone.utc))
>>> log = [click("u1", "b", 1), click("u2", "b", 2), click("u2", "c", 3), click("u1", "c", 4)]
>>> steps = prequential_steps(log, catalogue=["a", "b", "c"])
>>> [(s.user_id, s.candidates, sorted(s.relevant)) for b in steps.blocks for s in b.steps]
[('u1', ('a', 'b', 'c'), ['b']), ('u2', ('a', 'b', 'c'), ['b']), ('u2', ('a', 'c'), ['c']), ('u1', ('a', 'c'), ['c'])]
>>> from online.evaluation.baselines import DecayedPopularity
>>> report = evaluate(prequential_steps(log, catalogue=["a", "b", "c"]), {"popularity": DecayedPopularity}, k=1)
>>> report.overall["popularity"]["recall"]   # the first to take b and c are missed; who follows is not
0.5

Two protocols come with it: :func:`oulad_steps` (OULAD's daily clicks, the protocol of issue 5)
and :func:`prequential_steps` (any time-ordered event log, e.g. EdNet or JSON Lines).

**Leakage guard.** Policies see nothing but ``learn_one`` and ``recommend`` arguments: a copy
of the candidates, never the log, the step or the answers. The harness checks its own feed
before every ``recommend``: no event learned so far may be at or after ``now``
(:class:`LeakageError` otherwise, e.g. for a step source that files a day's events in the day
before). With ``audit=True`` it also replays every policy from a fresh instance while each
moment's events and answers are withheld (the replay keeps its own deep copy of each
moment's events, which it hands over only once the moment's scoring is done) and requires the very same lists: a policy that reaches into the harness's
buffers for the present, or that is not deterministic, gives other lists and is reported.
What the harness cannot see is a policy that was handed the data by other means (a factory
that closes over the log): factories should take nothing from the data.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from online.events import ClickEvent, QuizEvent, VideoEvent
from online.evaluation.metrics import METRICS, PrerequisitesMet, no_prerequisites, step_scores
from online.evaluation.report import Report
from online.sources import InvalidRow, oulad_catalogue, presentation_start, read_oulad

Event = ClickEvent | VideoEvent | QuizEvent
#: A learner is new while fewer events than this were learned of them: the report gives the
#: steps of new learners and of the rest separately (cold start against warm).
NEW_LEARNER_EVENTS = 5


@runtime_checkable
class Policy(Protocol):
    """What the harness evaluates: it learns from events and ranks candidates.

    ``recommend`` returns up to ``k`` ids chosen from ``candidates``, best first. It must be
    deterministic: the same learned events and the same arguments give the same list (seed
    any randomness in the constructor).
    """

    name: str

    def learn_one(self, event: Event) -> None: ...

    def recommend(self, user_id: str, candidates: Sequence[str], k: int, now: datetime) -> list[str]: ...


PolicyFactory = Callable[[], Policy]


class LeakageError(AssertionError):
    """A policy could see, or did see, what it is scored on."""


class PolicyError(ValueError):
    """A policy broke the protocol (e.g. recommended something that is not a candidate)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One scored moment of one learner: what may be recommended and what was taken up."""

    user_id: str
    candidates: tuple[str, ...]
    """What may be recommended, in a fixed order that says nothing about the answer."""
    relevant: frozenset[str]
    """The candidates the learner took up at this moment."""
    taken: frozenset[str]
    """What the learner had taken before (for the prerequisite hook)."""
    group: str
    """The catalogue part it belongs to (an OULAD presentation); coverage is per group."""


@dataclass(frozen=True, slots=True)
class Block:
    """One moment: its steps are scored first, then its events are learned."""

    time: datetime
    steps: tuple[Step, ...]
    events: tuple[Event, ...]


@dataclass
class Steps:
    """A protocol ready to run: blocks in time order and each group's catalogue.

    ``blocks`` may be a one-shot generator (it is iterated once). ``stats`` is filled as the
    blocks are read (events, merged repeats, invalid rows skipped).
    """

    blocks: Iterable[Block]
    universes: Mapping[str, tuple[str, ...]]
    """Each group's recommendable ids: the denominator of coverage."""
    name: str = ""
    stats: dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------- OULAD


def _merge_repeats(events: list[Event], stats: dict[str, int]) -> list[Event]:
    """One click event per (learner, resource) of the day, its ``count`` the sum of the repeats.

    ``read_oulad`` yields each repeated ``studentVle`` row as an event of its own (ids ``#2``,
    ``#3``, ...); the first row's event is kept with the summed count (capped by the
    contract's 100,000).
    """
    merged: dict[tuple[str, str], int] = {}
    out: list[Event] = []
    for event in events:
        if isinstance(event, ClickEvent):
            key = (event.user_id, event.course_id)
            at = merged.get(key)
            if at is not None:
                first = out[at]
                total = min(first.count + event.count, 100_000)
                out[at] = first.model_copy(update={"count": total})
                stats["merged_repeats"] = stats.get("merged_repeats", 0) + 1
                continue
            merged[key] = len(out)
        out.append(event)
    return out


def _oulad_blocks(
    folder: Path,
    presentations: list[tuple[str, str]],
    resource_group: dict[str, str],
    universes: dict[str, tuple[str, ...]],
    last_day: int | None,
    max_learners: int | None,
    stats: dict[str, int],
) -> Iterator[Block]:
    group_start = {f"oulad:{m}-{c}": presentation_start(c) for m, c in presentations}
    end = None
    if last_day is not None:
        end = max(start.timestamp() + last_day * 86400 for start in group_start.values())
    history: dict[str, set[str]] = {}

    def block(day: datetime, events: list[Event]) -> Block:
        events = _merge_repeats(events, stats)
        new: dict[tuple[str, str], list[str]] = {}
        for event in events:
            if isinstance(event, ClickEvent) and event.course_id in resource_group:
                if event.course_id not in history.get(event.user_id, ()):
                    new.setdefault((event.user_id, resource_group[event.course_id]), []).append(event.course_id)
        steps = []
        for (user, group), relevant in new.items():
            taken = history.get(user, set())
            candidates = tuple(r for r in universes[group] if r not in taken)
            steps.append(Step(user, candidates, frozenset(relevant), frozenset(taken), group))
        for event in events:
            if isinstance(event, ClickEvent) and event.course_id in resource_group:
                history.setdefault(event.user_id, set()).add(event.course_id)
        stats["steps"] = stats.get("steps", 0) + len(steps)
        stats["events"] = stats.get("events", 0) + len(events)
        return Block(day, tuple(steps), tuple(events))

    day: datetime | None = None
    pending: list[Event] = []
    for result in read_oulad(folder, presentations=presentations, max_learners=max_learners):
        if isinstance(result, InvalidRow):
            stats["invalid_rows"] = stats.get("invalid_rows", 0) + 1
            continue
        if last_day is not None:
            group = resource_group.get(result.course_id) or result.course_id.split(":assessment:")[0]
            if (result.event_time - group_start[group]).days > last_day:
                if result.event_time.timestamp() > end:
                    break
                continue
        if result.event_time != day:
            if pending:
                yield block(day, pending)
            day, pending = result.event_time, []
        pending.append(result)
    if pending:
        yield block(day, pending)


def oulad_steps(
    folder: Path | str,
    presentations: Iterable[tuple[str, str]] = (("AAA", "2013J"),),
    *,
    last_day: int | None = None,
    max_learners: int | None = None,
) -> Steps:
    """The OULAD protocol of issue 5, streamed from the real files by :func:`read_oulad`.

    Days in increasing order. A step is a (learner, day) on which the learner clicks at least
    one resource of a presentation never clicked before; candidates are that presentation's
    VLE resources (``vle.csv``) the learner had not clicked before that day; relevant are the
    new resources clicked that day. After a day's steps are scored, the policies learn the
    day's clicks (repeated rows of a learner, resource and day merged into one event with the
    summed count) and the assessment scores submitted that day (quiz events).

    ``last_day`` keeps presentation days up to it (e.g. 30 for a quick slice; negative days,
    before the start, are kept); ``max_learners`` is passed to :func:`read_oulad`.
    Several presentations run side by side in calendar order, each its own group.
    """
    folder = Path(folder)
    presentations = [tuple(p) for p in presentations]
    universes: dict[str, list[str]] = {f"oulad:{m}-{c}": [] for m, c in presentations}
    resource_group: dict[str, str] = {}
    for entry in oulad_catalogue(folder, presentations=presentations):
        if ":vle:" in entry.course_id:
            universes[entry.part_of].append(entry.course_id)
            resource_group[entry.course_id] = entry.part_of
    frozen = {group: tuple(ids) for group, ids in universes.items()}
    stats: dict[str, int] = {}
    name = "oulad " + ", ".join(f"{m} {c}" for m, c in presentations)
    if last_day is not None:
        name += f" (days up to {last_day})"
    blocks = _oulad_blocks(folder, presentations, resource_group, frozen, last_day, max_learners, stats)
    return Steps(blocks, frozen, name, stats)


# ------------------------------------------------------------------- any event log


def prequential_steps(
    events: Iterable[Event | InvalidRow], catalogue: Iterable[str] | None = None, *, group: str = "all"
) -> Steps:
    """Time-ordered prequential steps over any event log (EdNet, JSON Lines, ...).

    A step is each event whose course is new for its learner; candidates are the catalogue
    minus what the learner had engaged with before; relevant is that course. Events of one
    timestamp form one moment: a learner's new courses at that time are one step, and none of
    them informs the others. ``catalogue`` defaults to every course id in the log (which
    reads the whole log first). Invalid rows are skipped; events must be in time order.
    """
    stats: dict[str, int] = {}
    if catalogue is None:
        events = [e for e in events if not isinstance(e, InvalidRow)]
        catalogue = sorted({e.course_id for e in events})
    universe = tuple(dict.fromkeys(catalogue))

    def blocks() -> Iterator[Block]:
        known = set(universe)
        taken: dict[str, set[str]] = {}
        moment: datetime | None = None
        pending: list[Event] = []

        def block() -> Block:
            new: dict[str, list[str]] = {}
            for event in pending:
                if event.course_id in known and event.course_id not in taken.get(event.user_id, ()):
                    courses = new.setdefault(event.user_id, [])
                    if event.course_id not in courses:
                        courses.append(event.course_id)
            steps = []
            for user, relevant in new.items():
                before = taken.get(user, set())
                candidates = tuple(c for c in universe if c not in before)
                steps.append(Step(user, candidates, frozenset(relevant), frozenset(before), group))
            for event in pending:
                taken.setdefault(event.user_id, set()).add(event.course_id)
            stats["steps"] = stats.get("steps", 0) + len(steps)
            stats["events"] = stats.get("events", 0) + len(pending)
            return Block(moment, tuple(steps), tuple(pending))

        for event in events:
            if isinstance(event, InvalidRow):
                stats["invalid_rows"] = stats.get("invalid_rows", 0) + 1
                continue
            if moment is not None and event.event_time < moment:
                raise ValueError(f"event {event.event_id} is out of time order")
            if event.event_time != moment:
                if pending:
                    yield block()
                moment, pending = event.event_time, []
            pending.append(event)
        if pending:
            yield block()

    return Steps(blocks(), {group: universe}, "event log", stats)


# ----------------------------------------------------------------------- the runner


class _Guarded:
    """A policy behind the harness's checks: its feed is never at or after ``now``."""

    def __init__(self, label: str, policy: Policy):
        if not isinstance(policy, Policy):
            raise PolicyError(f"{label}: {type(policy).__name__} does not implement the Policy protocol")
        self.label = label
        self.policy = policy
        self.latest: datetime | None = None
        self.learn_seconds = 0.0
        self.recommend_seconds = 0.0

    def learn_one(self, event: Event) -> None:
        if self.latest is None or event.event_time > self.latest:
            self.latest = event.event_time
        started = time.perf_counter()
        self.policy.learn_one(event)
        self.learn_seconds += time.perf_counter() - started

    def recommend(self, user_id: str, candidates: tuple[str, ...], allowed: frozenset[str], k: int, now: datetime) -> list[str]:
        if self.latest is not None and self.latest >= now:
            raise LeakageError(
                f"{self.label}: asked to score at {now.isoformat()} after learning an event of"
                f" {self.latest.isoformat()}: the step source does not keep the future out"
            )
        started = time.perf_counter()
        items = self.policy.recommend(user_id, candidates, k, now)
        self.recommend_seconds += time.perf_counter() - started
        if not isinstance(items, list) or len(items) > k or len(set(items)) != len(items):
            raise PolicyError(f"{self.label}: recommend must return a list of at most {k} distinct ids")
        if not allowed.issuperset(items):
            outside = [item for item in items if item not in allowed][:3]
            raise PolicyError(f"{self.label}: recommended {outside} which are not candidates for {user_id}")
        return items


@dataclass(frozen=True, slots=True)
class _Sealed:
    """A moment as the audit replays it: the questions, and a copy of its events for afterwards."""

    time: datetime
    queries: tuple[tuple[str, tuple[str, ...]], ...]
    events: tuple[Event, ...]


def _replay_withheld(label: str, factory: PolicyFactory, sealed: list[_Sealed], k: int, expected: list[list[str]]) -> None:
    """Run a fresh policy over the sealed moments and require the lists of the open run."""
    policy = _Guarded(label, factory())
    index = 0
    for moment in sealed:
        for user, candidates in moment.queries:
            items = policy.recommend(user, candidates, frozenset(candidates), k, moment.time)
            if items != expected[index]:
                raise LeakageError(
                    f"{label}: at {moment.time.isoformat()} for {user} it recommended {expected[index][:5]}"
                    f" when the moment's events were in the harness's memory, but {items[:5]} when they"
                    " were withheld: it reads the present (or is not deterministic)"
                )
            index += 1
        for event in moment.events:
            policy.learn_one(event)


def evaluate(
    log_or_steps: Steps | Iterable[Event | InvalidRow],
    policies: Mapping[str, PolicyFactory],
    k: int = 10,
    window: int = 1000,
    *,
    stride: int | None = None,
    prerequisites_met: PrerequisitesMet = no_prerequisites,
    audit: bool = False,
) -> Report:
    """Run every policy over the same steps, side by side, and report their metrics.

    ``log_or_steps`` is a :class:`Steps` (:func:`oulad_steps`, :func:`prequential_steps`) or a
    time-ordered event log (run as :func:`prequential_steps`). Each policy is built fresh by
    its factory. Per-window series are means over the last ``window`` steps, every ``stride``
    steps (default ``window // 2``). ``prerequisites_met`` is the prerequisite hook
    (:func:`~online.evaluation.metrics.no_prerequisites` by default: the rate is then 0.0).
    ``audit`` replays every policy with each moment's data withheld and raises
    :class:`LeakageError` if any list differs (it doubles the time).
    """
    if k < 1 or window < 1:
        raise ValueError("k and window must be at least 1")
    steps = log_or_steps if isinstance(log_or_steps, Steps) else prequential_steps(log_or_steps)
    stride = stride or max(1, window // 2)
    guarded = {label: _Guarded(label, factory()) for label, factory in policies.items()}
    lists: dict[str, list[list[str]]] = {label: [] for label in guarded}
    scores: dict[str, list[tuple[float, ...]]] = {label: [] for label in guarded}
    groups: list[str] = []
    stages: list[str] = []
    times: list[datetime] = []
    sealed: list[_Sealed] | None = [] if audit else None
    _run_open(steps.blocks, guarded, k, prerequisites_met, lists, scores, groups, stages, times, sealed)
    if sealed is not None:
        for label, factory in policies.items():
            _replay_withheld(label, factory, sealed, k, lists[label])
    return Report.build(
        source=steps.name,
        k=k,
        window=window,
        stride=stride,
        universes=steps.universes,
        groups=groups,
        times=times,
        lists=lists,
        scores=scores,
        stages=stages,
        stats=dict(steps.stats),
        audited=audit,
        seconds={
            label: {"learn": g.learn_seconds, "recommend": g.recommend_seconds} for label, g in guarded.items()
        },
    )


def _run_open(
    blocks: Iterable[Block],
    guarded: Mapping[str, _Guarded],
    k: int,
    prerequisites_met: PrerequisitesMet,
    lists: dict[str, list[list[str]]],
    scores: dict[str, list[tuple[float, ...]]],
    groups: list[str],
    stages: list[str],
    times: list[datetime],
    sealed: list[_Sealed] | None,
) -> None:
    previous: datetime | None = None
    learned: dict[str, int] = {}  # events learned of each learner so far
    for block in blocks:
        if previous is not None and block.time <= previous:
            raise LeakageError(f"moments out of order: {block.time.isoformat()} after {previous.isoformat()}")
        previous = block.time
        for step in block.steps:
            allowed = frozenset(step.candidates)
            groups.append(step.group)
            stages.append("new" if learned.get(step.user_id, 0) < NEW_LEARNER_EVENTS else "established")
            times.append(block.time)
            for label, policy in guarded.items():
                items = policy.recommend(step.user_id, step.candidates, allowed, k, block.time)
                lists[label].append(items)
                scores[label].append(step_scores(items, step.relevant, k, step.taken, prerequisites_met))
        if sealed is not None:
            queries = tuple((step.user_id, step.candidates) for step in block.steps)
            sealed.append(_Sealed(block.time, queries, copy.deepcopy(block.events)))
        for event in block.events:
            learned[event.user_id] = learned.get(event.user_id, 0) + 1
            for policy in guarded.values():
                policy.learn_one(event)


__all__ = [
    "METRICS",
    "Block",
    "Event",
    "LeakageError",
    "NEW_LEARNER_EVENTS",
    "Policy",
    "PolicyError",
    "PolicyFactory",
    "Step",
    "Steps",
    "evaluate",
    "oulad_steps",
    "prequential_steps",
]
