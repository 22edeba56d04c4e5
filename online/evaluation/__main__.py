"""Run the baselines (or some of them) over OULAD presentations or any event log.

    python -m online.evaluation --presentation AAA-2013J --json report.json --plot report.png
    python -m online.evaluation --log events.jsonl --policies recent-popularity,isgd

``coursestream`` is the project's own policy (:class:`RecommenderPolicy`, the worker's code);
on OULAD it gets the presentation's catalogue, on an event log an empty one.

Prints the table (with seconds per policy) to the terminal.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from online.evaluation.baselines import BASELINES
from online.evaluation.protocol import PolicyFactory, evaluate, oulad_steps, prequential_steps
from online.evaluation.recommender_policy import RecommenderPolicy
from online.sources import oulad_catalogue

CHOICES = ("coursestream", *BASELINES)
#: The catalogue fields the vector store keeps as a course's payload.
PAYLOAD = {"part_of", "prerequisites", "level", "skills", "language"}
DEFAULT_OULAD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "oulad"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m online.evaluation", description=__doc__.splitlines()[0])
    parser.add_argument("--oulad", type=Path, default=DEFAULT_OULAD, help="OULAD folder (default: %(default)s)")
    parser.add_argument("--presentation", action="append", help="e.g. AAA-2013J (repeatable; default AAA-2013J)")
    parser.add_argument("--last-day", type=int, help="keep presentation days up to this one")
    parser.add_argument("--log", type=Path, help="evaluate this event log (any format open_log reads) instead")
    parser.add_argument("--policies", help=f"comma-separated, of {', '.join(CHOICES)} (default: all)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--window", type=int, default=1000, help="steps per window of the series")
    parser.add_argument("--audit", action="store_true", help="replay with each moment's data withheld (2x time)")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--plot", type=Path, help="write the PNG plot here")
    args = parser.parse_args(argv)

    names = args.policies.split(",") if args.policies else list(CHOICES)
    unknown = [name for name in names if name not in CHOICES]
    if unknown:
        parser.error(f"unknown policies {unknown}; choose from {', '.join(CHOICES)}")
    catalogue: dict[str, dict[str, object]] = {}
    if args.log is not None:
        from online.sources import open_log

        steps = prequential_steps(open_log(args.log))
    else:
        presentations = [tuple(p.split("-", 1)) for p in (args.presentation or ["AAA-2013J"])]
        steps = oulad_steps(args.oulad, presentations, last_day=args.last_day)
        catalogue = {entry.course_id: entry.model_dump(include=PAYLOAD) for entry in oulad_catalogue(args.oulad, presentations=presentations)}
    factories: dict[str, PolicyFactory] = {**BASELINES, "coursestream": lambda: RecommenderPolicy(catalogue)}
    started = time.perf_counter()
    report = evaluate(steps, {name: factories[name] for name in names}, k=args.k, window=args.window, audit=args.audit)
    print(report.table(timings=True))
    print(f"{time.perf_counter() - started:.1f} s in all")
    if args.json:
        args.json.write_text(report.to_json(timings=True))
    if args.plot:
        report.plot(args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
