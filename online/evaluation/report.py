"""What an evaluation run reports: overall metrics, per-window series, JSON, a table, a plot.

>>> from datetime import datetime, timezone
>>> report = Report.build(
...     source="toy", k=2, window=2, stride=1, universes={"g": ("a", "b", "c", "d")},
...     groups=["g", "g"], times=[datetime(2024, 5, 1, tzinfo=timezone.utc)] * 2,
...     lists={"p": [["a", "b"], ["c"]]},
...     scores={"p": [(1.0, 0.5, 2 / 3, 1.0, 1.0, 1.0, 0), (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)]},
...     stages=["new", "established"],
... )
>>> report.overall["p"]["recall"], report.overall["p"]["precision"], report.overall["p"]["coverage"]
(0.5, 0.25, 0.75)
>>> report.by_stage["new"]["p"]["hit_rate"], report.by_stage["established"]["p"]["hit_rate"]
(1.0, 0.0)
>>> print(report.table())
toy: 2 steps, K=2
policy  recall@2  precision@2  f1@2    hit@2  ndcg@2  mrr@2  coverage  prereq_viol
p         0.5000       0.2500  0.3333  0.5000  0.5000  0.5000    0.7500       0.0000
<BLANKLINE>
by learner: new (fewer than 5 events before the step) 1 steps, established 1 steps
policy         recall@2  precision@2  f1@2    hit@2  ndcg@2  mrr@2
p new            1.0000       0.5000  0.6667  1.0000  1.0000  1.0000
p established    0.0000       0.0000  0.0000  0.0000  0.0000  0.0000
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from online.evaluation.metrics import METRICS, PER_STEP

#: Learner stages the report splits steps by (``online.evaluation.protocol.NEW_LEARNER_EVENTS``).
STAGES = ("new", "established")
#: Column titles of the per-step metrics in the table.
_TITLES = {"recall": "recall", "precision": "precision", "f1": "f1", "hit_rate": "hit", "ndcg": "ndcg", "mrr": "mrr"}


def _means(scores: Sequence[tuple[float, ...]], lists: Sequence[Sequence[str]], rows: np.ndarray) -> dict[str, float]:
    """The mean of each per-step metric and the violation rate over the steps ``rows``."""
    if len(rows) == 0:
        return {name: 0.0 for name in PER_STEP} | {"prerequisite_violations": 0.0}
    values = np.asarray(scores, dtype=np.float64)[rows]
    recommended = sum(len(lists[row]) for row in rows)
    out = {name: float(values[:, i].mean()) for i, name in enumerate(PER_STEP)}
    violations = values[:, len(PER_STEP)].sum()
    out["prerequisite_violations"] = float(violations / recommended) if recommended else 0.0
    return out


def _coverage(lists: Sequence[Sequence[str]], rows: Sequence[int], universe: frozenset[str]) -> float:
    if not universe:
        return 0.0
    seen = {item for row in rows for item in lists[row]}
    return len(seen & universe) / len(universe)


@dataclass
class Report:
    """Per-policy metrics of one run. Everything but ``seconds`` is a pure function of the inputs."""

    source: str
    k: int
    window: int
    stride: int
    steps: int
    overall: dict[str, dict[str, float]]
    """Policy -> metric -> value over all steps (coverage: share of the catalogue ever recommended)."""
    by_group: dict[str, dict[str, dict[str, float]]]
    """Group (OULAD presentation) -> policy -> metric -> value."""
    by_stage: dict[str, dict[str, dict[str, float]]]
    """Learner stage (:data:`STAGES`) -> policy -> metric -> value; ``steps`` -> stage -> count."""
    series: dict[str, Any]
    """``step`` (end of each window), ``time`` (ISO), and policy -> metric -> values."""
    catalogue: dict[str, int]
    """Group -> number of recommendable ids."""
    stats: dict[str, int] = field(default_factory=dict)
    audited: bool = False
    knowledge: dict[str, Any] = field(default_factory=dict)
    """The knowledge model's next-answer predictions on the log's quiz answers against its
    baselines (``online.evaluation.knowledge``); empty when the log has none or it was not run."""
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    """Policy -> seconds spent learning and recommending (not part of the JSON by default)."""

    @classmethod
    def build(
        cls,
        *,
        source: str,
        k: int,
        window: int,
        stride: int,
        universes: Mapping[str, Sequence[str]],
        groups: Sequence[str],
        times: Sequence[datetime],
        lists: Mapping[str, Sequence[Sequence[str]]],
        scores: Mapping[str, Sequence[tuple[float, ...]]],
        stages: Sequence[str] | None = None,
        stats: Mapping[str, int] | None = None,
        audited: bool = False,
        seconds: Mapping[str, Mapping[str, float]] | None = None,
    ) -> Report:
        n = len(groups)
        all_rows = np.arange(n)
        group_names = list(dict.fromkeys(groups))
        group_rows = {g: np.flatnonzero(np.asarray(groups, dtype=object) == g) for g in group_names}
        sets = {g: frozenset(universes.get(g, ())) for g in group_names}
        everything = frozenset().union(*sets.values()) if sets else frozenset()

        def metrics(label: str, rows: np.ndarray, universe: frozenset[str]) -> dict[str, float]:
            out = _means(scores[label], lists[label], rows)
            out["coverage"] = _coverage(lists[label], rows, universe)
            return {name: out[name] for name in METRICS}

        overall = {label: metrics(label, all_rows, everything) for label in lists}
        by_group = {}
        if len(group_names) > 1:
            by_group = {g: {label: metrics(label, group_rows[g], sets[g]) for label in lists} for g in group_names}
        by_stage: dict[str, Any] = {}
        if stages is not None:
            stage_of = np.asarray(stages, dtype=object)
            stage_rows = {stage: np.flatnonzero(stage_of == stage) for stage in STAGES}
            by_stage = {stage: {label: metrics(label, rows, everything) for label in lists}
                        for stage, rows in stage_rows.items()}
            by_stage["steps"] = {stage: len(rows) for stage, rows in stage_rows.items()}

        ends = list(range(window, n + 1, stride)) if n >= window else ([n] if n else [])
        if ends and ends[-1] != n:
            ends.append(n)
        series: dict[str, Any] = {"step": ends, "time": [times[end - 1].isoformat() for end in ends]}
        for label in lists:
            values: dict[str, list[float]] = {name: [] for name in METRICS}
            for end in ends:
                rows = np.arange(max(0, end - window), end)
                universe = frozenset().union(*(sets[g] for g in dict.fromkeys(groups[r] for r in rows)))
                point = metrics(label, rows, universe)
                for name in METRICS:
                    values[name].append(point[name])
            series[label] = values
        return cls(
            source=source,
            k=k,
            window=window,
            stride=stride,
            steps=n,
            overall=overall,
            by_group=by_group,
            by_stage=by_stage,
            series=series,
            catalogue={g: len(ids) for g, ids in universes.items()},
            stats=dict(stats or {}),
            audited=audited,
            seconds={label: dict(v) for label, v in (seconds or {}).items()},
        )

    def to_dict(self, timings: bool = False) -> dict[str, Any]:
        out = {
            "source": self.source,
            "k": self.k,
            "window": self.window,
            "stride": self.stride,
            "steps": self.steps,
            "catalogue": self.catalogue,
            "stats": self.stats,
            "audited": self.audited,
            "overall": self.overall,
            "by_group": self.by_group,
            "by_stage": self.by_stage,
            "knowledge": self.knowledge,
            "series": self.series,
        }
        if timings:
            out["seconds"] = self.seconds
        return out

    def to_json(self, timings: bool = False, indent: int | None = 2) -> str:
        """The report as JSON; ``timings`` adds the (machine-dependent) seconds per policy."""
        return json.dumps(self.to_dict(timings), indent=indent, sort_keys=False)

    def table(self, timings: bool = False) -> str:
        """Plain aligned text tables: one row per policy, one column per metric; then the
        per-step metrics of new learners and of the rest; then the knowledge model's, if run."""
        k = self.k
        per_step = [f"{_TITLES[name]}@{k}" for name in PER_STEP]
        header = ["policy", *per_step, "coverage", "prereq_viol"]
        if timings:
            header += ["learn_s", "recommend_s"]
        rows = []
        for label, values in self.overall.items():
            row = [label] + [f"{values[name]:.4f}" for name in METRICS]
            if timings:
                spent = self.seconds.get(label, {})
                row += [f"{spent.get('learn', 0.0):.1f}", f"{spent.get('recommend', 0.0):.1f}"]
            rows.append(row)
        title = f"{self.source}: {self.steps} steps, K={k}" + (", audited" if self.audited else "")
        parts = [title, *aligned(header, rows)]
        if self.by_stage:
            from online.evaluation.protocol import NEW_LEARNER_EVENTS

            counts = self.by_stage["steps"]
            parts += ["", f"by learner: new (fewer than {NEW_LEARNER_EVENTS} events before the step) "
                          f"{counts['new']} steps, established {counts['established']} steps"]
            staged = [[f"{label} {stage}"] + [f"{self.by_stage[stage][label][name]:.4f}" for name in PER_STEP]
                      for label in self.overall for stage in STAGES]
            parts += aligned(["policy", *per_step], staged)
        if self.knowledge:
            parts += ["", f"knowledge model, next answer of {self.knowledge['answers']:,} quiz answers"
                          f" ({self.knowledge['learners']} learners), prequential"]
            parts += aligned(["model", "auc", "rmse", "log_loss"],
                              [[name, *(f"{values[m]:.4f}" for m in ("auc", "rmse", "log_loss"))]
                               for name, values in self.knowledge["models"].items()])
        return "\n".join(parts)

    def plot(self, path: Path | str) -> Path:
        """A PNG: one subplot per metric, one line per policy, x = steps (end of each window)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path)
        shown = [m for m in METRICS if m != "f1" and (m != "prerequisite_violations" or any(
            v["prerequisite_violations"] for v in self.overall.values()))]
        fig, axes = plt.subplots(len(shown), 1, figsize=(9, 2.6 * len(shown)), sharex=True, squeeze=False)
        for ax, metric in zip(axes[:, 0], shown):
            for label in self.overall:
                ax.plot(self.series["step"], self.series[label][metric], label=label, linewidth=1.2)
            suffix = f"@{self.k}" if metric in PER_STEP else ""
            ax.set_ylabel(f"{metric}{suffix}")
            ax.grid(True, alpha=0.3)
        axes[0, 0].set_title(f"{self.source}: sliding window of {self.window} steps")
        axes[0, 0].legend(fontsize="small", ncol=3)
        axes[-1, 0].set_xlabel("steps (time order)")
        fig.tight_layout()
        fig.savefig(path, dpi=100, metadata={"Software": None})
        plt.close(fig)
        return path



def aligned(header: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))]).rstrip()

    return [line(header), *(line(r) for r in rows)]
