"""Cut the small OULAD sample that ships with coursestream, so the demo runs without the real data.

    python -m online.sources.oulad_sample ../shared/data/oulad streams/sample/oulad

keeps one module presentation (AAA 2013J by default) with all its VLE resources and
assessments, and the ``learners`` lowest-numbered learners who clicked in its first ``days``
days (day 0 is the presentation start; the days before it are kept too): their clicks and the
scores they submitted before day ``days``. The files keep OULAD's names, columns and formats
(the learner files as in the partial copy: ``studentVle.tsv.gz``, ``studentAssessment.csv``), so
:func:`online.sources.oulad.read_oulad` reads the sample as it reads the whole dataset. Event ids
come from the rows' content, so the sample's events have the same ids as in the whole dataset.
The output is byte-for-byte reproducible (no timestamps in the gzip header). An
``ATTRIBUTION.md`` with the licence and what was cut is written beside the data.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

from online.sources.files import csv_header, csv_records
from online.sources.oulad import OuladFiles
from online.sources.results import InvalidRow

_ATTRIBUTION = """\
# OULAD sample: attribution and what was cut

These files are a small extract of the **Open University Learning Analytics Dataset (OULAD)**:

> Kuzilek J., Hlosta M., Zdrahal Z. Open University Learning Analytics dataset.
> *Scientific Data* 4:170171 (2017). doi:10.1038/sdata.2017.171

OULAD is licensed under [CC BY 4.0](https://creativecommons.org/licenses/by/4.0/); this extract
is shared under the same licence. Changes: rows were selected, nothing inside a row was changed.

What was kept (everything else was cut):

- `courses.csv`: presentation {module} {code} only ({courses} row).
- `vle.csv`: all {resources} VLE resources of that presentation.
- `assessments.csv`: all {assessments} assessments of that presentation.
- `studentVle.tsv.gz`: daily click totals of the {learners} lowest-numbered learners (`id_student`)
  who clicked in the presentation's first {days} days, for dates before day {days}
  ({clicks} rows). Same columns and tab-separated format as the project's partial copy of
  OULAD's `studentVle.csv`.
- `studentAssessment.csv`: those learners' scores for the presentation's assessments submitted
  before day {days} ({scores} rows).

Rebuild with `python -m online.sources.oulad_sample OULAD_FOLDER OUT_FOLDER` (coursestream).
"""


def _rows(path: Path) -> Iterable[list[str]]:
    """Every record of a source file as its cells; the source is trusted, a bad row stops the cut."""
    header = csv_header(path)
    for record in csv_records(path, header):
        if isinstance(record, InvalidRow):
            raise ValueError(f"{path} row {record.row}: {record.reason}")
        yield list(record.values)


def _write(file: TextIO, header: list[str], rows: list[list[str]], delimiter: str, quoting: int) -> None:
    writer = csv.writer(file, delimiter=delimiter, quoting=quoting)  # CRLF lines, as OULAD's
    writer.writerow(header)
    writer.writerows(rows)


def build_oulad_sample(
    source: Path | str,
    out: Path | str,
    *,
    presentation: tuple[str, str] = ("AAA", "2013J"),
    learners: int = 60,
    days: int = 60,
) -> dict[str, int]:
    """Write the sample of the OULAD folder ``source`` into ``out``; return the rows written per file."""
    files = OuladFiles.find(source)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    module, code = presentation

    def of_presentation(path: Path) -> list[list[str]]:
        header = csv_header(path)
        at = header.index("code_module"), header.index("code_presentation")
        return [row for row in _rows(path) if (row[at[0]], row[at[1]]) == presentation]

    courses, resources, assessments = (
        of_presentation(path) for path in (files.courses, files.vle, files.assessments)
    )
    if not courses:
        raise ValueError(f"presentation {module} {code} is not in {files.courses}")
    for path, rows in ((files.courses, courses), (files.vle, resources), (files.assessments, assessments)):
        with (out / path.name).open("w", encoding="utf-8", newline="") as file:
            _write(file, csv_header(path), rows, ",", csv.QUOTE_ALL)

    vle_header = csv_header(files.student_vle)
    module_at, code_at, student_at, date_at = (
        vle_header.index(name) for name in ("code_module", "code_presentation", "id_student", "date")
    )
    window = [
        row
        for row in _rows(files.student_vle)
        if (row[module_at], row[code_at]) == presentation and int(row[date_at]) < days
    ]
    kept = set(sorted({int(row[student_at]) for row in window})[:learners])
    clicks = [row for row in window if int(row[student_at]) in kept]
    # mtime=0 and no file name in the gzip header: the same input gives the same bytes.
    with (
        gzip.GzipFile(out / "studentVle.tsv.gz", "wb", mtime=0) as raw,
        io.TextIOWrapper(raw, encoding="utf-8", newline="") as file,
    ):
        _write(file, vle_header, clicks, "\t", csv.QUOTE_MINIMAL)

    score_header = csv_header(files.student_assessment)
    assessment_at, student_at, submitted_at = (
        score_header.index(name) for name in ("id_assessment", "id_student", "date_submitted")
    )
    id_at = csv_header(files.assessments).index("id_assessment")
    presentation_assessments = {row[id_at] for row in assessments}
    scores = [
        row
        for row in _rows(files.student_assessment)
        if row[assessment_at] in presentation_assessments
        and int(row[student_at]) in kept
        and int(row[submitted_at]) < days
    ]
    with (out / "studentAssessment.csv").open("w", encoding="utf-8", newline="") as file:
        _write(file, score_header, scores, ",", csv.QUOTE_MINIMAL)

    counts = {
        "courses.csv": len(courses),
        "vle.csv": len(resources),
        "assessments.csv": len(assessments),
        "studentVle.tsv.gz": len(clicks),
        "studentAssessment.csv": len(scores),
    }
    (out / "ATTRIBUTION.md").write_text(
        _ATTRIBUTION.format(
            module=module,
            code=code,
            courses=len(courses),
            resources=len(resources),
            assessments=len(assessments),
            learners=len(kept),
            days=days,
            clicks=len(clicks),
            scores=len(scores),
        ),
        encoding="utf-8",
    )
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m online.sources.oulad_sample SOURCE OUT [--learners N] [--days D]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="OULAD folder (courses.csv, vle.csv, ...)")
    parser.add_argument("out", type=Path, help="folder to write the sample into")
    parser.add_argument("--module", default="AAA", help="code_module to keep (default AAA)")
    parser.add_argument("--presentation", default="2013J", help="code_presentation to keep (default 2013J)")
    parser.add_argument("--learners", type=int, default=60, help="how many learners (default 60)")
    parser.add_argument("--days", type=int, default=60, help="keep rows before this day (default 60)")
    args = parser.parse_args(argv)
    counts = build_oulad_sample(
        args.source,
        args.out,
        presentation=(args.module, args.presentation),
        learners=args.learners,
        days=args.days,
    )
    for name, rows in counts.items():
        print(f"{args.out / name}: {rows} rows")


if __name__ == "__main__":
    main()
