"""The comparison of ranking policies (A/B variants) from what their lists did (``online.attribution``).

Learners are assigned a policy by a hash of their id (``online.policies``), so the learner is
the unit of the experiment: a learner's lists are not independent of each other. Every
interval and test here resamples learners, not lists (with scipy):

- a policy's **take-up rate** is its lists taken up over its lists (pooled), with a percentile
  bootstrap interval over its learners (``scipy.stats.bootstrap``);
- the **difference** of each policy from the control (the first policy by name, unless named) is
  tested with a permutation test of the policy labels over learners
  (``scipy.stats.permutation_test``, two-sided; exact when the learners are few), with a
  bootstrap interval;
- the **lists needed** per variant to detect an absolute difference of ``effect`` from the
  control's rate with ``power`` at ``alpha`` (two-sided): the two-proportion normal formula,
  times the design effect of the learners' clustering (the variance of the pooled rate with
  learners as units, by the delta method, over the binomial variance; at least 1), and the
  learners that takes at the observed lists per learner.

Resampling is seeded: the same tallies and seed give the same report.

>>> from online.attribution import PolicyTally
>>> control = PolicyTally(learners={f"a{i}": [10, 2 + i % 3] for i in range(30)})
>>> treatment = PolicyTally(learners={f"b{i}": [10, 4 + i % 3] for i in range(30)})
>>> report = compare({"reranked-v3": control, "reranked-diverse-v3": treatment}, control="reranked-v3", resamples=999)
>>> variant = report.variants["reranked-v3"]
>>> variant["lists"], variant["lists_taken_up"], variant["rate"]
(300, 90, 0.3)
>>> low, high = variant["interval"]
>>> low < 0.3 < high
True
>>> comparison = report.comparisons[0]
>>> comparison["policy"], round(comparison["difference"], 4), comparison["p_value"] < 0.01
('reranked-diverse-v3', 0.2, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from online.attribution import RECENT_LISTS, WINDOW_DAYS, PolicyTally
from online.evaluation.report import aligned



def _learner_arrays(tally: PolicyTally) -> tuple[np.ndarray, np.ndarray]:
    """Each learner's lists and lists taken up, in learner order."""
    rows = np.array(list(tally.learners.values()), dtype=np.float64).reshape(-1, 2)
    return rows[:, 0], rows[:, 1]


def _rate_of(lists: np.ndarray, taken: np.ndarray) -> Callable[..., np.ndarray]:
    """The pooled rate of the learners whose indices are resampled (vectorised, for scipy)."""
    def rate(indices: np.ndarray, axis: int = -1) -> np.ndarray:
        picked = indices.astype(np.intp)
        return taken[picked].sum(axis=axis) / np.maximum(lists[picked].sum(axis=axis), 1.0)

    return rate


def _delta_variance(lists: np.ndarray, taken: np.ndarray) -> float:
    """Variance of the pooled rate with learners as units (delta method for a ratio of sums)."""
    m = len(lists)
    if m < 2 or not lists.sum():
        return math.nan
    rate = taken.sum() / lists.sum()
    residuals = taken - rate * lists
    return float(residuals.var(ddof=1) / (m * lists.mean() ** 2))


def design_effect(arms: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """How much the learners' clustering inflates the variance of the arms' rates over
    independent lists (at least 1; 1 where it cannot be told).

    >>> design_effect([(np.array([10.0, 10.0, 10.0]), np.array([0.0, 5.0, 10.0]))]) > 1
    True
    """
    clustered = binomial = 0.0
    for lists, taken in arms:
        n = lists.sum()
        rate = taken.sum() / n if n else 0.0
        variance = _delta_variance(lists, taken)
        if math.isnan(variance) or not 0.0 < rate < 1.0:
            continue
        clustered += variance
        binomial += rate * (1 - rate) / n
    return float(max(1.0, clustered / binomial)) if binomial else 1.0


def lists_needed(rate: float, effect: float, alpha: float, power: float, deff: float = 1.0) -> int:
    """Lists per variant to detect ``rate`` against ``rate + effect`` (two-sided, normal
    approximation), times the design effect ``deff``.

    >>> lists_needed(0.10, 0.02, alpha=0.05, power=0.8)   # the textbook 3,841 per arm
    3841
    """
    treated = min(max(rate + effect, 1e-9), 1 - 1e-9)
    rate = min(max(rate, 1e-9), 1 - 1e-9)
    mean = (rate + treated) / 2
    z_alpha, z_power = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    root = z_alpha * math.sqrt(2 * mean * (1 - mean)) + z_power * math.sqrt(rate * (1 - rate) + treated * (1 - treated))
    return math.ceil(root**2 / effect**2 * deff)


@dataclass
class ExperimentReport:
    """Per policy: counts, take-up rate and interval; per policy against the control: the difference,
    its interval and p-value, and the lists needed for ``effect`` (see the module)."""

    control: str
    variants: dict[str, dict[str, Any]]
    comparisons: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"control": self.control, "settings": self.settings, "variants": self.variants,
                "comparisons": self.comparisons}

    def table(self) -> str:
        """The report as aligned text."""
        s = self.settings
        lines = [f"take-ups owed to a list among the learner's last {s['recent_lists']} within {s['window_days']:g} day(s)"
                 f" of event time; intervals {s['confidence']:.0%}, resampling learners"]
        header = ["policy", "learners", "lists", "items", "taken_up", "take_ups", "rate", "interval", "exploring"]
        rows = [[policy, f"{v['learners']:,}", f"{v['lists']:,}", f"{v['items']:,}", f"{v['lists_taken_up']:,}",
                 f"{v['take_ups']:,}", f"{v['rate']:.4f}", _interval(v["interval"]), f"{v['exploring_take_ups']:,}"]
                for policy, v in self.variants.items()]
        lines += aligned(header, rows)
        for c in self.comparisons:
            p = c["p_value"]
            lines += ["", f"{c['policy']} against {self.control}: difference {c['difference']:+.4f}"
                          f" {_interval(c['interval'])}, p = {p:.4f} ({c['test']})",
                      f"  to detect {s['effect']:+.4f} with power {s['power']:.0%} at alpha {s['alpha']}:"
                      f" {c['lists_needed']:,} lists per variant (design effect {c['design_effect']:.2f}),"
                      f" about {c['learners_needed']:,} learners"]
        by_rank = {policy: v["take_ups_by_rank"] for policy, v in self.variants.items()}
        ranks = sorted({int(rank) for counts in by_rank.values() for rank in counts})
        if ranks:
            lines += ["", "take-ups by rank shown"]
            lines += aligned(["policy", *map(str, ranks)],
                              [[policy, *(str(counts.get(str(rank), 0)) for rank in ranks)]
                               for policy, counts in by_rank.items()])
        return "\n".join(lines)


