"""EdNet (Santa, a TOEIC app) logs as events, and its seven test parts as catalogue entries.

Choi Y. et al. EdNet: A Large-Scale Hierarchical Dataset in Education (2020),
github.com/riiid/ednet, CC BY-NC 4.0: read it, do not ship it.

**What is recommended.** A part of the TOEIC Listening & Reading test (Part 1 Photographs ...
Part 7 Reading Comprehension) is a course, ``ednet:part-{n}``; lectures, questions, bundles and
explanations are items inside it. EdNet-Contents has no titles and its tags are numbers, so
entries per lecture or question would all read alike; the parts have real descriptions
(:func:`ednet_catalogue`). Lectures of part 0 (outside the test parts) form ``ednet:part-0``;
lectures of part -1 have no part (and no video length) and map to no course.

**Ids.** ``user_id`` is ``ednet:{user}`` (the KT4 file name, or KT1's ``user_id`` column: the
same users). Skill tags are ``ednet:tag:{n}`` from the ``tags`` of EdNet-Contents (``-1``: none).
Item ids (``item_id``, ``video_id``, ``quiz_id`` = bundle, ``question_id``) are EdNet's own.
An event id is ``ednet:{kt4|kt1}:{user}:{timestamp}:`` + the row's identity: ``{action_type}:
{item_id}`` for KT4 (plus ``:{question_id}`` for the answers a submit scores), ``{question_id}``
for KT1; a repeated identity gets ``#2``, ``#3``, ... (KT1 repeats some rows exactly).

**KT4 mapping.** Rows are taken per learner in (timestamp, file row) order. Item ids start with
``b`` (bundle), ``e`` (explanation), ``l`` (lecture), ``q`` (question) or ``p`` (purchase).

================================  ===================================================================
``action_type`` (item)            result
================================  ===================================================================
``enter`` (b, e, l)               ClickEvent, ``action`` = ``open_bundle`` / ``open_explanation`` /
                                  ``open_lecture``, ``item_id`` = the item; InvalidRow for an item
                                  of no part (the lectures of part -1)
``respond`` (q)                   nothing yet: the last answer to each question counts when its
                                  bundle is submitted; entering the bundle again starts afresh
``submit`` (b)                    one QuizEvent per question answered since the bundle was entered:
                                  ``correct`` = answer == ``correct_answer``, ``quiz_id`` = bundle,
                                  ``question_id``, ``attempt`` = how often this learner has been
                                  scored on the question so far; questions left blank make none
``play_video`` (l)                starts a stretch of watching (a repeated play changes nothing)
``pause_video`` (l)               VideoEvent for the stretch: ``watched_seconds`` = wall-clock time
                                  since the play, ``position_seconds`` = the cursor; seeks and speed
                                  are not logged (cursor and clock disagree after a seek), so
                                  ``playback_rate`` stays 1; a pause while not playing: nothing
``quit`` (l, while playing)       VideoEvent as for a pause; position = cursor at the play + the
                                  time since
``quit`` (other)                  nothing
erase_choice, undo_erase_choice   skipped: steps of answering
play_audio, pause_audio           skipped: the audio of listening questions, part of answering them
pay, refund, enroll_coupon        skipped: purchases
anything else                     InvalidRow
================================  ===================================================================

A video stretch needs the lecture's ``video_length`` (ms) from ``lectures.csv``: where it is
-1 the stretch is an InvalidRow saying so (the contract requires a length), and so is a lecture
of part -1. The cursor sometimes runs past the listed length (up to 244 s in KT4: the listed
length is out of date): ``position_seconds`` is clamped into [0, length]. A play never paused
or quit is an InvalidRow at the end of the learner's log.

**KT1.** Each row is an answer already joined with its question: QuizEvent with ``correct``
from the ``correct`` column, ``quiz_id`` = ``bundle_id``, tags and part as above, ``attempt``
counted as in KT4. Rows are not in time order within a file; they are sorted per learner.

**Order.** Events are ordered by timestamp (ms), ties by user id, then by file row (KT4 rows
of one millisecond keep their file order, which the app wrote them in). Each learner's file
is read whole and sorted, so memory grows with the learners read: use ``max_learners``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import NamedTuple

from online.events import ClickEvent, CourseContent, QuizEvent, VideoEvent
from online.sources.files import CsvRecord, csv_records
from online.sources.results import (
    InvalidRow,
    ReadResult,
    SortKey,
    build_event,
    merge_in_time_order,
    row_event_id,
)

#: The parts of the TOEIC Listening & Reading test: title, section, what a learner does.
TOEIC_PARTS = {
    0: (
        "TOEIC lectures outside the test parts",
        None,
        "Lectures that EdNet files under part 0, not under one of the seven test parts.",
    ),
    1: (
        "TOEIC Part 1: Photographs",
        "Listening",
        "Listen to four statements about a photograph and choose the one that best describes it.",
    ),
    2: (
        "TOEIC Part 2: Question-Response",
        "Listening",
        "Listen to a question or statement and choose the best of three spoken responses.",
    ),
    3: (
        "TOEIC Part 3: Conversations",
        "Listening",
        "Listen to short conversations and answer questions about what the speakers say.",
    ),
    4: (
        "TOEIC Part 4: Talks",
        "Listening",
        "Listen to short talks by one speaker, such as announcements and messages, and answer questions.",
    ),
    5: (
        "TOEIC Part 5: Incomplete Sentences",
        "Reading",
        "Choose the word or phrase that best completes a sentence: grammar and vocabulary.",
    ),
    6: (
        "TOEIC Part 6: Text Completion",
        "Reading",
        "Fill the gaps in short texts such as e-mails and notices with words, phrases or sentences.",
    ),
    7: (
        "TOEIC Part 7: Reading Comprehension",
        "Reading",
        "Read single and multiple passages and answer questions about them.",
    ),
}

#: KT4 actions that make no event (see the mapping table).
SKIPPED_ACTIONS = frozenset(
    {"erase_choice", "undo_erase_choice", "play_audio", "pause_audio", "pay", "refund", "enroll_coupon"}
)

_ITEM_KINDS = {"b": "bundle", "e": "explanation", "l": "lecture", "q": "question"}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _time(milliseconds: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=milliseconds)


def _skill_tags(tags: str) -> tuple[str, ...]:
    """``1;2;179`` -> ``ednet:tag:1`` ...; ``-1`` means untagged."""
    return tuple(f"ednet:tag:{tag}" for tag in tags.split(";") if tag and tag != "-1")


def _part_course(part: int) -> str:
    return f"ednet:part-{part}"


class _Unmappable(Exception):
    """A row that cannot become an event; the message says why."""


@dataclass(frozen=True, slots=True)
class _Question:
    bundle: str
    explanation: str
    correct_answer: str
    part: int
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Lecture:
    part: int
    tags: tuple[str, ...]
    video_length_ms: int


@dataclass(frozen=True)
class _Contents:
    """EdNet-Contents: the questions and lectures, and the part of every item id."""

    questions: dict[str, _Question]
    lectures: dict[str, _Lecture]
    parts: dict[str, int]
    """Part of each question, bundle, explanation and lecture."""

    @classmethod
    def load(cls, folder: Path) -> _Contents:
        def records(name: str, columns: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
            for record in csv_records(folder / name, columns):
                if isinstance(record, InvalidRow):  # every log row depends on these: stop
                    raise ValueError(f"{record.source} row {record.row}: {record.reason}")
                yield record.values

        columns = ("question_id", "bundle_id", "explanation_id", "correct_answer", "part", "tags")
        questions = {
            question: _Question(bundle, explanation, answer, int(part), _skill_tags(tags))
            for question, bundle, explanation, answer, part, tags in records("questions.csv", columns)
        }
        columns = ("lecture_id", "part", "tags", "video_length")
        lectures = {
            lecture: _Lecture(int(part), _skill_tags(tags), int(length))
            for lecture, part, tags, length in records("lectures.csv", columns)
        }
        parts = {lecture: entry.part for lecture, entry in lectures.items()}
        for question, entry in questions.items():
            parts[question] = parts[entry.bundle] = parts[entry.explanation] = entry.part
        return cls(questions, lectures, parts)

    def course_of(self, item: str) -> str:
        """The course of an item id (question, bundle, explanation, lecture)."""
        part = self.parts.get(item)
        if part is None:
            raise _Unmappable(f"{item} is not in EdNet-Contents")
        if part < 0:
            raise _Unmappable(f"{item} has no TOEIC part in EdNet-Contents (part {part})")
        return _part_course(part)


class _Kt4Row(NamedTuple):
    timestamp: int
    row: int
    action: str
    item: str
    cursor: str
    answer: str
    raw: str


def _kt4_rows(path: Path, invalid: list[InvalidRow]) -> list[_Kt4Row]:
    """One learner's rows in (timestamp, file row) order; unreadable rows go to ``invalid``."""
    rows = []
    for record in csv_records(path, ("timestamp", "action_type", "item_id", "cursor_time", "user_answer")):
        if isinstance(record, InvalidRow):
            invalid.append(record)
            continue
        timestamp, action, item, cursor, answer = record.values
        if not timestamp.isdigit():
            invalid.append(
                InvalidRow(str(path), record.row, record.raw, f"timestamp {timestamp!r} is not in ms")
            )
            continue
        rows.append(_Kt4Row(int(timestamp), record.row, action, item, cursor, answer, record.raw))
    rows.sort(key=lambda row: (row.timestamp, row.row))
    return rows


