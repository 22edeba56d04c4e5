"""The knowledge model on a quiz log: each answer predicted before it is learned, against two
baselines and a BKT fitted offline.

The model is the worker's (:class:`~online.mastery.MasteryModel`, asked as a learner's profile
asks it); the baselines are each question's and each learner's running fraction correct
(:class:`RunningMean`); the reference is BKT fitted by pyBKT on the other half of the learners
(:mod:`online.evaluation.bkt`), on the same answers. All answers go through as one stream in time order, as a stream
processor sees them: question difficulty is shared between learners, so replaying one learner
after another would let a prediction use other learners' later answers. Answers of one learner
at one time (an EdNet bundle, submitted together) are all predicted before any is learned.

Only answers marked right or wrong (``correct``) are scored: ROC AUC, RMSE of the predicted
probability, and log-loss.

>>> from datetime import datetime, timezone
>>> from online.events import QuizEvent
>>> def answer(i, user, question, correct):
...     return QuizEvent(event_id=f"a{i}", user_id=user, course_id="toeic", quiz_id=question,
...                      question_id=question, correct=correct,
...                      event_time=datetime(2024, 5, 1, 0, i, tzinfo=timezone.utc))
>>> log = [answer(i, f"u{i % 3}", f"q{i % 2}", i % 2 == 0) for i in range(60)]
>>> report = knowledge_report(log)
>>> report["answers"], report["learners"], list(report["models"]) == list(MODELS)
(60, 3, True)
>>> list(MODELS)
['mastery', 'question running mean', 'learner running mean', 'bkt (pyBKT, fitted on the other half)']
>>> report["models"]["question running mean"]["auc"] > 0.9   # q0 is always right, q1 always wrong
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from online.events import ClickEvent, QuizEvent, VideoEvent
from online.mastery import MasteryModel, answer_of
from online.sources import InvalidRow

#: Predicted probabilities are kept this far from 0 and 1 for the log-loss.
EPSILON = 1e-15


class RunningMean:
    """Baseline: the running fraction correct per key (``"question"`` or ``"user"``), shrunk
    towards the overall running fraction by ``prior_answers`` answers' worth of it."""

    def __init__(self, key: str, prior_answers: float = 5.0) -> None:
        self.key = key
        self.prior_answers = prior_answers
        self.correct: dict[str, float] = {}
        self.answers: dict[str, int] = {}
        self.all_correct = 0.0
        self.all_answers = 0

    def predict_proba_one(self, x: dict) -> dict[bool, float]:
        prior = (self.all_correct + 1.0) / (self.all_answers + 2.0)
        key = x[self.key]
        correct = self.correct.get(key, 0.0) + self.prior_answers * prior
        p = correct / (self.answers.get(key, 0) + self.prior_answers)
        return {True: p, False: 1.0 - p}

    def learn_one(self, x: dict, y: bool) -> None:
        key = x[self.key]
        self.correct[key] = self.correct.get(key, 0.0) + y
        self.answers[key] = self.answers.get(key, 0) + 1
        self.all_correct += y
        self.all_answers += 1


#: The models replayed prequentially, by report name: the worker's and the baselines.
PREQUENTIAL: dict[str, Callable[[], Any]] = {
    "mastery": MasteryModel,
    "question running mean": lambda: RunningMean("question"),
    "learner running mean": lambda: RunningMean("user"),
}
#: The report name of the offline reference, :func:`~online.evaluation.bkt.bkt_predictions`.
BKT = "bkt (pyBKT, fitted on the other half)"
#: Every row of the report, in order.
MODELS = (*PREQUENTIAL, BKT)


def roc_auc(labels: Iterable[bool], scores: Iterable[float]) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties).

    >>> roc_auc([True, False, True, False], [0.9, 0.1, 0.4, 0.4])
    0.875
    """
    y = np.asarray(list(labels), dtype=bool)
    _, tie_group, tie_counts = np.unique(np.asarray(list(scores), dtype=float), return_inverse=True,
                                         return_counts=True)
    ranks = (np.cumsum(tie_counts) - (tie_counts - 1) / 2.0)[tie_group]
    positives, negatives = int(y.sum()), int((~y).sum())
    if not positives or not negatives:
        return float("nan")
    return float((ranks[y].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def scores(labels: Iterable[bool], predictions: Iterable[float]) -> dict[str, float]:
    """AUC, RMSE and log-loss of probabilities against right/wrong outcomes.

    >>> {name: round(value, 4) for name, value in scores([True, False], [0.8, 0.4]).items()}
    {'auc': 1.0, 'rmse': 0.3162, 'log_loss': 0.367}
    """
    y = np.asarray(list(labels), dtype=float)
    p = np.clip(np.asarray(list(predictions), dtype=float), EPSILON, 1 - EPSILON)
    return {
        "auc": roc_auc(y.astype(bool), p),
        "rmse": float(np.sqrt(np.mean((p - y) ** 2))),
        "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
    }


def _bkt_skill(event: QuizEvent) -> str:
    """The one skill BKT traces an answer on: the question's first tag, or its course."""
    return event.skill_tags[0] if event.skill_tags else event.course_id


def knowledge_report(log: Iterable[ClickEvent | VideoEvent | QuizEvent | InvalidRow]) -> dict[str, Any] | None:
    """Replay the log's right/wrong quiz answers through every model of :data:`PREQUENTIAL`, and
    fit and score the :data:`BKT` reference on them (see the module); None if it has none. ``log``
    is in time order."""
    models = {name: factory() for name, factory in PREQUENTIAL.items()}
    predictions: dict[str, list[float]] = {name: [] for name in models}
    labels: list[bool] = []
    traced: list[tuple[str, str, bool]] = []  # what BKT sees: learner, skill, outcome
    learners: set[str] = set()
    bundle: list[QuizEvent] = []

    def flush() -> None:
        for event in bundle:
            x = answer_of(event)
            labels.append(bool(event.correct))
            traced.append((event.user_id, _bkt_skill(event), bool(event.correct)))
            for name, model in models.items():
                predictions[name].append(model.predict_proba_one(x)[True])
        for event in bundle:
            for model in models.values():
                model.learn_one(answer_of(event), bool(event.correct))
        bundle.clear()

    for event in log:
        if not isinstance(event, QuizEvent) or event.correct is None:
            continue
        if bundle and (event.user_id, event.event_time) != (bundle[0].user_id, bundle[0].event_time):
            flush()
        bundle.append(event)
        learners.add(event.user_id)
    flush()
    if not labels:
        return None
    # Here, not at the top: pyBKT is in the test extra, not the worker's dependencies.
    from online.evaluation.bkt import bkt_predictions

    predictions[BKT] = bkt_predictions(traced)
    return {
        "answers": len(labels),
        "learners": len(learners),
        "models": {name: scores(labels, values) for name, values in predictions.items()},
    }
