"""The event contract: learner events in, course content in, recommendations out.

These models are the single source of truth: the JSON Schema files that downstream
subscribers use (``schemas/*.json``) are generated from them (``coursestream schemas``),
and a test checks that the committed files match.

Every learner event carries ``event_id`` (unique per event; a replayed log reuses the
same ids so nothing is counted twice) and ``event_time`` (when it happened, with a
time zone). Topics that carry a learner's events are keyed by ``user_id``.

>>> event = parse_learner_event(
...     b'{"kind": "click", "event_id": "e1", "user_id": "u1", "course_id": "c1",'
...     b' "event_time": "2024-05-01T10:00:00Z", "action": "open"}'
... )
>>> event.kind, event.user_id, event.count
('click', 'u1', 1)
>>> parse_learner_event(b'{"kind": "video", "event_id": "e2"}')
Traceback (most recent call last):
...
online.events.InvalidEvent: video.user_id: Field required; video.course_id: Field required; ...
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

T = TypeVar("T")
#: No control characters: ids end up in message keys, logs and file names.
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
Id = Annotated[str, StringConstraints(min_length=1, max_length=256, strip_whitespace=True, pattern=_PRINTABLE)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True, pattern=_PRINTABLE)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]

#: Events stamped further ahead than this are rejected: clocks drift, but not by days.
MAX_CLOCK_SKEW = timedelta(days=1)
#: Nothing in an online-learning log predates this.
EARLIEST_EVENT_TIME = datetime(1990, 1, 1, tzinfo=timezone.utc)
#: A video longer than this is not a lecture but a broken length field.
MAX_VIDEO_SECONDS = 24 * 3600.0


class InvalidEvent(ValueError):
    """A message that does not satisfy the contract; the text says why."""


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _plausible_time(value: datetime) -> datetime:
    if value < EARLIEST_EVENT_TIME:
        raise ValueError(f"event_time {value.isoformat()} is before {EARLIEST_EVENT_TIME.date()}")
    if value > datetime.now(timezone.utc) + MAX_CLOCK_SKEW:
        raise ValueError(f"event_time {value.isoformat()} is in the future")
    return value


class _LearnerEventBase(_Contract):
    event_id: Id = Field(description="Unique id of this event; replays reuse it.")
    user_id: Id = Field(description="The learner; also the Kafka message key.")
    course_id: Id = Field(description="The catalogue entry the learner engaged with.")
    event_time: AwareDatetime = Field(description="When it happened (RFC 3339 with offset).")

    _plausible_time = field_validator("event_time")(_plausible_time)


class ClickEvent(_LearnerEventBase):
    """A learner opened, enrolled in, bookmarked... something in a course: weak evidence."""

    kind: Literal["click"] = "click"
    item_id: Id | None = Field(None, description="The page, resource or lecture inside the course.")
    action: Tag = Field(description="What was done: open, enroll, bookmark, resource, ...")
    count: int = Field(1, ge=1, le=100_000, description="Clicks aggregated in this event.")


class VideoEvent(_LearnerEventBase):
    """A stretch of video watching, reported when the player pauses, seeks or closes."""

    kind: Literal["video"] = "video"
    video_id: Id
    watched_seconds: NonNegative = Field(description="Seconds of video played in this stretch.")
    position_seconds: NonNegative = Field(description="Player position when reported.")
    video_length_seconds: Annotated[float, Field(gt=0, le=MAX_VIDEO_SECONDS, allow_inf_nan=False)]
    playback_rate: Annotated[float, Field(gt=0, le=16, allow_inf_nan=False)] = 1.0

    @model_validator(mode="after")
    def _within_video(self) -> VideoEvent:
        if self.position_seconds > self.video_length_seconds:
            raise ValueError("position_seconds is past the end of the video")
        # Re-watching may play a video more than once, but not a hundred times in one report.
        if self.watched_seconds > 100 * self.video_length_seconds:
            raise ValueError("watched_seconds is over 100 times the video length")
        return self


class QuizEvent(_LearnerEventBase):
    """An answer to a quiz or question: evidence of mastery more than of interest."""

    kind: Literal["quiz"] = "quiz"
    quiz_id: Id
    question_id: Id | None = None
    skill_tags: list[Tag] = Field(default_factory=list, max_length=64)
    score: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = Field(
        None, description="Fraction of the marks, 0 to 1."
    )
    correct: bool | None = None
    attempt: int = Field(1, ge=1, le=1000)

    @model_validator(mode="after")
    def _has_outcome(self) -> QuizEvent:
        if self.score is None and self.correct is None:
            raise ValueError("a quiz event needs score or correct")
        return self

    @property
    def outcome(self) -> float:
        """The result as a fraction: ``score`` when given, else 1.0 or 0.0 from ``correct``."""
        return self.score if self.score is not None else float(bool(self.correct))


LearnerEvent = Annotated[ClickEvent | VideoEvent | QuizEvent, Field(discriminator="kind")]
_learner_event = TypeAdapter(LearnerEvent)

#: A message larger than this is rejected before parsing.
MAX_EVENT_BYTES = 64 * 1024


def validation_reason(error: ValidationError) -> str:
    """One line naming each invalid field and what is wrong with it."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "message"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


