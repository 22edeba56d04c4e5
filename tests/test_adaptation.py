"""The re-ranker adapts to a module nobody tuned on, from its own learners' events: over the first
60 days of OULAD BBB 2013B (11,812 steps), the project's policy learning online
(``COURSESTREAM_RERANKER_LEARNING_RATE``, on by default) ranks better than the same policy with
the re-ranker frozen at its prior, which was fitted on module AAA."""

from __future__ import annotations

import pytest

from online.recommender import LEARNING_RATE
from streams.settings import Settings
from streams.tools.evaluation import PROJECT_POLICY, evaluate_log

pytestmark = pytest.mark.model

SLICE = {"presentations": [("BBB", "2013B")], "last_day": 60}


def test_online_learning_of_the_re_ranker_beats_the_frozen_prior(shared_data, encoder_service,
                                                                  tmp_path_factory) -> None:
    cache = tmp_path_factory.mktemp("catalogues")

    def ndcg(learning_rate: float) -> float:
        report = evaluate_log(shared_data / "oulad", "oulad", [PROJECT_POLICY], cache=cache, encoder_url=encoder_service.url,
                              settings=Settings(reranker_learning_rate=learning_rate), **SLICE)
        assert report.steps > 10_000
        return report.overall[PROJECT_POLICY]["ndcg"]

    learned, frozen = ndcg(LEARNING_RATE), ndcg(0.0)
    print(f"NDCG@10 learning online {learned:.4f}, frozen prior {frozen:.4f}")
    assert learned > frozen
