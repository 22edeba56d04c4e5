"""A learner's profile: decayed interest, what they took, what they master; updated idempotently.

**Interest.** The engagement-weighted mean of the vectors of the courses a learner engaged
with, each weight halved every ``half_life_days`` of event time before the learner's latest
event. Because the weights depend on event time and not on arrival order, late or
out-of-order events land exactly where they belong: the same events in any order give the
same profile (up to rounding).

**Media interests.** The same decayed mean, one per media modality (``online.catalogue.MODALITIES``),
of the reduced vectors (:data:`~online.catalogue.MEDIA_DIM` dimensions) of the engaged courses that
have that modality: a course without an image moves no image interest. A learner without an
interest in a modality is unknown to it (its similarity feature is neutral).

**Knowledge.** Quiz answers update a per-skill mastery estimate (``online.mastery``) when a
mastery model is passed to :meth:`LearnerProfile.learn_one`.

**Exactly once in effect.** At-least-once delivery redelivers events after a crash or
rebalance. A profile remembers the highest source offset it applied (a learner's events all
live in one partition, so offsets order them) and hashes of its 16 most recent event ids;
:meth:`LearnerProfile.learn_one` skips anything already applied.

**Size.** A serialised profile stays within :data:`MAX_BYTES` (2 KB) for any history the event
contract accepts, every modality on. Worst cases in msgpack bytes:

============================================  ======  =========================================
part                                          bytes   bound
============================================  ======  =========================================
text interest, int8 (MiniLM)                  387     one byte a dimension
taken courses, Bloom filter                   387     fixed (``online.bloom``)
media interests, int8, image and video        119     :data:`~online.catalogue.MEDIA_DIM` each
recent course ids                             273     :data:`RECENT_BYTES` of UTF-8
recent dismissals                             194     ``online.dismissals``
event-id hashes, latent factors               148     :data:`RECENT_EVENT_IDS`, 20 float32s
language, context, model version              134     16 characters, a context key, 32 bytes
watermark, counters, times, field names        94     fixed
knowledge state                               the rest, at least 312
============================================  ======  =========================================

The recent course ids kept are the newest of the last :data:`RECENT_COURSES` that fit in
:data:`RECENT_BYTES` together (an id is up to 256 characters: a newest id that alone does not fit
leaves none). The context is kept as its key (``online.catalogue.context_key``: a long ``part_of``
by its hash). The knowledge state is the one part that grows: a full one with short skill tags
(16 skills, 8 courses, 128 missed questions) takes about 540 bytes and fits beside every other
part at its usual size. When the row would exceed the limit, the knowledge state forgets what it
least needs first (:meth:`~online.mastery.KnowledgeState.shrink`) and :attr:`LearnerProfile.forgotten`
says how much (the worker counts it in ``coursestream_knowledge_forgotten``);
:meth:`LearnerProfile.to_bytes` raises :class:`ProfileTooLarge` rather than write more (a ranking
vector far larger than 384 dimensions would).

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
>>> restored = LearnerProfile.from_bytes(profile.to_bytes())
>>> restored.recent, restored.has_taken("c1"), restored.has_taken("c3")
(['c1', 'c2'], True, False)
>>> restored.interest.round(2)  # int8-quantised: within 1% of the largest component
array([0.34, 0.67], dtype=float32)
>>> _ = profile.learn_one(click(3, "c3", 15), np.array([0.0, 1.0]), offset=2, media={"image": np.array([0.6, 0.8])})
>>> round(profile.media_similarity("image", np.array([0.6, 0.8])), 6), profile.media_similarity("video", np.array([1.0, 0.0]))
(1.0, None)
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgpack
import numpy as np

from online.bloom import BloomFilter
from online.catalogue import context_key
from online.dismissals import Dismissals
from online.events import ClickEvent, QuizEvent, VideoEvent
from online.mastery import KnowledgeState, MasteryModel, answer_of
from online.signals import engagement

#: Hard limit on a serialised profile.
MAX_BYTES = 2048
#: Event ids remembered (as hashes) besides the offset watermark: catches a producer's retried sends.
RECENT_EVENT_IDS = 16
#: Most recently engaged courses kept by id (for explanations and re-basing the interest).
RECENT_COURSES = 8
#: UTF-8 bytes those ids may take together: eight ids of up to 32 bytes, or fewer longer ones.
RECENT_BYTES = 256
SECONDS_PER_DAY = 86_400.0


@dataclass
class MediaInterest:
    """A learner's interest in one media modality: a decayed mean of reduced vectors, and its weight."""

    vector: np.ndarray
    weight: float