class _Kt4Learner:
    """Turns one learner's KT4 rows, in time order, into results by the module's mapping table."""

    def __init__(self, user: str, source: str, contents: _Contents) -> None:
        self.user = user
        self.source = source
        self.contents = contents
        self.answers: dict[str, dict[str, str]] = {}  # bundle -> question -> last answer since entering
        self.playing: dict[str, tuple[_Kt4Row, int]] = {}  # lecture -> (its play row, cursor ms then)
        self.attempts: Counter[str] = Counter()  # question -> times scored
        self.repeats: Counter[tuple[int, str, str]] = Counter()
        self.handlers: dict[str, Callable[[_Kt4Row, int], list[ReadResult]]] = {
            "enter": self._enter,
            "respond": self._respond,
            "submit": self._submit,
            "play_video": self._play,
            "pause_video": self._pause,
            "quit": self._quit,
        }

    def results(self, rows: list[_Kt4Row]) -> Iterator[tuple[SortKey, ReadResult]]:
        for row in rows:
            identity = (row.timestamp, row.action, row.item)
            self.repeats[identity] += 1
            handler = self.handlers.get(row.action)
            try:
                if handler is None and row.action not in SKIPPED_ACTIONS:
                    raise _Unmappable(f"unknown action_type {row.action!r}")
                produced = [] if handler is None else handler(row, self.repeats[identity])
            except _Unmappable as problem:
                produced = [self._invalid(row, str(problem))]
            for result in produced:
                yield (row.timestamp, self.user), result
        for play, _ in self.playing.values():
            yield (rows[-1].timestamp, self.user), self._invalid(play, "play_video never paused or quit")

    def _invalid(self, row: _Kt4Row, reason: str) -> InvalidRow:
        return InvalidRow(self.source, row.row, row.raw, reason)

    def _event(
        self,
        model: type[ClickEvent | VideoEvent | QuizEvent],
        row: _Kt4Row,
        occurrence: int,
        *id_parts: str,
        **fields: object,
    ) -> ReadResult:
        """An event of ``row``; ``id_parts`` tell apart several events of one row."""
        return build_event(
            model,
            self.source,
            row.row,
            row.raw,
            event_id=row_event_id(
                "ednet:kt4", self.user, row.timestamp, row.action, row.item, *id_parts, occurrence=occurrence
            ),
            user_id=f"ednet:{self.user}",
            event_time=_time(row.timestamp),
            **fields,
        )

    def _enter(self, row: _Kt4Row, occurrence: int) -> list[ReadResult]:
        course = self.contents.course_of(row.item)
        kind = _ITEM_KINDS[row.item[0]]
        if kind == "bundle":
            self.answers[row.item] = {}
        return [
            self._event(
                ClickEvent, row, occurrence, course_id=course, action=f"open_{kind}", item_id=row.item
            )
        ]

    def _respond(self, row: _Kt4Row, occurrence: int) -> list[ReadResult]:
        question = self.contents.questions.get(row.item)
        if question is None:
            raise _Unmappable(f"{row.item} is not a question in EdNet-Contents")
        self.answers.setdefault(question.bundle, {})[row.item] = row.answer
        return []

    def _submit(self, row: _Kt4Row, occurrence: int) -> list[ReadResult]:
        course = self.contents.course_of(row.item)
        results = []
        for question_id, answer in self.answers.pop(row.item, {}).items():
            question = self.contents.questions[question_id]
            self.attempts[question_id] += 1
            results.append(
                self._event(
                    QuizEvent,
                    row,
                    occurrence,
                    question_id,
                    course_id=course,
                    quiz_id=row.item,
                    question_id=question_id,
                    skill_tags=list(question.tags),
                    correct=answer == question.correct_answer,
                    attempt=self.attempts[question_id],
                )
            )
        return results

    def _play(self, row: _Kt4Row, occurrence: int) -> list[ReadResult]:
        if row.item not in self.playing:
            self.playing[row.item] = (row, _cursor_ms(row))
        return []

    def _pause(self, row: _Kt4Row, occurrence: int) -> list[ReadResult]:
        if row.item not in self.playing:
            return []
        play, _ = self.playing.pop(row.item)
        return [self._video(row, occurrence, play, position_ms=_cursor_ms(row))]

    def _quit(self, row: _Kt4Row, occurrence: int) -> list[ReadResult]:
        if row.item not in self.playing:
            return []
        play, play_cursor = self.playing.pop(row.item)
        return [self._video(row, occurrence, play, position_ms=play_cursor + row.timestamp - play.timestamp)]

    def _video(self, row: _Kt4Row, occurrence: int, play: _Kt4Row, position_ms: int) -> ReadResult:
        course = self.contents.course_of(row.item)
        lecture = self.contents.lectures.get(row.item)
        if lecture is None:
            raise _Unmappable(f"{row.item} is not a lecture")
        length = lecture.video_length_ms
        if length <= 0:
            raise _Unmappable(f"lecture {row.item} has no video length in lectures.csv ({length})")
        return self._event(
            VideoEvent,
            row,
            occurrence,
            course_id=course,
            video_id=row.item,
            watched_seconds=(row.timestamp - play.timestamp) / 1000,
            position_seconds=min(max(position_ms, 0), length) / 1000,
            video_length_seconds=length / 1000,
        )