def _interval(bounds: list[float]) -> str:
    low, high = bounds
    return "[n/a]" if math.isnan(low) else f"[{low:.4f}, {high:.4f}]"


def compare(
    tallies: Mapping[str, PolicyTally],
    control: str | None = None,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    effect: float = 0.01,
    resamples: int = 9999,
    seed: int = 0,
) -> ExperimentReport:
    """The report of the module over each policy's tally (``online.attribution.tally``); intervals
    at ``1 - alpha``. The control comes first, then the others by name."""
    if not tallies:
        raise ValueError("no lists: nothing to compare")
    control = control or min(tallies)
    if control not in tallies:
        raise ValueError(f"control {control!r} published no list; policies: {', '.join(sorted(tallies))}")
    tallies = {policy: tallies[policy] for policy in [control, *sorted(set(tallies) - {control})]}
    arrays = {policy: _learner_arrays(t) for policy, t in tallies.items()}
    variants = {}
    for policy, t in tallies.items():
        lists, taken = arrays[policy]
        rate = float(taken.sum() / lists.sum()) if lists.sum() else 0.0
        variants[policy] = {
            "learners": len(t.learners), "lists": int(lists.sum()), "items": t.items,
            "lists_taken_up": int(taken.sum()), "take_ups": t.take_ups, "exploring_take_ups": t.exploring_take_ups,
            "rate": rate, "interval": _rate_interval(lists, taken, 1 - alpha, resamples, seed),
            "take_ups_by_rank": {str(rank): count for rank, count in sorted(t.by_rank.items())},
        }
    comparisons = [_compare(arrays[control], arrays[policy], policy, variants[control]["rate"], alpha=alpha,
                            power=power, effect=effect, resamples=resamples, seed=seed)
                   for policy in tallies if policy != control]
    settings = {"recent_lists": RECENT_LISTS, "window_days": WINDOW_DAYS, "confidence": 1 - alpha, "alpha": alpha,
                "power": power, "effect": effect, "resamples": resamples, "seed": seed}
    return ExperimentReport(control, variants, comparisons, settings)


def _rate_interval(lists: np.ndarray, taken: np.ndarray, confidence: float, resamples: int, seed: int) -> list[float]:
    if len(lists) < 2 or not lists.sum():
        return [math.nan, math.nan]
    result = stats.bootstrap((np.arange(len(lists)),), _rate_of(lists, taken), n_resamples=resamples,
                             vectorized=True, method="percentile", confidence_level=confidence,
                             batch=_batch(len(lists)), rng=np.random.default_rng(seed))
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def _batch(learners: int) -> int:
    """Resamples at once: a few million indices in memory at most."""
    return max(1, 4_000_000 // max(learners, 1))


def _compare(control: tuple[np.ndarray, np.ndarray], treated: tuple[np.ndarray, np.ndarray], policy: str,
             control_rate: float, *, alpha: float, power: float, effect: float, resamples: int,
             seed: int) -> dict[str, Any]:
    lists = np.concatenate([control[0], treated[0]])
    taken = np.concatenate([control[1], treated[1]])
    rate = _rate_of(lists, taken)
    first, second = np.arange(len(control[0])), np.arange(len(control[0]), len(lists))

    def difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return rate(b, axis) - rate(a, axis)

    observed = float(difference(first, second))
    p_value, interval = math.nan, [math.nan, math.nan]
    if len(first) and len(second):
        tested = stats.permutation_test((first, second), difference, permutation_type="independent",
                                        vectorized=True, n_resamples=resamples, batch=_batch(len(lists)),
                                        rng=np.random.default_rng(seed))
        p_value = float(tested.pvalue)
    if len(first) >= 2 and len(second) >= 2:
        boot = stats.bootstrap((first, second), difference, n_resamples=resamples, vectorized=True,
                               method="percentile", confidence_level=1 - alpha, batch=_batch(len(lists)),
                               rng=np.random.default_rng(seed))
        interval = [float(boot.confidence_interval.low), float(boot.confidence_interval.high)]
    deff = design_effect([control, treated])
    needed = lists_needed(control_rate, effect, alpha, power, deff)
    per_learner = lists.sum() / len(lists) if len(lists) else 1.0
    return {
        "policy": policy, "difference": observed, "interval": interval, "p_value": p_value,
        "test": "permutation of policies over learners, two-sided",
        "design_effect": deff, "lists_needed": needed, "learners_needed": math.ceil(needed / max(per_learner, 1e-9)),
    }