class ForgetRequest(_Contract):
    """A privacy request: delete what the workers keep about one learner (``coursestream forget``).

    It travels on the learner-events topic, keyed by ``user_id``, so the worker that owns the
    learner handles it after every event sent before it.
    """

    kind: Literal["forget"] = "forget"
    request_id: Id = Field(description="Names the request in the audit log.")
    user_id: Id
    requested_at: AwareDatetime


#: Most courses one rank request may ask about (a message stays well within ``MAX_EVENT_BYTES``).
MAX_RANK_CANDIDATES = 1000


class RankRequest(_Contract):
    """Ask the learner's worker to rank these courses for the learner now: a platform's own shelf,
    or a step of ``coursestream evaluate --through-kafka``.

    Sent on the learner-events topic keyed by ``user_id``, so it is answered after every earlier
    event of the learner (and of their partition), from the worker's state then. The answer is a
    :class:`Recommendation` on the recommendations topic whose ``trigger.event_id`` is this
    request's ``event_id``: up to ``k`` of the ``candidates`` (those the worker has indexed, the
    learner has not taken and is ready for), best first. It changes no profile; the list becomes
    the learner's latest, which the re-ranker learns from at their next event.

    >>> request = parse_learner_message(
    ...     b'{"kind": "rank", "event_id": "r1", "user_id": "u1", "event_time": "2024-05-01T10:00:00Z",'
    ...     b' "candidates": ["c1", "c2"], "k": 1}'
    ... )
    >>> type(request).__name__, request.candidates
    ('RankRequest', ['c1', 'c2'])
    """

    kind: Literal["rank"] = "rank"
    event_id: Id = Field(description="Unique id of this request; the answer's trigger.event_id.")
    user_id: Id = Field(description="The learner; also the Kafka message key.")
    event_time: AwareDatetime = Field(description="The moment to rank for: it ages popularity and freshness.")
    candidates: list[Id] = Field(min_length=1, max_length=MAX_RANK_CANDIDATES, description="Course ids to rank.")
    k: int = Field(10, ge=1, le=100, description="Most courses in the answer.")

    _plausible_time = field_validator("event_time")(_plausible_time)


#: Stars of a rating: 1 (poor) to 5 (excellent).
RATING_STARS = (1, 5)