def _cursor_ms(row: _Kt4Row) -> int:
    if not row.cursor.isdigit():
        raise _Unmappable(f"cursor_time {row.cursor!r} is not in ms")
    return int(row.cursor)


def read_ednet_kt4(
    folder: Path | str, *, contents: Path | str | None = None, max_learners: int | None = None
) -> Iterator[ReadResult]:
    """EdNet-KT4 logs (``u*.csv``, one learner per file) as events, in event-time order.

    ``contents`` is the EdNet-Contents folder (default: ``contents`` beside ``folder``).
    ``max_learners`` reads only the first files in name order. Unreadable rows come first as
    :class:`InvalidRow`; rows that cannot be mapped come as InvalidRow at their time (the mapping
    is in the module docstring).
    """
    folder = Path(folder)
    loaded = _Contents.load(Path(contents) if contents is not None else folder.parent / "contents")
    invalid: list[InvalidRow] = []
    streams = []
    for path in sorted(folder.glob("u*.csv"))[:max_learners]:
        rows = _kt4_rows(path, invalid)
        streams.append(_Kt4Learner(path.stem, str(path), loaded).results(rows))
    yield from invalid
    yield from merge_in_time_order(streams)


_KT1_COLUMNS = ("user_id", "timestamp", "question_id", "bundle_id", "correct", "tags", "part")


