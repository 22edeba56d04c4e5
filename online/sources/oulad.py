"""OULAD, the Open University Learning Analytics Dataset, as events and catalogue entries.

Kuzilek J., Hlosta M., Zdrahal Z. Open University Learning Analytics dataset. Sci. Data 4:170171
(2017), doi:10.1038/sdata.2017.171, CC BY 4.0.

One folder holds ``courses.csv``, ``vle.csv``, ``assessments.csv`` and the learner files
``studentVle*`` and ``studentAssessment*`` (``.csv`` or ``.tsv``, optionally ``.gz``: the
original names and this project's partial copies both match).

**What is recommended.** A VLE resource (a row of ``vle.csv``) is a catalogue entry; so is an
assessment, because assessment scores are events about it. Both are ``part_of`` their module
presentation. Titles and descriptions are generated from the metadata: the activity type, the
planned weeks, the module, its domain (AAA, BBB, GGG: Social Sciences; CCC, DDD, EEE, FFF: STEM),
start and length, and for assessments type, due day and weight. OULAD gives no level
(``level`` is None) and no topics: the only subject information is the (anonymised) module, so
``skills`` is ``["oulad:AAA"]``-style. The activity type is a format, not a skill: it is in the
title, the description and the clicks' ``action``.

**Ids.** Every id starts with ``oulad:`` so that datasets never collide in one deployment.

- learner (``user_id``): ``oulad:{id_student}``, e.g. ``oulad:28400``
- module presentation (``part_of``): ``oulad:{code_module}-{code_presentation}``, e.g.
  ``oulad:AAA-2013J``
- VLE resource (catalogue, ``course_id`` of clicks): ``{presentation}:vle:{id_site}``, e.g.
  ``oulad:AAA-2013J:vle:546652``
- assessment (catalogue, ``course_id`` of scores): ``{presentation}:assessment:{id_assessment}``,
  e.g. ``oulad:AAA-2013J:assessment:1752``
- click ``event_id``: ``{resource}:{id_student}:{date}``, e.g.
  ``oulad:AAA-2013J:vle:546652:28400:-10``
- score ``event_id``: ``{assessment}:{id_student}``, e.g. ``oulad:AAA-2013J:assessment:1752:11391``

``studentVle`` often has several rows for one learner, resource and day (275,359 of the partial
file's 1,048,575 rows repeat an earlier row's key): each is an event, and the repeats get ``#2``,
``#3``, ... in file order (see :func:`~online.sources.results.row_event_id`).

**Events.**

=====================  ==========  =================================================================
source row             event       fields
=====================  ==========  =================================================================
``studentVle``         ClickEvent  ``action`` = the resource's ``activity_type``, ``count`` =
                                   ``sum_click`` (a daily total), no ``item_id`` (the resource is
                                   the course)
``studentAssessment``  QuizEvent   ``quiz_id`` = ``id_assessment``, ``score`` = score / 100,
                                   ``skill_tags`` = the module; a missing score is an InvalidRow;
                                   banked scores (``is_banked``, carried over from an earlier
                                   presentation) are kept, at the day OULAD gives them
=====================  ==========  =================================================================

**Time.** OULAD dates are days from the start of the presentation. The start is taken as the
1st of its month, 00:00 UTC, where ``B`` presentations start in February and ``J`` ones in
October (:func:`presentation_start`); OULAD gives no exact day. An event of day ``d`` is at that
start + ``d`` days, 00:00 UTC: every click and score of one day has the same time. Results are
ordered by day, then learner, clicks before scores, then resource or assessment id and repeat.
The order within a day is only there to be stable: it carries no meaning.

Clicks are scanned into compact arrays (about 50 bytes a row) and sorted there; events are made
one at a time as they are yielded.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from online.events import ClickEvent, CourseContent, QuizEvent
from online.sources.files import CsvRecord, csv_records
from online.sources.results import (
    InvalidRow,
    ReadResult,
    SortKey,
    build_event,
    merge_in_time_order,
    row_event_id,
)

#: The one-line domain of each module, from the OULAD paper.
MODULE_DOMAINS = {
    "AAA": "Social Sciences",
    "BBB": "Social Sciences",
    "GGG": "Social Sciences",
    "CCC": "STEM",
    "DDD": "STEM",
    "EEE": "STEM",
    "FFF": "STEM",
}

#: Month a presentation starts in, by the letter of its code.
PRESENTATION_MONTHS = {"B": 2, "J": 10}

#: Readable names of the VLE activity types, for titles and descriptions.
ACTIVITY_TYPES = {
    "resource": "file resource",
    "oucontent": "course content page",
    "url": "external link",
    "homepage": "module home page",
    "subpage": "sub-page of module resources",
    "sharedsubpage": "shared sub-page",
    "page": "web page",
    "folder": "folder of files",
    "glossary": "glossary",
    "forumng": "discussion forum",
    "ouwiki": "wiki",
    "oucollaborate": "online tutorial room (OU Collaborate)",
    "ouelluminate": "online tutorial room (Elluminate)",
    "quiz": "quiz",
    "externalquiz": "external quiz",
    "questionnaire": "questionnaire",
    "dataplus": "DataPlus database activity",
    "dualpane": "dual-pane page",
    "htmlactivity": "interactive HTML activity",
    "repeatactivity": "repeated activity",
}

ASSESSMENT_TYPES = {
    "TMA": "Tutor-marked assessment",
    "CMA": "Computer-marked assessment",
    "Exam": "Final exam",
}

#: How OULAD writes a missing score ("?" in the original release, empty in the partial copy).
MISSING_SCORE = {"", "?"}

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Clicks are sorted before assessments of the same learner and day.
_CLICK, _SCORE = 0, 1
# Click rows are turned into events this many at a time (numpy -> Python values).
_CHUNK = 65_536


def presentation_start(code_presentation: str) -> datetime:
    """Day 0 of a presentation: the 1st of its month (``B`` February, ``J`` October), 00:00 UTC.

    >>> presentation_start("2013J").isoformat(), presentation_start("2014B").isoformat()
    ('2013-10-01T00:00:00+00:00', '2014-02-01T00:00:00+00:00')
    """
    year, letter = code_presentation[:4], code_presentation[4:]
    if not year.isdigit() or letter not in PRESENTATION_MONTHS:
        raise ValueError(f"presentation code {code_presentation!r} is not a year and B or J")
    return datetime(int(year), PRESENTATION_MONTHS[letter], 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class OuladFiles:
    """The files of one OULAD folder."""

    courses: Path
    vle: Path
    assessments: Path
    student_vle: Path
    student_assessment: Path

    @classmethod
    def find(cls, folder: Path | str) -> OuladFiles:
        """Locate the files in ``folder``; each name pattern must match exactly one file."""
        folder = Path(folder)

        def one(pattern: str) -> Path:
            matches = sorted(folder.glob(pattern))
            if len(matches) != 1:
                raise FileNotFoundError(
                    f"{folder}: expected one file {pattern}, found {[m.name for m in matches]}"
                )
            return matches[0]

        return cls(
            courses=one("courses.csv"),
            vle=one("vle.csv"),
            assessments=one("assessments.csv"),
            student_vle=one("studentVle*.[ct]sv*"),
            student_assessment=one("studentAssessment*.csv*"),
        )


@dataclass(frozen=True, slots=True)
class _Presentation:
    module: str
    code: str
    length_days: int

    @property
    def id(self) -> str:
        return f"oulad:{self.module}-{self.code}"

    @property
    def start(self) -> datetime:
        return presentation_start(self.code)

    def describe(self) -> str:
        domain = MODULE_DOMAINS.get(self.module, "subject not given")
        return (
            f"Open University module {self.module} ({domain}), presentation {self.code}"
            f" (starts {self.start:%B %Y}, runs {self.length_days} days)"
        )


@dataclass(frozen=True, slots=True)
class _Resource:
    site: int
    presentation: _Presentation
    activity_type: str
    weeks: tuple[int, int] | None

    @property
    def id(self) -> str:
        return f"{self.presentation.id}:vle:{self.site}"


@dataclass(frozen=True, slots=True)
class _Assessment:
    id_assessment: int
    presentation: _Presentation
    type: str
    day: int | None
    weight: float

    @property
    def id(self) -> str:
        return f"{self.presentation.id}:assessment:{self.id_assessment}"


@dataclass(frozen=True)
class _Metadata:
    """Every presentation, resource and assessment of the folder, and the presentations asked for."""

    presentations: dict[tuple[str, str], _Presentation]
    resources: dict[int, _Resource]
    assessments: dict[int, _Assessment]
    selected: list[_Presentation]


def _metadata_records(path: Path, columns: tuple[str, ...]) -> Iterator[CsvRecord]:
    # The metadata files are small and everything depends on them: a bad row stops the read.
    for record in csv_records(path, columns):
        if isinstance(record, InvalidRow):
            raise ValueError(f"{path} row {record.row}: {record.reason}")
        yield record


def _optional_int(value: str) -> int | None:
    return int(value) if value else None


def _load_metadata(files: OuladFiles, presentations: Iterable[tuple[str, str]] | None) -> _Metadata:
    columns = ("code_module", "code_presentation", "module_presentation_length")
    known = {
        (module, code): _Presentation(module, code, int(length))
        for _, (module, code, length), _ in _metadata_records(files.courses, columns)
    }
    wanted = list(known) if presentations is None else [tuple(p) for p in presentations]
    unknown = [p for p in wanted if p not in known]
    if unknown:
        raise ValueError(f"presentations {unknown} are not in {files.courses}")

    def presentation(path: Path, row: int, module: str, code: str) -> _Presentation:
        if (module, code) not in known:
            raise ValueError(f"{path} row {row}: {module}-{code} is not in {files.courses.name}")
        return known[module, code]

    resources = {}
    columns = ("id_site", "code_module", "code_presentation", "activity_type", "week_from", "week_to")
    for row, (site, module, code, activity, week_from, week_to), _ in _metadata_records(files.vle, columns):
        start, end = _optional_int(week_from), _optional_int(week_to)
        weeks = None if start is None or end is None else (start, end)
        resources[int(site)] = _Resource(
            int(site), presentation(files.vle, row, module, code), activity, weeks
        )

    assessments = {}
    columns = ("id_assessment", "code_module", "code_presentation", "assessment_type", "date", "weight")
    for row, (id_assessment, module, code, kind, day, weight), _ in _metadata_records(
        files.assessments, columns
    ):
        assessments[int(id_assessment)] = _Assessment(
            int(id_assessment),
            presentation(files.assessments, row, module, code),
            kind,
            _optional_int(day),
            float(weight),
        )
    return _Metadata(known, resources, assessments, [known[key] for key in dict.fromkeys(wanted)])


@dataclass
class _Clicks:
    """Scanned ``studentVle`` rows as columns; ``presentation`` indexes ``_Metadata.presentations``."""

    presentation: np.ndarray
    student: np.ndarray
    site: np.ndarray
    date: np.ndarray
    clicks: np.ndarray
    row: np.ndarray

    def subset(self, keep: np.ndarray) -> _Clicks:
        return _Clicks(*(getattr(self, column.name)[keep] for column in fields(self)))


def _scan_clicks(path: Path, meta: _Metadata, invalid: list[InvalidRow]) -> _Clicks:
    """Read the click rows of the selected presentations into columns; bad rows go to ``invalid``."""
    source = str(path)
    index = {presentation: i for i, presentation in enumerate(meta.selected)}
    columns = [array("q") for _ in range(6)]  # int64 columns: 48 bytes a row, not Python objects
    names = ("code_module", "code_presentation", "id_student", "id_site", "date", "sum_click")
    for record in csv_records(path, names):
        if isinstance(record, InvalidRow):
            invalid.append(record)
            continue
        module, code, student, site, date, clicks = record.values
        presentation = meta.presentations.get((module, code))
        if presentation is None:
            invalid.append(
                InvalidRow(source, record.row, record.raw, f"{module}-{code} is not in courses.csv")
            )
            continue
        if presentation not in index:
            continue
        try:
            numbers = (int(student), int(site), int(date), int(clicks))
        except ValueError:
            reason = "id_student, id_site, date, sum_click must be integers"
            invalid.append(InvalidRow(source, record.row, record.raw, reason))
            continue
        resource = meta.resources.get(numbers[1])
        if resource is None or resource.presentation != presentation:
            reason = f"id_site {site} is not a resource of {module}-{code} in vle.csv"
            invalid.append(InvalidRow(source, record.row, record.raw, reason))
            continue
        for column, value in zip(columns, (index[presentation], *numbers, record.row)):
            column.append(value)
    return _Clicks(*(np.frombuffer(column, dtype=np.int64) for column in columns))


def _repeat_numbers(clicks: _Clicks) -> np.ndarray:
    """1 for the first row of each (learner, resource, day), 2 for its first repeat, ..., in file order."""
    by_key = np.lexsort((clicks.row, clicks.date, clicks.site, clicks.student))
    student, site, date = clicks.student[by_key], clicks.site[by_key], clicks.date[by_key]
    starts_group = np.ones(len(by_key), dtype=bool)
    starts_group[1:] = (np.diff(student) != 0) | (np.diff(site) != 0) | (np.diff(date) != 0)
    positions = np.arange(len(by_key))
    group_start = np.maximum.accumulate(np.where(starts_group, positions, 0))
    repeat = np.empty(len(by_key), dtype=np.int64)
    repeat[by_key] = positions - group_start + 1
    return repeat


def _click_results(path: Path, clicks: _Clicks, meta: _Metadata) -> Iterator[tuple[SortKey, ReadResult]]:
    source = str(path)
    start_days = np.array([(p.start - _EPOCH).days for p in meta.selected], dtype=np.int64)
    day = start_days[clicks.presentation] + clicks.date
    repeat = _repeat_numbers(clicks)
    order = np.lexsort((repeat, clicks.site, clicks.student, day))
    for first in range(0, len(order), _CHUNK):
        chunk = order[first : first + _CHUNK]
        columns = (day, clicks.student, clicks.site, clicks.date, clicks.clicks, repeat, clicks.row)
        for absolute_day, student, site, date, count, occurrence, row in zip(
            *(c[chunk].tolist() for c in columns)
        ):
            resource = meta.resources[site]
            presentation = resource.presentation
            raw = "\t".join(map(str, (presentation.module, presentation.code, student, site, date, count)))
            event = build_event(
                ClickEvent,
                source,
                row,
                raw,
                event_id=row_event_id(resource.id, student, date, occurrence=occurrence),
                user_id=f"oulad:{student}",
                course_id=resource.id,
                event_time=_EPOCH + timedelta(days=absolute_day),
                action=resource.activity_type,
                count=count,
            )
            yield (absolute_day, student, _CLICK, site, occurrence), event


@dataclass(frozen=True, slots=True)
class _Score:
    """A ``studentAssessment`` row of a selected presentation, with its integers parsed."""

    record: CsvRecord
    assessment: _Assessment
    student: int
    date: int
    score: str

    @property
    def day(self) -> int:
        return (self.assessment.presentation.start - _EPOCH).days + self.date


def _scan_scores(path: Path, meta: _Metadata, invalid: list[InvalidRow]) -> list[_Score]:
    """The score rows of the selected presentations, in file order; bad rows go to ``invalid``."""
    source = str(path)
    selected = set(meta.selected)
    scores = []
    for record in csv_records(path, ("id_assessment", "id_student", "date_submitted", "score")):
        if isinstance(record, InvalidRow):
            invalid.append(record)
            continue
        id_assessment, student, date, score = record.values
        try:
            numbers = int(id_assessment), int(student), int(date)
        except ValueError:
            reason = "id_assessment, id_student, date_submitted must be integers"
            invalid.append(InvalidRow(source, record.row, record.raw, reason))
            continue
        assessment = meta.assessments.get(numbers[0])
        if assessment is None:
            reason = f"id_assessment {id_assessment} is not in assessments.csv"
            invalid.append(InvalidRow(source, record.row, record.raw, reason))
        elif assessment.presentation in selected:
            scores.append(_Score(record, assessment, numbers[1], numbers[2], score))
    return scores


def _score_results(path: Path, scores: list[_Score]) -> Iterator[tuple[SortKey, ReadResult]]:
    source = str(path)
    repeats: Counter[tuple[int, int]] = Counter()
    keyed = []
    for score in scores:  # in file order, so repeats are numbered in file order
        repeats[score.assessment.id_assessment, score.student] += 1
        occurrence = repeats[score.assessment.id_assessment, score.student]
        key = (score.day, score.student, _SCORE, score.assessment.id_assessment, occurrence)
        keyed.append((key, occurrence, score))
    keyed.sort(key=lambda item: item[0])
    for key, occurrence, score in keyed:
        record = score.record
        if score.score in MISSING_SCORE:
            yield key, InvalidRow(source, record.row, record.raw, "score is missing")
            continue
        try:
            fraction = float(score.score) / 100
        except ValueError:
            yield key, InvalidRow(source, record.row, record.raw, f"score {score.score!r} is not a number")
            continue
        assessment = score.assessment
        yield key, build_event(
            QuizEvent,
            source,
            record.row,
            record.raw,
            event_id=row_event_id(assessment.id, score.student, occurrence=occurrence),
            user_id=f"oulad:{score.student}",
            course_id=assessment.id,
            event_time=_EPOCH + timedelta(days=score.day),
            quiz_id=str(assessment.id_assessment),
            skill_tags=[f"oulad:{assessment.presentation.module}"],
            score=fraction,
        )


def read_oulad(
    folder: Path | str,
    *,
    presentations: Iterable[tuple[str, str]] | None = None,
    max_learners: int | None = None,
) -> Iterator[ReadResult]:
    """Clicks and assessment scores of an OULAD folder as events, in event-time order.

    ``presentations`` keeps only those module presentations, e.g. ``[("AAA", "2013J")]`` (default:
    all in ``courses.csv``). ``max_learners`` keeps the learners with the lowest ``id_student``
    among those with clicks or scores in the kept presentations. Rows that cannot be read or
    placed come first as :class:`InvalidRow`; a row that fails the contract comes at its time
    (the mapping is in the module docstring).
    """
    files = OuladFiles.find(folder)
    meta = _load_metadata(files, presentations)
    invalid: list[InvalidRow] = []
    clicks = _scan_clicks(files.student_vle, meta, invalid)
    scores = _scan_scores(files.student_assessment, meta, invalid)
    if max_learners is not None:
        scored = np.array([score.student for score in scores], dtype=np.int64)
        learners = np.union1d(clicks.student, scored)[:max_learners]
        clicks = clicks.subset(np.isin(clicks.student, learners))
        kept = set(learners.tolist())
        scores = [score for score in scores if score.student in kept]
    yield from invalid
    yield from merge_in_time_order(
        [_click_results(files.student_vle, clicks, meta), _score_results(files.student_assessment, scores)]
    )


def _weeks_text(weeks: tuple[int, int] | None) -> str:
    if weeks is None:
        return "Not planned for particular weeks."
    first, last = weeks
    return f"Planned for week {first}." if first == last else f"Planned for weeks {first} to {last}."


def _resource_entry(resource: _Resource) -> CourseContent:
    presentation = resource.presentation
    label = ACTIVITY_TYPES.get(resource.activity_type, resource.activity_type)
    return CourseContent(
        course_id=resource.id,
        title=f"{label[0].upper()}{label[1:]} {resource.site} ({presentation.module} {presentation.code})",
        description=(
            f"A {label} (VLE activity type {resource.activity_type}) in {presentation.describe()}. "
            + _weeks_text(resource.weeks)
        ),
        skills=[f"oulad:{presentation.module}"],
        part_of=presentation.id,
    )


def _assessment_entry(assessment: _Assessment) -> CourseContent:
    presentation = assessment.presentation
    label = ASSESSMENT_TYPES.get(assessment.type, f"{assessment.type} assessment")
    if assessment.day is None:
        due = "Due at the end of the presentation (OULAD gives no day)"
    else:
        due = f"Due on day {assessment.day} ({presentation.start + timedelta(days=assessment.day):%Y-%m-%d})"
    # OULAD: exams are weighted on their own (100%); the other assessments share the coursework mark.
    mark = "the exam mark" if assessment.type == "Exam" else "the coursework mark"
    return CourseContent(
        course_id=assessment.id,
        title=f"{label} {assessment.id_assessment} ({presentation.module} {presentation.code})",
        description=f"{label} in {presentation.describe()}. {due}; weighs {assessment.weight:g}% of {mark}.",
        skills=[f"oulad:{presentation.module}"],
        part_of=presentation.id,
    )


def oulad_catalogue(
    folder: Path | str, *, presentations: Iterable[tuple[str, str]] | None = None
) -> Iterator[CourseContent]:
    """The VLE resources, then the assessments, of an OULAD folder as catalogue entries (by id).

    ``presentations`` keeps only those, as in :func:`read_oulad`.
    """
    meta = _load_metadata(OuladFiles.find(folder), presentations)
    selected = set(meta.selected)
    for site in sorted(meta.resources):
        if meta.resources[site].presentation in selected:
            yield _resource_entry(meta.resources[site])
    for id_assessment in sorted(meta.assessments):
        if meta.assessments[id_assessment].presentation in selected:
            yield _assessment_entry(meta.assessments[id_assessment])
