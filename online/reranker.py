"""The online re-ranker: river's logistic regression over a candidate's features.

It scores how likely a learner is to take up a candidate next, from features such as content
similarity, what others learned next, popularity, prerequisites and level (see
``online.recommender.FEATURES``). It learns online from what learners do with a list: a course
taken up from it moves the weights towards a weighting that would have shown it higher among
the items shown (:meth:`Reranker.learn_choice`); explicit feedback on one item is a labelled
example for river's own step (:meth:`Reranker.learn_one`).

A new model starts from prior weights (a fitted ranking), so the first lists are sensible;
learning moves the weights from there. The weights live in a mapping the caller provides
(JSON-friendly, one entry), so a stream processor's table can back it and the model recovers
with it.

>>> from online.reranker import Reranker
>>> reranker = Reranker(prior={"similarity": 2.0, "popularity": 0.0}, intercept=-1.0)
>>> liked, ignored = {"similarity": 0.2, "popularity": 1.0}, {"similarity": 0.9, "popularity": 0.0}
>>> reranker.predict_one(liked) < reranker.predict_one(ignored)
True
>>> for _ in range(200):  # learners keep rating the popular course up and the similar one down
...     reranker.learn_one(liked, True)
...     reranker.learn_one(ignored, False)
>>> reranker.predict_one(liked) > reranker.predict_one(ignored)
True
>>> Reranker(table=reranker.table).predict_one(liked) == reranker.predict_one(liked)  # restored
True
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np
from river import base, linear_model, optim

#: The key of the model's entry in its table.
KEY = "reranker"
#: How far :meth:`Reranker.learn_choice` scales a group's weights down and up to compare rankings.
CHOICE_STEP = 1.25
#: How far a group's weights may move from their prior on a log scale (e ** 2: 7.4 times).
CHOICE_BOUND = 2.0


class Reranker(base.Classifier):
    """Logistic regression (river), started from ``prior`` weights, kept in ``table``.

    Parameters
    ----------
    prior, intercept
        Weights of a model that has not learned yet.
    learning_rate
        The step of both rules (see the module); 0 keeps the prior.
    table
        Where the weights live (``{KEY: {"w": weights, "b": intercept, "n": updates}}``).
    """

    def __init__(
        self,
        prior: Mapping[str, float] | None = None,
        intercept: float = 0.0,
        learning_rate: float = 0.02,
        table: MutableMapping[str, Any] | None = None,
    ) -> None:
        self.prior = dict(prior or {})
        self.intercept = intercept
        self.learning_rate = learning_rate
        self.table: MutableMapping[str, Any] = {} if table is None else table
        self._model = linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate), intercept_lr=learning_rate)
        self._loaded_updates = -1
        self._groups: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    @property
    def updates(self) -> int:
        """How many examples the model has learned from."""
        entry = self.table.get(KEY)
        return 0 if entry is None else int(entry["n"])

    def weights(self) -> dict[str, float]:
        """The current weight of each feature."""
        return dict(self._load()._weights)

    def _load(self) -> linear_model.LogisticRegression:
        # the table is the truth (another instance, or recovery, may have written it)
        entry = self.table.get(KEY) or {"w": self.prior, "b": self.intercept, "n": 0}
        if entry["n"] != self._loaded_updates:
            for name, weight in entry["w"].items():
                self._model._weights[name] = float(weight)
            self._model.intercept = float(entry["b"])
            self._loaded_updates = entry["n"]
        return self._model

    def predict_proba_one(self, x: Mapping[str, float], **kwargs: Any) -> dict[bool, float]:
        """``{True: p, False: 1 - p}``: p that the learner takes up the candidate next."""
        return self._load().predict_proba_one(dict(x))

    def predict_one(self, x: Mapping[str, float], **kwargs: Any) -> float:  # type: ignore[override]
        """The ranking score: the probability of a take-up (ranking needs the number, not the class)."""
        return self.predict_proba_one(x)[True]

    def predict_matrix(self, features: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """:meth:`predict_one` of every row of ``features``, whose columns are the features ``names``,
        in one matrix product: the weights are read once, not once a row (ranking scores a whole
        candidate list).

        >>> reranker = Reranker(prior={"similarity": 2.0, "popularity": 1.0}, intercept=-1.0)
        >>> reranker.predict_matrix(np.array([[0.5, 1.0]]), ["similarity", "popularity"]).tolist() == [
        ...     reranker.predict_one({"similarity": 0.5, "popularity": 1.0})]
        True
        """
        model = self._load()
        logits = features @ np.array([model._weights.get(name, 0.0) for name in names]) + model.intercept
        # river's sigmoid, clamped as river clamps it
        with np.errstate(over="ignore"):
            probabilities = np.where(logits < -30, 0.0, np.where(logits > 30, 1.0, 1.0 / (1.0 + np.exp(-logits))))
        return probabilities

    def learn_one(self, x: Mapping[str, float], y: bool, w: float = 1.0) -> None:
        """Learn that a candidate with features ``x`` was (``y``) or was not taken up."""
        model = self._load()
        model.learn_one(dict(x), y, w=w)
        self._store(model)

    def learn_list(self, taken: np.ndarray, left: np.ndarray, names: Sequence[str], learning_rate: float) -> None:
        """Learn the weights of the features ``names`` only from one take-up: the taken course's
        features ``taken`` (a vector over ``names``) should score above each shown course the
        learner left (``left``, a row each).

        A pairwise logistic step on the score those features add, one for each left course (each
        pair is an example); every other weight stays. The features' differences carry the signal, so a feature the
        same for all (a modality no course has) moves nothing.

        >>> reranker = Reranker(prior={"image_similarity": 1.0, "similarity": 2.0})
        >>> reranker.learn_list(np.array([0.9]), np.array([[0.2]]), ["image_similarity"], 0.5)
        >>> round(reranker.weights()["image_similarity"], 3), reranker.weights()["similarity"]
        (1.116, 2.0)
        """
        differences = taken[None, :] - left
        if not differences.any():
            return
        model = self._load()
        weights = np.array([model._weights.get(name, 0.0) for name in names])
        margins = np.clip(differences @ weights, -30.0, 30.0)
        step = learning_rate * ((1.0 - 1.0 / (1.0 + np.exp(-margins))) @ differences)
        for name, weight in zip(names, (weights + step).tolist()):
            model._weights[name] = weight
        self._store(model)

    def learn_choice(self, shown: np.ndarray, chosen: int, names: Sequence[str],
                     groups: Sequence[Sequence[str]]) -> None:
        """Learn from a learner's choice among the items of a list they were shown: ``shown`` holds
        the items' features (a row each, columns ``names``), ``chosen`` is the row they took up.

        The items are ranked twice for each of ``groups`` (weights that move as one), with that
        group's weights scaled down and up by :data:`CHOICE_STEP`; the group's weights move, on a
        log scale, by ``learning_rate`` times how much higher the second ranking places the chosen
        item than the first (its discounted gain, 1 / log2(1 + rank)): an online finite-difference
        ascent of the taken course's rank, the comparison made on what the learner saw. A group
        stays within :data:`CHOICE_BOUND` of its prior on that scale.

        >>> reranker = Reranker(prior={"similarity": 2.0, "popularity": 1.0}, learning_rate=0.1)
        >>> shown = np.array([[0.9, 0.0], [0.2, 1.0], [0.5, 0.4]])  # the learner took the popular one
        >>> reranker.learn_choice(shown, 1, ["similarity", "popularity"], [["similarity"], ["popularity"]])
        >>> {name: round(weight, 3) for name, weight in reranker.weights().items()}
        {'similarity': 1.942, 'popularity': 1.03}
        """
        model = self._load()
        weights = np.array([model._weights.get(name, 0.0) for name in names])
        members, scales, prior, moved = self._groups_of(names, groups)
        scores = shown @ (weights[:, None] * scales)
        gain = 1.0 / np.log2(2.0 + (scores > scores[chosen]).sum(axis=0))
        slope = (gain[len(groups):] - gain[: len(groups)]) / (2.0 * np.log(CHOICE_STEP))
        if not slope.any():  # no group moves the chosen item: spare the table a write
            return
        ratio = np.log(np.divide(weights, prior, out=np.ones_like(weights), where=moved))
        ratio = np.clip(ratio + members @ (self.learning_rate * slope), -CHOICE_BOUND, CHOICE_BOUND)
        for name, weight in zip(names, np.where(moved, prior * np.exp(ratio), weights).tolist()):
            model._weights[name] = weight
        self._store(model)

    def _groups_of(self, names: Sequence[str],
                   groups: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Which of ``groups`` each of ``names`` belongs to (a 0/1 matrix), the factors that scale
        each group down then up (a column each), the names' prior weights and which of them move
        (in a group, with a prior to move from); worked out once."""
        key = (tuple(names), tuple(map(tuple, groups)))
        if key not in self._groups:
            members = np.array([[name in group for group in groups] for name in names], dtype=np.float64)
            scales = np.exp(np.log(CHOICE_STEP) * np.concatenate([-members, members], axis=1))
            prior = np.array([self.prior.get(name, 0.0) for name in names])
            self._groups[key] = members, scales, prior, members.any(axis=1) & (prior != 0.0)
        return self._groups[key]

    def _store(self, model: linear_model.LogisticRegression) -> None:
        updates = self._loaded_updates + 1
        self.table[KEY] = {
            "w": {name: float(weight) for name, weight in dict(model._weights).items()},
            "b": float(model.intercept),
            "n": updates,
        }
        self._loaded_updates = updates