def _kt1_rows(path: Path, invalid: list[InvalidRow]) -> list[tuple[int, CsvRecord]]:
    """A file's rows with their timestamps, in (timestamp, file row) order; bad ones to ``invalid``."""
    rows = []
    for record in csv_records(path, _KT1_COLUMNS):
        if isinstance(record, InvalidRow):
            invalid.append(record)
        elif not record.values[1].isdigit():
            invalid.append(
                InvalidRow(str(path), record.row, record.raw, f"timestamp {record.values[1]!r} is not in ms")
            )
        else:
            rows.append((int(record.values[1]), record))
    rows.sort(key=lambda item: (item[0], item[1].row))
    return rows


def _kt1_results(source: str, rows: list[tuple[int, CsvRecord]]) -> Iterator[tuple[SortKey, ReadResult]]:
    repeats: Counter[tuple[str, int, str]] = Counter()
    attempts: Counter[tuple[str, str]] = Counter()
    for timestamp, record in rows:
        user, _, question, bundle, correct, tags, part = record.values
        repeats[user, timestamp, question] += 1
        attempts[user, question] += 1
        if correct not in ("0", "1") or not part.isdigit():
            result: ReadResult = InvalidRow(
                source, record.row, record.raw, "correct must be 0 or 1 and part a number"
            )
        else:
            result = build_event(
                QuizEvent,
                source,
                record.row,
                record.raw,
                event_id=row_event_id(
                    "ednet:kt1", user, timestamp, question, occurrence=repeats[user, timestamp, question]
                ),
                user_id=f"ednet:{user}",
                course_id=_part_course(int(part)),
                event_time=_time(timestamp),
                quiz_id=bundle,
                question_id=question,
                skill_tags=list(_skill_tags(tags)),
                correct=correct == "1",
                attempt=attempts[user, question],
            )
        yield (timestamp, user), result


