"""The learner path's pure steps, without a broker: candidates (the rules), features (one
matrix for a segment), order and explain (``online.recommender.Recommender.rank``)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import numpy as np

from online.candidates import shortlist
from online.catalogue import Catalogue
from online.events import ClickEvent, RecommendedItem
from online.features import COLUMN, features
from online.profile import LearnerProfile
from online.recommender import Recommender

START = datetime(2024, 5, 1, tzinfo=timezone.utc)


def catalogue_of(n: int, seed: int = 0) -> Catalogue:
    rng = np.random.default_rng(seed)
    catalogue = Catalogue()
    for i in range(n):
        payload = {"title": f"Course {i}", "part_of": f"m{i % 3}", "language": "en" if i % 4 else "fr",
                   "model_version": "v1" if i % 5 else "v0", "prerequisites": [f"c{i - 1}"] if i % 7 == 6 else []}
        catalogue.put(f"c{i}", rng.normal(size=8), payload)
    return catalogue


def learner(recommender: Recommender, catalogue: Catalogue, user: str, courses: list[int]) -> LearnerProfile:
    profile = LearnerProfile()
    for day, i in enumerate(courses):
        event = ClickEvent(event_id=f"{user}-{i}-{day}", user_id=user, course_id=f"c{i}", action="open",
                           event_time=START + timedelta(days=day))
        row = catalogue.index[f"c{i}"]
        recommender.learn_one(profile, event, catalogue.vectors[row], catalogue.payloads[row])
    return profile


def test_the_rules_drop_taken_unready_and_other_languages_and_models() -> None:
    catalogue, recommender = catalogue_of(60), Recommender(explore_share=0.0)
    profile = learner(recommender, catalogue, "u", [1, 2, 5])
    rows = np.arange(60)
    listed = shortlist(catalogue, profile, np.concatenate([rows, rows[:10]]), language="en", model_version="v1")
    ids = [catalogue.course_ids[row] for row in listed.rows]
    assert len(ids) == len(set(ids))
    assert not {"c1", "c2", "c5"} & set(ids)
    assert all(catalogue.payloads[row]["language"] == "en" for row in listed.rows)
    assert all(catalogue.payloads[row]["model_version"] == "v1" for row in listed.rows)
    for row in listed.rows:  # prerequisites all taken
        assert all(profile.has_taken(c) for c in catalogue.prerequisites[row])
    assert "c6" in ids and "c13" not in ids  # c6 needs c5 (taken), c13 needs c12 (not)
    assert np.allclose(listed.similarity, catalogue.similarity(profile.interest, listed.rows))


def test_a_segment_ranks_as_each_list_alone() -> None:
    """Features of a segment are each list's own (shares relative to its own best), and the
    segment's lists are what ranking each alone gives."""
    catalogue, recommender = catalogue_of(80), Recommender(explore_share=0.2)
    profiles = [learner(recommender, catalogue, f"u{j}", list(range(j, 40, 3 + j))) for j in range(4)]
    lists = [shortlist(catalogue, p, np.arange(80), time=(START + timedelta(days=30)).timestamp(), seed=f"s{j}")
             for j, p in enumerate(profiles)]
    together = features(recommender, catalogue, lists)
    alone = np.vstack([features(recommender, catalogue, [listed]) for listed in lists])
    assert np.allclose(together, alone)
    assert together[:, COLUMN["collaborative_share"]].max() <= 1.0
    assert recommender.rank(catalogue, lists, 10) == [recommender.rank(catalogue, [listed], 10)[0] for listed in lists]


def test_explained_items_follow_the_contract_and_name_titles() -> None:
    catalogue, recommender = catalogue_of(40), Recommender(explore_share=0.0)
    profile = learner(recommender, catalogue, "u", [5])
    [items] = recommender.rank(catalogue, [shortlist(catalogue, profile, np.arange(40))], 10)
    validated = [RecommendedItem.model_validate(item) for item in items]
    assert [item.rank for item in validated] == list(range(1, 11))
    assert [item.score for item in validated] == sorted((item.score for item in validated), reverse=True)
    unlocked = next(item for item in validated if item.course_id == "c6")  # needs c5, just taken
    assert any(r.code == "unlocked_by" and r.text == "Builds on Course 5, which you just took" for r in unlocked.reasons)
    assert all(item.title == f"Course {item.course_id[1:]}" for item in validated)
    texts = [r.text for item in validated for r in item.reasons]
    assert texts and not any(re.search(r"\bc\d+\b", text) for text in texts), "a reason names a raw course id"
