"""Historical learner logs as contract events in event-time order, and the catalogues they come with.

:func:`open_log` picks the reader from the source, or from ``format``:

=============  ===================================================  ===============================
format         source                                               reader
=============  ===================================================  ===============================
``oulad``      a folder with OULAD's ``vle.csv`` and learner files  :func:`read_oulad`
``ednet-kt4``  a folder named ``KT4`` of EdNet-KT4 ``u*.csv``       :func:`read_ednet_kt4`
``ednet-kt1``  a folder named ``KT1`` of EdNet-KT1 files            :func:`read_ednet_kt1`
``jsonl``      ``*.jsonl``, ``*.ndjson`` (also ``.gz``)            :func:`read_jsonl`
``csv``        ``*.csv`` (also ``.gz``)                             :func:`read_csv`
``parquet``    ``*.parquet``                                        :func:`read_parquet`
=============  ===================================================  ===============================

Every reader yields :data:`ReadResult` values: events (``ClickEvent``, ``VideoEvent``,
``QuizEvent``) in event-time order, ties broken deterministically, and :class:`InvalidRow` for
each source row that made no event, with the reason. Event ids come from the source rows, so a
log replayed twice gives the same ids. Dataset adapters prefix their ids with the dataset
(``oulad:``, ``ednet:``); each module's docstring has its id scheme and mapping.
:func:`write_log` writes events as JSON Lines, CSV or Parquet for the last three readers.

Catalogues: :func:`oulad_catalogue` (VLE resources and assessments), :func:`ednet_catalogue`
(the TOEIC parts). :func:`~online.sources.oulad_sample.build_oulad_sample` cuts the small OULAD
sample that ships with the demo.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from online.sources.ednet import ednet_catalogue, read_ednet_kt1, read_ednet_kt4
from online.sources.oulad import oulad_catalogue, presentation_start, read_oulad
from online.sources.results import Event, InvalidRow, ReadResult, row_event_id
from online.sources.tabular import read_csv, read_jsonl, read_parquet, tabular_format, write_log

#: The reader of each format name.
READERS: dict[str, Callable[..., Iterator[ReadResult]]] = {
    "oulad": read_oulad,
    "ednet-kt4": read_ednet_kt4,
    "ednet-kt1": read_ednet_kt1,
    "jsonl": read_jsonl,
    "csv": read_csv,
    "parquet": read_parquet,
}

__all__ = [
    "READERS",
    "Event",
    "InvalidRow",
    "ReadResult",
    "detect_format",
    "ednet_catalogue",
    "open_log",
    "oulad_catalogue",
    "presentation_start",
    "read_csv",
    "read_ednet_kt1",
    "read_ednet_kt4",
    "read_jsonl",
    "read_oulad",
    "read_parquet",
    "row_event_id",
    "write_log",
]


def detect_format(source: Path) -> str:
    """The format of a source, from its file name or (for a folder) what it holds.

    >>> detect_format(Path("exports/clicks.csv.gz"))
    'csv'
    >>> detect_format(Path("notes.txt"))
    Traceback (most recent call last):
    ...
    ValueError: cannot tell the format of 'notes.txt'; give one of oulad, ednet-kt4, ...
    """
    if source.is_dir():
        if (source / "vle.csv").is_file():
            return "oulad"
        if source.name.upper() in ("KT4", "KT1"):
            return f"ednet-{source.name.lower()}"
    else:
        found = tabular_format(source)
        if found is not None:
            return found
    raise ValueError(f"cannot tell the format of {str(source)!r}; give one of {', '.join(READERS)}")


def open_log(source: Path | str, format: str | None = None, **options: Any) -> Iterator[ReadResult]:
    """Read a log with the reader its format names (by default :func:`detect_format`).

    ``options`` go to that reader: ``presentations`` and ``max_learners`` for ``oulad``,
    ``max_learners`` (and ``contents`` for KT4) for the EdNet formats; the tabular formats take
    none.
    """
    source = Path(source)
    chosen = format or detect_format(source)
    if chosen not in READERS:
        raise ValueError(f"unknown format {chosen!r}; give one of {', '.join(READERS)}")
    return READERS[chosen](source, **options)