def read_ednet_kt1(folder: Path | str, *, max_learners: int | None = None) -> Iterator[ReadResult]:
    """EdNet-KT1 answers joined with their questions (``*.csv.gz``/``*.csv``, one learner per file).

    ``max_learners`` reads only the first files in name order. Unreadable rows come first as
    :class:`InvalidRow`; events follow in event-time order (see the module docstring).
    """
    folder = Path(folder)
    paths = sorted(path for path in folder.iterdir() if path.name.endswith((".csv", ".csv.gz")))
    invalid: list[InvalidRow] = []
    streams = [_kt1_results(str(path), _kt1_rows(path, invalid)) for path in paths[:max_learners]]
    yield from invalid
    yield from merge_in_time_order(streams)


def ednet_catalogue(contents: Path | str) -> Iterator[CourseContent]:
    """The TOEIC parts that EdNet-Contents (``questions.csv``, ``lectures.csv``) has items in.

    ``skills`` are the tags of the part's questions and lectures; EdNet gives no level.
    """
    loaded = _Contents.load(Path(contents))
    for part, (title, section, what) in TOEIC_PARTS.items():
        questions = [question for question in loaded.questions.values() if question.part == part]
        lectures = [lecture for lecture in loaded.lectures.values() if lecture.part == part]
        if not questions and not lectures:
            continue
        video_hours = (
            sum(lecture.video_length_ms for lecture in lectures if lecture.video_length_ms > 0) / 3_600_000
        )
        bundles = {question.bundle for question in questions}
        items = [f"{len(questions):,} questions in {len(bundles):,} bundles"] if questions else []
        items += [f"{len(lectures):,} lectures ({video_hours:.1f} hours of video)"] if lectures else []
        tags = {tag for entry in (*questions, *lectures) for tag in entry.tags}
        where = f" Part of the {section} section of the TOEIC Listening & Reading test." if section else ""
        yield CourseContent(
            course_id=_part_course(part),
            title=title,
            description=f"{what}{where} In EdNet (the Santa app): {' and '.join(items)}.",
            skills=sorted(tags, key=lambda tag: int(tag.rsplit(":", 1)[1])),
            part_of=f"ednet:toeic-{section.lower()}" if section else None,
        )