class ProfileTooLarge(ValueError):
    """A profile that does not fit in :data:`MAX_BYTES` even without its knowledge state."""


def _fitting(recent: list[str]) -> list[str]:
    """The newest of ``recent`` (oldest first) whose ids fit in :data:`RECENT_BYTES` together."""
    kept, size = 0, 0
    for course_id in reversed(recent[-RECENT_COURSES:]):
        size += len(course_id.encode())
        if size > RECENT_BYTES:
            break
        kept += 1
    return recent[len(recent) - kept :]


@functools.lru_cache(maxsize=256)
def _event_hash(event_id: str) -> int:
    """The 4-byte hash of an event id; cached, as the recommender's :meth:`~LearnerProfile.seen` and the
    profile's :meth:`~LearnerProfile.mark_applied` ask for the same event's one after the other."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=4).digest(), "little")


def _quantise(vector: np.ndarray) -> tuple[bytes, float]:
    scale = float(np.abs(vector).max()) / 127 or 1.0
    return np.rint(vector / scale).astype(np.int8).tobytes(), scale  # rint: np.round's own op, without its wrapper


def _dequantise(raw: bytes, scale: float) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.int8) * np.float32(scale)  # int8 times a float32 is float32


def _mean(interest: np.ndarray | None, weight: float, vector: np.ndarray, added: float) -> tuple[np.ndarray, float]:
    """``interest`` of ``weight`` with ``vector`` of weight ``added`` averaged in, and the new weight."""
    if interest is None:
        return vector.astype(np.float32), added
    total = weight + added
    mixed = interest * weight + vector * added
    mixed /= total  # in place: the same dtype and values as a new quotient, one array fewer
    return mixed.astype(np.float32, copy=False), total


def _packed_knowledge(knowledge: KnowledgeState) -> dict:
    """The knowledge state's dict with its missed questions' 2-byte hashes packed as bytes (msgpack
    takes 3 bytes for each as an int)."""
    state = knowledge.to_dict()
    state["m"] = struct.pack(f"<{len(state['m'])}H", *state["m"])  # as numpy's "<u2" would, faster for a short list
    return state


def _unpacked_knowledge(state: dict) -> dict:
    """Inverse of :func:`_packed_knowledge`; a row with the hashes as a list of ints reads as it is."""
    missed = state.get("m")
    return {**state, "m": list(struct.unpack(f"<{len(missed) // 2}H", missed))} if isinstance(missed, bytes) else state


@dataclass
class LearnerProfile:
    interest: np.ndarray | None = None
    weight: float = 0.0
    latest_time: float = 0.0
    recent: list[str] = field(default_factory=list)
    taken: BloomFilter = field(default_factory=BloomFilter)
    taken_count: int = 0
    applied_offset: int = -1
    recent_event_hashes: list[int] = field(default_factory=list)
    events: int = 0
    half_life_days: float = 14.0
    vector_version: str | None = None
    knowledge: KnowledgeState = field(default_factory=KnowledgeState)
    #: Where the learner is now: the ``part_of`` (module, programme) of their latest course.
    context: str | None = None
    #: The language of the learner's latest course: candidates are searched in it.
    language: str | None = None
    #: The learner's latent factors (``online.factorization``); None before their first event.
    factors: np.ndarray | None = None
    #: Courses the learner dismissed lately, hidden from their lists for a while.
    dismissed: Dismissals = field(default_factory=Dismissals)
    #: The learner's interest in each media modality they engaged with (see the module).
    media: dict[str, MediaInterest] = field(default_factory=dict)
    #: Knowledge entries the latest :meth:`to_bytes` forgot to fit the row (not stored).
    forgotten: int = field(default=0, compare=False)

    def has_taken(self, course_id: str) -> bool:
        """Whether the learner engaged with the course (rarely a false yes: see ``online.bloom``)."""
        return course_id in self.recent or course_id in self.taken

    def similarity(self, vector: np.ndarray) -> float:
        """Cosine between the learner's interest and a course vector; 0 without an interest yet."""
        if self.interest is None:
            return 0.0
        norm = float(np.linalg.norm(self.interest) * np.linalg.norm(vector))
        return float(self.interest @ vector) / norm if norm else 0.0

    def media_similarity(self, modality: str, vector: np.ndarray | None) -> float | None:
        """Cosine between the learner's interest in ``modality`` and a course's reduced vector of
        it; None (unknown) when either is missing."""
        interest = self.media.get(modality)
        if interest is None or vector is None:
            return None
        norm = float(np.linalg.norm(interest.vector) * np.linalg.norm(vector))
        return float(interest.vector @ vector) / norm if norm else None

    def seen(self, event_id: str, offset: int | None) -> bool:
        """Whether this event was already applied (by offset watermark or recent id)."""
        return (offset is not None and offset <= self.applied_offset) or _event_hash(event_id) in self.recent_event_hashes

    def mark_applied(self, event_id: str, offset: int | None) -> bool:
        """Remember a message of the learner as applied (watermark, recent ids); False, changing
        nothing, if it already was."""
        if self.seen(event_id, offset):
            return False
        if offset is not None:
            self.applied_offset = offset
        self.recent_event_hashes = [*self.recent_event_hashes[-(RECENT_EVENT_IDS - 1) :], _event_hash(event_id)]
        return True

    def learn_one(
        self,
        event: ClickEvent | VideoEvent | QuizEvent,
        course_vector: np.ndarray | None,
        offset: int | None = None,
        mastery: MasteryModel | None = None,
        context: str | None = None,
        language: str | None = None,
        media: Mapping[str, np.ndarray] | None = None,
    ) -> bool:
        """Apply one event; returns False (and changes nothing) if it was already applied.

        ``course_vector`` is the engaged course's vector, or None when the course is not
        indexed yet: the event still counts (taken, watermark) but moves no interest;
        ``media`` its reduced vector of each media modality it has.
        ``mastery`` learns from quiz answers into this profile's knowledge state; ``context``
        and ``language`` are the course's ``part_of`` and ``language``, if known.
        """
        if not self.mark_applied(event.event_id, offset):
            return False
        self.events += 1
        if not self.has_taken(event.course_id):
            self.taken_count += 1
        self.taken.add(event.course_id)
        if event.course_id in self.recent:
            self.recent.remove(event.course_id)
        self.recent = _fitting([*self.recent, event.course_id])
        if context:
            self.context = context_key(context)
        self.language = language or self.language
        if course_vector is not None:
            self._move_interests(event.event_time.timestamp(), engagement(event), course_vector, media or {})
        if mastery is not None and isinstance(event, QuizEvent):
            mastery.learn_one(answer_of(event), event.outcome, state=self.knowledge)
        return True

    def _move_interests(self, time: float, weight: float, vector: np.ndarray, media: Mapping[str, np.ndarray]) -> None:
        half_life = self.half_life_days * SECONDS_PER_DAY
        if self.interest is None:
            self.latest_time = time
        elif time > self.latest_time:
            decay = 0.5 ** ((time - self.latest_time) / half_life)
            self.weight *= decay
            for interest in self.media.values():
                interest.weight *= decay
            self.latest_time = time
        else:
            weight *= 0.5 ** ((self.latest_time - time) / half_life)
        self.interest, self.weight = _mean(self.interest, self.weight, vector, weight)
        for modality, reduced in media.items():
            old = self.media.get(modality)
            self.media[modality] = MediaInterest(*_mean(old and old.vector, old.weight if old else 0.0, reduced, weight))

    def rebase(self, vectors: Sequence[np.ndarray], version: str | None,
               media: Mapping[str, Sequence[np.ndarray]] | None = None) -> None:
        """Move the interest into the space of another encoder model version.

        Vectors of different models are not comparable, so the interest is re-derived as the
        mean of the new-model vectors of recently taken courses (``media``: their reduced vectors
        by modality, likewise); the decayed weight stays.

        >>> profile = LearnerProfile(interest=np.array([1.0, 0.0]), weight=2.0, vector_version="v1")
        >>> profile.rebase([np.array([0.0, 1.0]), np.array([0.0, 0.5])], "v2")
        >>> profile.interest, profile.vector_version
        (array([0.  , 0.75], dtype=float32), 'v2')
        """
        self.vector_version = version
        self.interest = np.mean(vectors, axis=0).astype(np.float32) if len(vectors) else None
        if self.interest is None:
            self.weight = 0.0
        self.media = {modality: MediaInterest(np.mean(reduced, axis=0).astype(np.float32), self.weight)
                      for modality, reduced in (media or {}).items() if len(reduced)}

    def _state(self) -> dict:
        interest, scale = _quantise(self.interest) if self.interest is not None else (None, 1.0)
        return {
            "i": interest, "q": scale, "w": self.weight, "t": self.latest_time, "r": self.recent,
            "b": self.taken.to_bytes(), "c": self.taken_count, "o": self.applied_offset,
            "h": struct.pack(f"<{len(self.recent_event_hashes)}I", *self.recent_event_hashes), "n": self.events,
            "l": self.half_life_days, "v": self.vector_version, "k": _packed_knowledge(self.knowledge), "x": self.context, "g": self.language,
            "f": None if self.factors is None else self.factors.astype("<f4").tobytes(),
            "d": self.dismissed.to_bytes() if self.dismissed else None,
            "m": {modality: [*_quantise(interest.vector), interest.weight] for modality, interest in self.media.items()},
        }

    def _fitted(self) -> tuple[bytes, dict]:
        """The row within :data:`MAX_BYTES` and the state it packs (see :meth:`to_bytes`)."""
        state = self._state()
        raw, self.forgotten = msgpack.packb(state), 0
        while len(raw) > MAX_BYTES and self.knowledge.shrink():
            self.forgotten += 1
            state["k"] = _packed_knowledge(self.knowledge)
            raw = msgpack.packb(state)
        if len(raw) > MAX_BYTES:
            raise ProfileTooLarge(f"a profile of {len(raw)} bytes without a knowledge state, over the {MAX_BYTES} limit")
        return raw, state

    def to_bytes(self) -> bytes:
        """msgpack, within :data:`MAX_BYTES`: the knowledge state forgets what it least needs first
        (:meth:`~online.mastery.KnowledgeState.shrink`, counted in :attr:`forgotten`);
        :class:`ProfileTooLarge` if it cannot fit."""
        return self._fitted()[0]

    def stored(self) -> tuple[bytes, LearnerProfile]:
        """The row :meth:`to_bytes` gives, and the profile :meth:`from_bytes` reads from it, made from
        the state the row packs without unpacking it.

        The row quantises the interests and rounds the knowledge state, and decoding then encoding a
        profile does not always give the same row; so whoever keeps a profile between events keeps
        the stored one, and learns each event from exactly what a reader of the row (a replay after
        a crash) would. This profile stays as it was learned, but for what its knowledge state
        forgets to fit: the list of the event just learned is ranked with it.

        >>> profile = LearnerProfile(interest=np.array([0.3, 0.5], dtype=np.float32), weight=1.0)
        >>> row, kept = profile.stored()
        >>> row == profile.to_bytes(), kept.interest.tolist() == LearnerProfile.from_bytes(row).interest.tolist()
        (True, True)
        >>> profile.interest.tolist() == kept.interest.tolist()
        False
        """
        raw, state = self._fitted()
        return raw, self._decoded(state)

    @classmethod
    def from_bytes(cls, raw: bytes) -> LearnerProfile:
        """The profile a row of :meth:`to_bytes` holds."""
        return cls._decoded(msgpack.unpackb(raw))

    @classmethod
    def _decoded(cls, state: dict) -> LearnerProfile:
        """The profile of a state as :meth:`_state` makes it, or as msgpack unpacks it from a row."""
        return cls(
            interest=_dequantise(state["i"], state["q"]) if state["i"] else None,
            weight=state["w"],
            latest_time=state["t"],
            recent=list(state["r"]),  # its own: :meth:`_state` shares the profile's, and learning changes it in place
            taken=BloomFilter(state["b"]),
            taken_count=state["c"],
            applied_offset=state["o"],
            recent_event_hashes=list(struct.unpack(f"<{len(state['h']) // 4}I", state["h"])),
            events=state["n"],
            half_life_days=state["l"],
            vector_version=state["v"],
            knowledge=KnowledgeState.from_dict(_unpacked_knowledge(state["k"])),
            context=state.get("x"),
            language=state.get("g"),
            factors=np.frombuffer(state["f"], dtype="<f4").copy() if state.get("f") else None,
            dismissed=Dismissals.from_bytes(state["d"]) if state.get("d") else Dismissals(),
            media={modality: MediaInterest(_dequantise(raw, scale), weight)
                   for modality, (raw, scale, weight) in (state.get("m") or {}).items()},
        )
