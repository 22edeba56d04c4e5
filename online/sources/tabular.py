"""Logs already in the contract's shape: JSON Lines, CSV and Parquet, read and written.

=======  ===================================  ========================================================
format   file names                           one event is
=======  ===================================  ========================================================
jsonl    ``*.jsonl``, ``*.ndjson``, + ``.gz``  a line holding the event's JSON, as on the topic
csv      ``*.csv``, + ``.gz``                  a row; the header names the columns, which are the
                                              contract's fields (:data:`EVENT_COLUMNS`, any subset,
                                              any order); an empty cell is a field not given;
                                              ``skill_tags`` is ``;``-separated
parquet  ``*.parquet``                        a row of the same columns, typed (:data:`PARQUET_SCHEMA`:
                                              ``event_time`` a UTC timestamp, ``skill_tags`` a list)
=======  ===================================  ========================================================

Every row is validated as a message of the learner-event topic is
(:func:`online.events.parse_learner_event`): one that fails is an :class:`InvalidRow` with the
contract's reason. Event ids are the log's own (duplicates are for the consumer to drop).

The readers yield events in event-time order whatever the file's order. A first pass reads only
each row's ``event_time`` (16 bytes a row are kept); a second validates the rows and yields them
in (event_time, row number) order. A row read before its turn waits in memory for it, so a file
in time order (as :func:`write_log` writes events given in order) streams, and a shuffled one
costs memory up to its size. A row whose ``event_time`` cannot be read is reported where it
stands in the file.

>>> import tempfile
>>> from datetime import datetime, timezone
>>> later = ClickEvent(event_id="e2", user_id="u1", course_id="c1", action="open",
...                    event_time=datetime(2024, 5, 1, 10, tzinfo=timezone.utc))
>>> earlier = QuizEvent(event_id="e1", user_id="u1", course_id="c1", quiz_id="q1", score=0.5,
...                     skill_tags=["algebra", "fractions"],
...                     event_time=datetime(2024, 5, 1, 9, tzinfo=timezone.utc))
>>> with tempfile.TemporaryDirectory() as folder:
...     path = Path(folder) / "log.csv"
...     write_log([later, earlier], path)
...     print(path.read_text().splitlines()[2])
...     [event.event_id for event in read_csv(path)]
2
quiz,e1,u1,c1,2024-05-01T09:00:00Z,,,,,,,,,q1,,algebra;fractions,0.5,,1
['e1', 'e2']
"""

from __future__ import annotations

import csv
import gzip
import json
from array import array
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import AwareDatetime, TypeAdapter

from online.events import ClickEvent, InvalidEvent, QuizEvent, VideoEvent, parse_learner_event
from online.sources.files import csv_header, csv_records, open_text
from online.sources.results import Event, InvalidRow, ReadResult

#: The columns of a CSV or Parquet log: every field of the three learner events, ``kind`` first.
EVENT_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(["kind", *ClickEvent.model_fields, *VideoEvent.model_fields, *QuizEvent.model_fields])
)

_PARQUET_TYPES = {
    "event_time": pa.timestamp("us", tz="UTC"),
    "count": pa.int64(),
    "watched_seconds": pa.float64(),
    "position_seconds": pa.float64(),
    "video_length_seconds": pa.float64(),
    "playback_rate": pa.float64(),
    "skill_tags": pa.list_(pa.string()),
    "score": pa.float64(),
    "correct": pa.bool_(),
    "attempt": pa.int64(),
}
#: Column types of a Parquet log; the other columns are strings.
PARQUET_SCHEMA = pa.schema([(name, _PARQUET_TYPES.get(name, pa.string())) for name in EVENT_COLUMNS])

#: File name endings of each format.
TABULAR_SUFFIXES = {
    ".jsonl": "jsonl",
    ".jsonl.gz": "jsonl",
    ".ndjson": "jsonl",
    ".ndjson.gz": "jsonl",
    ".csv": "csv",
    ".csv.gz": "csv",
    ".parquet": "parquet",
}

_SKILL_TAG_SEPARATOR = ";"
_PARQUET_BATCH_ROWS = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# The contract's own parser for the time, so that rows sort by the time they will validate to.
_event_time = TypeAdapter(AwareDatetime)


def tabular_format(path: Path) -> str | None:
    """The format a file name says, or None.

    >>> tabular_format(Path("replay.jsonl.gz")), tabular_format(Path("vle.tsv"))
    ('jsonl', None)
    """
    name = path.name.lower()
    return next((fmt for suffix, fmt in TABULAR_SUFFIXES.items() if name.endswith(suffix)), None)


class _Record(NamedTuple):
    row: int
    raw: str
    message: bytes
    """The row as a learner-event message (JSON)."""


