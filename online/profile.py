"""A learner's profile: decayed interest in course-embedding space, idempotently updated.

The interest vector is the engagement-weighted mean of the vectors of the courses a
learner engaged with, each weight halved every ``half_life_days`` of event time before
the learner's latest event. Because the weights depend on event time and not on arrival
order, late or out-of-order events land exactly where they belong: the same events in
any order give the same profile (up to float rounding).

At-least-once delivery redelivers events after a crash or rebalance. A profile remembers
the highest source offset it applied (a learner's events all live in one partition, so
offsets order them) and the ids of its most recent events; :meth:`LearnerProfile.learn_one`
skips anything it has already applied, so no event is counted twice.

>>> import numpy as np
>>> from datetime import datetime, timezone
>>> from online.events import ClickEvent
>>> def click(i, course, day):
...     return ClickEvent(event_id=f"e{i}", user_id="u1", course_id=course, action="open",
...                       event_time=datetime(2024, 5, day, tzinfo=timezone.utc))
>>> profile = LearnerProfile()
>>> profile.learn_one(click(1, "c1", 1), np.array([1.0, 0.0]), offset=0)
True
>>> profile.learn_one(click(1, "c1", 1), np.array([1.0, 0.0]), offset=0)  # redelivered
False
>>> profile.learn_one(click(2, "c2", 15), np.array([0.0, 1.0]), offset=1)
True
>>> profile.interest.round(2)  # c1 was 14 days (one half-life) earlier
array([0.33, 0.67], dtype=float32)
>>> LearnerProfile.from_bytes(profile.to_bytes()).taken
['c1', 'c2']
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from online.events import ClickEvent, QuizEvent, VideoEvent
from online.signals import engagement

#: Event ids remembered besides the offset watermark: catches a producer's retried sends.
RECENT_EVENT_IDS = 16
SECONDS_PER_DAY = 86_400.0


@dataclass
class LearnerProfile:
    interest: np.ndarray | None = None
    weight: float = 0.0
    latest_time: float = 0.0
    taken: list[str] = field(default_factory=list)
    applied_offset: int = -1
    recent_event_ids: list[str] = field(default_factory=list)
    events: int = 0
    half_life_days: float = 14.0
    vector_version: str | None = None

    def seen(self, event_id: str, offset: int | None) -> bool:
        """Whether this event was already applied (by offset watermark or recent id)."""
        return (offset is not None and offset <= self.applied_offset) or event_id in self.recent_event_ids

    def learn_one(
        self, event: ClickEvent | VideoEvent | QuizEvent, course_vector: np.ndarray | None, offset: int | None = None
    ) -> bool:
        """Apply one event; returns False (and changes nothing) if it was already applied.

        ``course_vector`` is the engaged course's vector, or None when the course is not
        indexed yet: the event still counts (taken, watermark) but moves no interest.
        """
        if self.seen(event.event_id, offset):
            return False
        if offset is not None:
            self.applied_offset = offset
        self.recent_event_ids = [*self.recent_event_ids[-(RECENT_EVENT_IDS - 1) :], event.event_id]
        self.events += 1
        if event.course_id in self.taken:
            self.taken.remove(event.course_id)
        self.taken.append(event.course_id)
        if course_vector is not None:
            self._move_interest(event.event_time.timestamp(), engagement(event), course_vector)
        return True

    def _move_interest(self, time: float, weight: float, vector: np.ndarray) -> None:
        half_life = self.half_life_days * SECONDS_PER_DAY
        if self.interest is None:
            self.interest, self.weight, self.latest_time = vector.astype(np.float32), weight, time
            return
        if time > self.latest_time:
            self.weight *= 0.5 ** ((time - self.latest_time) / half_life)
            self.latest_time = time
        else:
            weight *= 0.5 ** ((self.latest_time - time) / half_life)
        total = self.weight + weight
        self.interest = ((self.interest * self.weight + vector * weight) / total).astype(np.float32)
        self.weight = total

    def rebase(self, vectors: Sequence[np.ndarray], version: str | None) -> None:
        """Move the interest into the space of another encoder model version.

        Vectors of different models are not comparable, so the interest is re-derived as the
        mean of the new-model vectors of recently taken courses; the decayed weight stays.

        >>> profile = LearnerProfile(interest=np.array([1.0, 0.0]), weight=2.0, vector_version="v1")
        >>> profile.rebase([np.array([0.0, 1.0]), np.array([0.0, 0.5])], "v2")
        >>> profile.interest, profile.vector_version
        (array([0.  , 0.75], dtype=float32), 'v2')
        """
        self.vector_version = version
        self.interest = np.mean(vectors, axis=0).astype(np.float32) if len(vectors) else None
        if self.interest is None:
            self.weight = 0.0

    def to_bytes(self) -> bytes:
        """Compact JSON: the interest vector as base64 float16 (768 bytes for 384 dimensions)."""
        state = {
            "i": base64.b64encode(self.interest.astype(np.float16).tobytes()).decode() if self.interest is not None else None,
            "w": round(self.weight, 6),
            "t": self.latest_time,
            "taken": self.taken,
            "o": self.applied_offset,
            "ids": self.recent_event_ids,
            "n": self.events,
            "h": self.half_life_days,
            "v": self.vector_version,
        }
        return json.dumps(state, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> LearnerProfile:
        state = json.loads(raw)
        interest = state["i"]
        return cls(
            interest=np.frombuffer(base64.b64decode(interest), dtype=np.float16).astype(np.float32) if interest else None,
            weight=state["w"],
            latest_time=state["t"],
            taken=state["taken"],
            applied_offset=state["o"],
            recent_event_ids=state["ids"],
            events=state["n"],
            half_life_days=state["h"],
            vector_version=state["v"],
        )
