"""Opening source files: plain or gzipped text, and CSV/TSV records numbered as in the file."""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator, Sequence
from operator import itemgetter
from pathlib import Path
from typing import NamedTuple, TextIO

from online.sources.results import InvalidRow


def open_text(path: Path) -> TextIO:
    """Open a UTF-8 text file for reading, decompressing it when the name ends in ``.gz``.

    ``newline=""`` because the csv module does its own line handling (OULAD ends lines with CRLF).
    """
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def delimiter_of(path: Path) -> str:
    """Tab for ``.tsv`` files (also gzipped), else comma.

    >>> delimiter_of(Path("studentVle.tsv.gz")), delimiter_of(Path("vle.csv"))
    ('\\t', ',')
    """
    return "\t" if ".tsv" in path.suffixes else ","


class CsvRecord(NamedTuple):
    """One data record of a CSV/TSV file."""

    row: int
    """1-based number of the record in the file, the header not counted."""
    values: tuple[str, ...]
    """The requested columns, in the order they were requested."""
    raw: str
    """The whole record, its cells joined by the file's delimiter (for reports)."""


def csv_header(path: Path) -> list[str]:
    """The column names in the first line of a CSV/TSV file (empty for an empty file)."""
    with open_text(path) as file:
        return next(csv.reader(file, delimiter=delimiter_of(path)), [])


def csv_records(path: Path, columns: Sequence[str]) -> Iterator[CsvRecord | InvalidRow]:
    """Yield each record of a CSV/TSV file with the values of ``columns``, whatever their order.

    A record whose number of cells differs from the header's is yielded as :class:`InvalidRow`;
    a header that lacks one of ``columns`` raises ``ValueError`` (nothing could be read).
    """
    delimiter = delimiter_of(path)
    with open_text(path) as file:
        reader = csv.reader(file, delimiter=delimiter)
        header = next(reader, [])
        missing = [name for name in columns if name not in header]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(missing)} in header {header}")
        indices = [header.index(name) for name in columns]
        # itemgetter with one index returns a bare value, not a 1-tuple.
        pick = itemgetter(*indices) if len(indices) > 1 else lambda cells: (cells[indices[0]],)
        for row, cells in enumerate(reader, start=1):
            raw = delimiter.join(cells)
            if len(cells) != len(header):
                yield InvalidRow(str(path), row, raw, f"{len(cells)} cells, the header has {len(header)}")
            else:
                yield CsvRecord(row, pick(cells), raw)