class Feedback(_LearnerEventBase):
    """A learner's explicit feedback on a recommended course: dismissed ("not for me"), or rated.

    Sent on the learner-events topic keyed by ``user_id``, like the learner's other events. The
    worker learns it (``online.feedback``): a dismissed course is not shown to the learner again
    for ``online.feedback.DISMISS_DAYS`` days of event time, and the re-ranker and the
    exploration bandit take a dismissal, or a rating of 1 or 2, as a negative and a rating of 4
    or 5 as a positive. It is not a use of the course: nothing is taken up. The learner gets a
    fresh list, as after any event.

    >>> feedback = parse_learner_message(
    ...     b'{"kind": "feedback", "event_id": "f1", "user_id": "u1", "course_id": "c1",'
    ...     b' "event_time": "2024-05-01T10:00:00Z", "action": "rate", "rating": 2}'
    ... )
    >>> type(feedback).__name__, feedback.action, feedback.rating
    ('Feedback', 'rate', 2)
    >>> parse_learner_message(
    ...     b'{"kind": "feedback", "event_id": "f2", "user_id": "u1", "course_id": "c1",'
    ...     b' "event_time": "2024-05-01T10:00:00Z", "action": "rate"}'
    ... )
    Traceback (most recent call last):
    ...
    online.events.InvalidEvent: feedback: Value error, a rating needs rating (1 to 5); a dismissal has none
    """

    kind: Literal["feedback"] = "feedback"
    action: Literal["dismiss", "rate"] = Field(description="dismiss: not for me; rate: stars given in rating.")
    rating: int | None = Field(None, ge=RATING_STARS[0], le=RATING_STARS[1],
                               description="Stars, 1 to 5: required when rating, absent when dismissing.")
    recommendation_id: Id | None = Field(
        None, description="trigger.event_id of the recommendation that showed the course, when known."
    )

    @model_validator(mode="after")
    def _rating_matches_action(self) -> Feedback:
        if (self.action == "rate") != (self.rating is not None):
            raise ValueError("a rating needs rating (1 to 5); a dismissal has none")
        return self


LearnerMessage = ClickEvent | VideoEvent | QuizEvent | Feedback | ForgetRequest | RankRequest
_learner_message = TypeAdapter(Annotated[LearnerMessage, Field(discriminator="kind")])


def _parse(adapter: TypeAdapter[T], raw: bytes | None, max_bytes: int, strict: bool | None = None) -> T:
    if raw is None:
        raise InvalidEvent("message has no value (a tombstone)")
    if len(raw) > max_bytes:
        raise InvalidEvent(f"message is {len(raw)} bytes, over the {max_bytes} limit")
    try:
        return adapter.validate_json(raw, strict=strict)
    except ValidationError as error:
        raise InvalidEvent(validation_reason(error)) from None


def parse_learner_message(raw: bytes | None) -> LearnerMessage:
    """What the learner-events topic carries: a learner event, a learner's :class:`Feedback`, a
    :class:`ForgetRequest` or a :class:`RankRequest`."""
    return _parse(_learner_message, raw, MAX_EVENT_BYTES, strict=True)


def parse_learner_event(raw: bytes | None, strict: bool = True) -> ClickEvent | VideoEvent | QuizEvent:
    """Validate one message as a learner event, or raise :class:`InvalidEvent` saying why.

    On the wire types are strict (``"count": "5"`` is rejected); ``strict=False`` is for
    logs whose format has no types (CSV cells are text).

    >>> parse_learner_event(b'{"kind": "click", "event_id": "e1", "user_id": "u1", "course_id": "c1",'
    ...                     b' "event_time": "2024-05-01T10:00:00Z", "action": "open", "count": "5"}')
    Traceback (most recent call last):
    ...
    online.events.InvalidEvent: click.count: Input should be a valid integer
    """
    return _parse(_learner_event, raw, MAX_EVENT_BYTES, strict)


