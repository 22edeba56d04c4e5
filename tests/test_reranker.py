"""The re-ranker's batched scoring gives river's own predict_one, row for row."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from online.recommender import FEATURES, PRIOR, PRIOR_INTERCEPT
from online.reranker import Reranker

value = st.floats(min_value=-1.0, max_value=6.0, allow_nan=False)
row = st.fixed_dictionaries({name: value for name in FEATURES})


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(row, min_size=1, max_size=40), learned=st.lists(st.tuples(row, st.booleans()), max_size=20))
def test_predict_matrix_is_predict_one_of_each_row(rows, learned) -> None:
    reranker = Reranker(PRIOR, PRIOR_INTERCEPT, learning_rate=0.005)
    for x, y in learned:  # weights moved away from the prior, as in a running worker
        reranker.learn_one(x, y)
    batched = reranker.predict_matrix(np.array([[x[name] for name in FEATURES] for x in rows]), FEATURES)
    one_by_one = [reranker.predict_one(x) for x in rows]
    assert batched == pytest.approx(one_by_one, rel=0, abs=1e-12)
    # the ranking the recommender makes from them is the same
    def order(scores: list[float]) -> list[int]:
        return sorted(range(len(rows)), key=lambda i: (-round(scores[i], 9), i))

    assert order(batched) == order(one_by_one)


def test_predict_matrix_of_nothing_is_empty() -> None:
    assert Reranker(PRIOR, PRIOR_INTERCEPT).predict_matrix(np.zeros((0, len(FEATURES))), FEATURES).tolist() == []


def test_predict_matrix_clamps_as_river_does() -> None:
    reranker = Reranker({"similarity": 100.0}, 0.0)
    rows = [{"similarity": 1.0}, {"similarity": -1.0}]
    assert reranker.predict_matrix(np.array([[1.0], [-1.0]]), ["similarity"]).tolist() == [
        reranker.predict_one(x) for x in rows] == [1.0, 0.0]
