"""Offline prequential evaluation: policies replay real logs and are scored step by step.

The harness (:mod:`~online.evaluation.protocol`) runs any :class:`Policy` over the same
steps, side by side: OULAD's daily protocol (:func:`oulad_steps`) or any time-ordered event
log (:func:`prequential_steps`). :func:`evaluate` returns a :class:`Report` (JSON, a terminal
table, a PNG plot). The baselines to beat are in :mod:`~online.evaluation.baselines`.
Pure Python and numpy (river for one baseline, matplotlib for the plot): no broker, no
encoder, nothing of ``streams/``.

>>> from online.evaluation import BASELINES, evaluate, oulad_steps   # doctest: +SKIP
>>> report = evaluate(oulad_steps("../shared/data/oulad"), BASELINES, k=10)   # doctest: +SKIP
>>> print(report.table())   # doctest: +SKIP
"""

from online.evaluation.baselines import BASELINES
from online.evaluation.metrics import METRICS, no_prerequisites
from online.evaluation.protocol import (
    Block,
    LeakageError,
    Policy,
    PolicyError,
    Step,
    Steps,
    evaluate,
    oulad_steps,
    prequential_steps,
)
from online.evaluation.report import Report

__all__ = [
    "BASELINES",
    "METRICS",
    "Block",
    "LeakageError",
    "Policy",
    "PolicyError",
    "Report",
    "Step",
    "Steps",
    "evaluate",
    "no_prerequisites",
    "oulad_steps",
    "prequential_steps",
]