class MediaRef(_Contract):
    """An image or video given by exactly one of: URL, local path, inline base64 bytes."""

    url: Annotated[str, StringConstraints(max_length=2048)] | None = None
    path: Annotated[str, StringConstraints(max_length=4096)] | None = None
    data: str | None = Field(None, description="Base64-encoded file contents.")

    @model_validator(mode="after")
    def _exactly_one(self) -> MediaRef:
        given = [name for name in ("url", "path", "data") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of url, path, data (got {given or 'none'})")
        return self


class VideoRef(MediaRef):
    transcript: str = ""


Level = Literal["beginner", "intermediate", "advanced"]


class CourseContent(_Contract):
    """A catalogue entry (a course, or a resource within one) to embed and recommend."""

    course_id: Id
    title: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    description: str = ""
    syllabus: str = ""
    skills: list[Tag] = Field(default_factory=list, max_length=256)
    level: Level | None = None
    prerequisites: list[Id] = Field(default_factory=list, max_length=256)
    language: Annotated[str, StringConstraints(min_length=2, max_length=16)] = "en"
    part_of: Id | None = Field(None, description="The programme or course presentation it belongs to.")
    images: list[MediaRef] = Field(default_factory=list, max_length=32)
    video: VideoRef | None = None


#: A course message larger than this is rejected before parsing (inline images make them big).
MAX_CONTENT_BYTES = 16 * 1024 * 1024
_course_content = TypeAdapter(CourseContent)


def parse_course_content(raw: bytes | None) -> CourseContent:
    """Validate one message as course content, or raise :class:`InvalidEvent` saying why."""
    return _parse(_course_content, raw, MAX_CONTENT_BYTES)


class Reason(_Contract):
    """Why an item is recommended, for machines (``code``) and people (``text``)."""

    code: str
    text: str
    course_id: str | None = Field(None, description="The course the reason refers to, if any.")
    value: float | None = None


class RecommendedItem(_Contract):
    course_id: str
    title: str | None = Field(None, description="The course's title in the catalogue (its id where it has none).")
    rank: int = Field(ge=1)
    score: float
    reasons: list[Reason]
    explore: bool = Field(False, description="Chosen to explore rather than by score.")
    exploration_arm: str | None = Field(None, description="How an exploring item was picked (the bandit's arm).")
    features: dict[str, float] = Field(
        default_factory=dict, description="The ranking features of the item for this learner (the re-ranker learns from them)."
    )


class Trigger(_Contract):
    """The learner event (or rank request) a recommendation answers; subscribers drop duplicates by event_id."""

    event_id: str
    kind: str
    event_time: datetime
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    ingested_at: datetime | None = Field(None, description="Broker timestamp of the event: freshness = generated_at - ingested_at.")


class Recommendation(_Contract):
    user_id: str
    generated_at: datetime
    trigger: Trigger
    coalesced: list[Trigger] = Field(
        default_factory=list,
        description="Earlier events of this learner, taken in the same batch, that this list also answers, oldest "
        "first: their own lists were not published (COURSESTREAM_COALESCE_BURSTS).",
    )
    items: list[RecommendedItem]
    policy: str = Field(description="Ranking policy / A-B variant that produced the list.")
    model_version: str = Field(description="Encoder model version of the vectors ranked.")


class ParkedContent(_Contract):
    """Course content the encoder could not take yet, parked on the retry topic."""

    content: CourseContent
    attempts: int = Field(ge=1, description="Failed attempts so far.")
    failures: int = Field(
        0, ge=0, description="Attempts on which the encoder failed while handling it (closed the connection, as a "
        "crash does, or answered 500); at COURSESTREAM_CONTENT_MAX_FAILURES it is dead-lettered instead.",
    )
    retry_at: datetime = Field(description="Not to be retried before this time.")
    last_error: str
    parked_at: datetime | None = Field(None, description="When it was first parked (its age is alerted on).")


class CourseIndexed(_Contract):
    """Announces that a course is embedded, stored, and recommendable from now on."""

    course_id: str
    model_version: str
    vectors: list[str] = Field(description="Names of the vectors stored for it.")
    indexed_at: datetime


#: Bytes of a bad message's value (and key) a dead letter keeps: the key and base64 of both must
#: fit the producer's 1 MB request limit, and a broker may hold larger messages than that.
DEAD_LETTER_KEEPS_BYTES = 192 * 1024


class DeadLetter(_Contract):
    """A message that could not be processed, kept with its original bytes and why."""

    topic: str
    partition: int | None
    offset: int | None
    key: str | None = Field(description="Base64 of the original key, if any.")
    value: str = Field(description="Base64 of the original value (its first value_kept_bytes if it is longer).")
    value_bytes: int = Field(0, ge=0, description="Size of the original value; the original stays at topic/partition/offset.")
    value_kept_bytes: int = Field(0, ge=0, description="How many of those bytes are in value.")
    reason: str
    error_type: str
    failed_at: datetime


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
