"""The project's own policy in the evaluation harness: the very code the live worker runs.

:class:`RecommenderPolicy` keeps one :class:`~online.profile.LearnerProfile` per learner and one
:class:`~online.recommender.Recommender` (the worker keeps one per partition, each learning
from that partition's learners; here all learners share it, as one partition would), and
remembers each learner's last list so the re-ranker learns from what they did after it,
exactly as the worker does with its latest-recommendations table. Candidates are the whole
catalogue the harness offers (the worker gets them from the vector store instead).

>>> from datetime import datetime, timezone
>>> from online.events import ClickEvent
>>> def click(user, course, day):
...     return ClickEvent(event_id=f"{user}:{course}", user_id=user, course_id=course, action="open",
...                       event_time=datetime(2024, 5, day, tzinfo=timezone.utc))
>>> policy = RecommenderPolicy(catalogue={"a": {"part_of": "m"}, "b": {"part_of": "m"}, "c": {"part_of": "m"}})
>>> for user in ("u1", "u2"):
...     policy.learn_one(click(user, "a", 1))
...     policy.learn_one(click(user, "c", 2))
>>> policy.learn_one(click("u3", "a", 3))
>>> policy.recommend("u3", ["b", "c"], k=2, now=datetime(2024, 5, 3, tzinfo=timezone.utc))
['c', 'b']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from online.events import ClickEvent, QuizEvent, RecommendedItem, VideoEvent
from online.profile import LearnerProfile
from online.recommender import RERANKED, Candidate, Recommender


class RecommenderPolicy:
    """``online.recommender`` behind the harness's ``Policy`` protocol.

    Parameters
    ----------
    catalogue
        Course id -> payload (``part_of``, ``prerequisites``, ``level``, ``skills``), as the
        vector store would hold it.
    vectors
        Course id -> content vector (the encoder's), if the run has them; without, similarity
        is 0 and interest plays no part.
    policy, explore_share
        As the worker's ``COURSESTREAM_POLICIES`` and ``COURSESTREAM_EXPLORE_SHARE``.
    """

    name = "coursestream"

    def __init__(
        self,
        catalogue: Mapping[str, Mapping[str, Any]] | None = None,
        vectors: Mapping[str, np.ndarray] | None = None,
        policy: str = RERANKED,
        explore_share: float = 0.0,
    ) -> None:
        self.catalogue = dict(catalogue or {})
        self.vectors = dict(vectors or {})
        self.policy = policy
        self.recommender = Recommender(explore_share=explore_share)
        self.profiles: dict[str, LearnerProfile] = {}
        self.shown: dict[str, list[RecommendedItem]] = {}

    def learn_one(self, event: ClickEvent | VideoEvent | QuizEvent) -> None:
        profile = self.profiles.setdefault(event.user_id, LearnerProfile())
        self.recommender.learn_one(
            profile,
            event,
            self.vectors.get(event.course_id),
            self.catalogue.get(event.course_id, {}),
            shown=self.shown.pop(event.user_id, ()),
        )

    def recommend(self, user_id: str, candidates: Sequence[str], k: int, now: datetime) -> list[str]:
        profile = self.profiles.get(user_id) or LearnerProfile()
        offered = []
        for course_id in candidates:
            vector = self.vectors.get(course_id)
            similarity = profile.similarity(vector) if vector is not None else 0.0
            offered.append(Candidate(course_id, similarity, self.catalogue.get(course_id, {}), vector))
        items = self.recommender.recommend(
            profile, offered, k, self.policy, now.timestamp(), seed=f"{user_id}@{now.isoformat()}"
        )
        self.shown[user_id] = items
        return [item.course_id for item in items]
