"""Bayesian knowledge tracing fitted offline with pyBKT: the reference the online knowledge model is
compared with (:mod:`online.evaluation.knowledge`).

BKT gives each skill four parameters (the chance of knowing it before the first answer, of
learning it at each answer, of guessing right without knowing it and of slipping while knowing
it), fitted by EM over whole answer sequences. It cannot learn from a stream, so it is fitted on
one half of the learners and predicts the other half, both ways round: the learners in sorted id
order at even places are one half, those at odd places the other (on the 16 EdNet-KT1 learners,
exactly the tuning and held-out halves of ``tests/test_mastery.py``). Every answer is then
predicted by parameters fitted without its learner, from that learner's earlier answers on the
skill (pyBKT's forward pass, which also sees the earlier answers of the same EdNet bundle).

- A question's skill is its first tag (its course when it has none): one BKT per skill, as
  pyBKT fits them.
- The fit is pyBKT's E and M steps from one random start (seed 0), iterated until the
  log-likelihood improves by less than :data:`TOLERANCE` per answer. (pyBKT's own loop,
  ``EM_fit.EM_fit``, stores a one-element array where numpy 2.4 wants a number.)
- A skill the other half answered fewer than :data:`MIN_ANSWERS` times is predicted as that
  half's fraction correct: EM on a few answers makes guess and slip 0 and predictions certain.

>>> answers = [(f"u{u}", "s", (u + t) % 3 != 0) for t in range(20) for u in range(4)]
>>> predictions = bkt_predictions(answers)
>>> len(predictions) == len(answers) and all(0.0 < p < 1.0 for p in predictions)
True
>>> bkt_predictions([("u0", "s", True), ("u1", "t", False)])  # nothing to fit: the other half's rate
[0.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pyBKT.fit import EM_fit, M_step, predict_onestep
from pyBKT.generate import random_model_uni

__all__ = ["TOLERANCE", "bkt_predictions"]

#: EM stops when the log-likelihood per answer improves by less than this.
TOLERANCE = 1e-4
#: Answers a skill needs in the fitting half to get its own BKT.
MIN_ANSWERS = 50
#: EM iterations at most (pyBKT's default).
MAX_ITERATIONS = 100


def _data(sequences: list[list[int]], outcomes: np.ndarray) -> dict[str, np.ndarray]:
    """pyBKT's input: the answers of each sequence (2 right, 1 wrong) one after another."""
    order = [i for sequence in sequences for i in sequence]
    lengths = np.array([len(sequence) for sequence in sequences], dtype=np.int64)
    return {
        "data": np.where(outcomes[order], 2, 1)[None, :].astype(np.int32),
        "resources": np.ones(len(order), dtype=np.int64),
        "starts": np.cumsum(lengths) - lengths + 1,
        "lengths": lengths,
    }


def _fit(data: dict[str, np.ndarray], rng: np.random.RandomState) -> dict[str, Any]:
    """One skill's BKT by EM, pyBKT's steps (see the module for why the loop is here)."""
    model = random_model_uni.random_model_uni(1, 1, rand=rng)
    previous = None
    for _ in range(MAX_ITERATIONS):
        counts = EM_fit.run(data, model, np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), np.zeros((2, 1)), 1,
                            parallel=False)
        # as EM_fit.EM_fit does: the E step's counts come transposed
        counts["all_trans_softcounts"][0] = counts["all_trans_softcounts"][0].T
        counts["all_emission_softcounts"][0] = counts["all_emission_softcounts"][0].T
        likelihood = float(np.asarray(counts["total_loglike"]).item())
        if previous is not None and likelihood - previous <= TOLERANCE * len(data["resources"]):
            break
        previous = likelihood
        model = M_step.run(model, counts["all_trans_softcounts"], counts["all_emission_softcounts"],
                           counts["all_initial_softcounts"])
    return model


def bkt_predictions(answers: Sequence[tuple[str, str, bool]]) -> list[float]:
    """Probability of each ``(learner, skill, correct)`` answer being right, from BKT fitted on the
    other half of the learners (see the module). ``answers`` are in time order."""
    learners = sorted({learner for learner, _, _ in answers})
    half = {learner: place % 2 for place, learner in enumerate(learners)}
    outcomes = np.array([correct for _, _, correct in answers], dtype=bool)
    # (half, skill) -> learner -> the indices of their answers on it, in time order
    sequences: dict[tuple[int, str], dict[str, list[int]]] = {}
    for i, (learner, skill, _) in enumerate(answers):
        sequences.setdefault((half[learner], skill), {}).setdefault(learner, []).append(i)
    halves = np.array([half[learner] for learner, _, _ in answers])
    predictions = np.empty(len(answers))
    rng = np.random.RandomState(0)
    # pyBKT's E step divides 0 by 0 where a state is impossible, and zeroes the NaNs it makes
    with np.errstate(divide="ignore", invalid="ignore"):
        for predicted in (0, 1):
            other = outcomes[halves != predicted]
            rate = float(other.mean()) if len(other) else 0.5
            for (part, skill), by_learner in sorted(sequences.items()):
                if part != predicted:
                    continue
                targets = list(by_learner.values())
                indices = [i for sequence in targets for i in sequence]
                fitting = sequences.get((1 - predicted, skill))
                if fitting is None or sum(map(len, fitting.values())) < MIN_ANSWERS:
                    predictions[indices] = rate
                    continue
                model = _fit(_data(list(fitting.values()), outcomes), rng)
                predictions[indices] = predict_onestep.run(model, _data(targets, outcomes), parallel=False)[0]
    return predictions.tolist()