def _jsonl_records(path: Path) -> Iterator[_Record | InvalidRow]:
    with open_text(path) as file:
        for row, line in enumerate(file, start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield _Record(row, line, line.encode())


def _csv_records(path: Path) -> Iterator[_Record | InvalidRow]:
    header = csv_header(path)
    if not header:
        return
    for record in csv_records(path, header):
        if isinstance(record, InvalidRow):
            yield record
            continue
        fields: dict[str, Any] = {name: value for name, value in zip(header, record.values) if value != ""}
        if "skill_tags" in fields:
            fields["skill_tags"] = fields["skill_tags"].split(_SKILL_TAG_SEPARATOR)
        yield _Record(record.row, record.raw, json.dumps(fields).encode())


def _with_text_times(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Zoned timestamps as RFC 3339 text, which Arrow makes far faster than Python datetimes."""
    columns = [
        (
            pc.strftime(column, format="%Y-%m-%dT%H:%M:%S%z")
            if pa.types.is_timestamp(column.type) and column.type.tz
            else column
        )
        for column in batch.columns
    ]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _parquet_records(path: Path) -> Iterator[_Record | InvalidRow]:
    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=_PARQUET_BATCH_ROWS):
        for values in _with_text_times(batch).to_pylist():
            row += 1
            given = {name: value for name, value in values.items() if value is not None}
            message = json.dumps(given, default=str)  # other types as text: the contract judges them
            yield _Record(row, message, message.encode())


def _time_key(message: bytes) -> int | None:
    """The row's ``event_time`` in microseconds since 1970, or None if it has no valid one."""
    try:
        moment = _event_time.validate_python(json.loads(message)["event_time"])
    except (ValueError, KeyError, TypeError):  # bad JSON, no time, not a time (ValidationError)
        return None
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _validated(source: str, record: _Record) -> ReadResult:
    try:
        return parse_learner_event(record.message, strict=False)  # CSV cells are text
    except InvalidEvent as error:
        return InvalidRow(source, record.row, record.raw, str(error))


def _in_time_order(
    source: str, records: Callable[[], Iterator[_Record | InvalidRow]]
) -> Iterator[ReadResult]:
    """Read ``records()`` twice: once for the times, once to yield the rows in time order."""
    times, rows = array("q"), array("q")
    unplaced = set()  # rows without a valid time: they are invalid, reported where they stand
    for record in records():
        if isinstance(record, _Record):
            moment = _time_key(record.message)
            if moment is None:
                unplaced.add(record.row)
            else:
                times.append(moment)
                rows.append(record.row)
    row_numbers = np.frombuffer(rows, dtype=np.int64)
    turns = row_numbers[np.lexsort((row_numbers, np.frombuffer(times, dtype=np.int64)))]
    turn = 0
    waiting: dict[int, _Record] = {}
    for record in records():
        if isinstance(record, InvalidRow):
            yield record
        elif record.row in unplaced:
            yield _validated(source, record)
        else:
            waiting[record.row] = record
            while turn < len(turns) and int(turns[turn]) in waiting:
                yield _validated(source, waiting.pop(int(turns[turn])))
                turn += 1


def read_jsonl(path: Path | str) -> Iterator[ReadResult]:
    """A JSON Lines log (one event per line, optionally gzipped), in event-time order."""
    path = Path(path)
    return _in_time_order(str(path), lambda: _jsonl_records(path))


def read_csv(path: Path | str) -> Iterator[ReadResult]:
    """A CSV log (columns named as the contract's fields, optionally gzipped), in event-time order."""
    path = Path(path)
    return _in_time_order(str(path), lambda: _csv_records(path))


def read_parquet(path: Path | str) -> Iterator[ReadResult]:
    """A Parquet log (columns named as the contract's fields), in event-time order."""
    path = Path(path)
    return _in_time_order(str(path), lambda: _parquet_records(path))


def _open_for_writing(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "wt", encoding="utf-8", newline="")
    return path.open("w", encoding="utf-8", newline="")


def _write_jsonl(events: Iterable[Event], path: Path) -> int:
    written = 0
    with _open_for_writing(path) as file:
        for event in events:
            file.write(event.model_dump_json() + "\n")
            written += 1
    return written


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        if any(_SKILL_TAG_SEPARATOR in tag for tag in value):
            raise ValueError(
                f"skill tags {value} contain {_SKILL_TAG_SEPARATOR!r}: write JSON Lines or Parquet"
            )
        return _SKILL_TAG_SEPARATOR.join(value)
    return str(value)


def _write_csv(events: Iterable[Event], path: Path) -> int:
    written = 0
    with _open_for_writing(path) as file:
        writer = csv.writer(file)
        writer.writerow(EVENT_COLUMNS)
        for event in events:
            fields = event.model_dump(mode="json")
            writer.writerow([_csv_cell(fields.get(name)) for name in EVENT_COLUMNS])
            written += 1
    return written


def _write_parquet(events: Iterable[Event], path: Path) -> int:
    written = 0
    with pq.ParquetWriter(path, PARQUET_SCHEMA) as writer:
        batch: list[dict[str, Any]] = []
        for event in events:
            batch.append(event.model_dump())
            if len(batch) == _PARQUET_BATCH_ROWS:
                writer.write_table(pa.Table.from_pylist(batch, schema=PARQUET_SCHEMA))
                written += len(batch)
                batch.clear()
        writer.write_table(pa.Table.from_pylist(batch, schema=PARQUET_SCHEMA))
        written += len(batch)
    return written


_WRITERS: dict[str, Callable[[Iterable[Event], Path], int]] = {
    "jsonl": _write_jsonl,
    "csv": _write_csv,
    "parquet": _write_parquet,
}


def write_log(events: Iterable[Event], path: Path | str, format: str | None = None) -> int:
    """Write events, in the order given, as a JSON Lines, CSV or Parquet log; return how many.

    ``format`` is one of ``jsonl``, ``csv``, ``parquet``; by default the file name says
    (:data:`TABULAR_SUFFIXES`). The readers of this module read the log back.
    """
    path = Path(path)
    chosen = format or tabular_format(path)
    if chosen not in _WRITERS:
        raise ValueError(f"cannot tell a log format ({', '.join(_WRITERS)}) from {path.name!r}: give format=")
    return _WRITERS[chosen](events, path)
