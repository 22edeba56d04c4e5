"""Shared per-question difficulty, learned online Elo-style from every learner's answers.

A question's difficulty is one number on the logit scale: the probability that a learner of
ability ``a`` answers question ``q`` correctly is ``sigmoid(a - difficulty(q))``. It is shared
by all learners, so it lives apart from any learner's state (see :mod:`online.mastery`, which
combines the two): in a stream processor it can sit in its own table keyed by question, or be
re-learned by replaying the answer log.

Used alone, the estimator treats every learner as average (ability 0), which makes it a
difficulty-only predictor:

>>> from online.difficulty import QuestionDifficulty
>>> questions = QuestionDifficulty()
>>> for _ in range(5):
...     questions.learn_one({"question": "hard"}, False)
...     questions.learn_one({"question": "easy"}, True)
>>> questions.difficulty("hard") > 0 > questions.difficulty("easy")
True
>>> round(questions.predict_proba_one({"question": "easy"})[True], 2)
0.79
>>> questions.predict_one({"question": "hard"})
False
>>> questions.difficulty("never seen")
0.0
>>> questions.table["hard"]
[1.30..., 5]
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from typing import Any

from river import base

__all__ = ["QuestionDifficulty", "elo_step", "sigmoid"]


def sigmoid(logit: float) -> float:
    """The logistic function, written so that no input overflows ``math.exp``."""
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    odds = math.exp(logit)
    return odds / (1.0 + odds)


def elo_step(answers: int, step: float, decay: float, min_step: float) -> float:
    """Elo's K factor after ``answers`` answers: large while an estimate is uncertain, then smaller.

    ``step / (1 + decay * answers)`` is the uncertainty function of Pelánek's Elo for
    education; ``min_step`` keeps a floor under it, because what a learner knows (and, less so,
    how hard a reworded question is) keeps changing, and a step that shrinks to zero would
    freeze the estimate.
    """
    return max(min_step, step / (1.0 + decay * answers))


class QuestionDifficulty(base.Classifier):
    """Per-question difficulty on the logit scale, updated by Elo steps.

    Parameters
    ----------
    step, decay, min_step
        The uncertainty-dependent step size, see :func:`elo_step`. A new question's difficulty
        is the least certain number in the model, so the first answers move it a lot; questions
        do not learn, so the floor is lower than a learner's.
    table
        Where the state lives: question id -> ``[difficulty, answers]``, JSON-friendly, so a
        stream processor's table (or a plain dict, the default) can back it. Entries are
        re-assigned on every update, as persistent tables require.
    """

    def __init__(
        self,
        step: float = 0.8,
        decay: float = 0.05,
        min_step: float = 0.02,
        table: MutableMapping[str, list[Any]] | None = None,
    ) -> None:
        self.step = step
        self.decay = decay
        self.min_step = min_step
        self.table: MutableMapping[str, list[Any]] = {} if table is None else table

    def difficulty(self, question: str) -> float:
        """The question's difficulty in logits; 0 (average) for a question never answered."""
        entry = self.table.get(question)
        return 0.0 if entry is None else float(entry[0])

    def update(self, question: str, residual: float) -> None:
        """Move the difficulty against ``residual`` = outcome - predicted probability.

        A combined model (:class:`online.mastery.MasteryModel`) calls this with its own
        prediction, so that the learner's ability is accounted for.
        """
        difficulty, answers = self.table.get(question, (0.0, 0))
        difficulty -= elo_step(answers, self.step, self.decay, self.min_step) * residual
        self.table[question] = [difficulty, answers + 1]

    def predict_proba_one(self, x: dict[str, Any], **kwargs: Any) -> dict[bool, float]:
        """``x["question"]`` answered correctly by an average learner, as ``{True: p, False: 1 - p}``."""
        p = sigmoid(-self.difficulty(x["question"]))
        return {True: p, False: 1.0 - p}

    def learn_one(self, x: dict[str, Any], y: bool | float) -> None:
        """Learn from one answer to ``x["question"]``; ``y`` is correct or not, or a score in [0, 1]."""
        self.update(x["question"], float(y) - self.predict_proba_one(x)[True])
