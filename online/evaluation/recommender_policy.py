"""The project's own policy in the evaluation harness: the very code the live worker runs.

:class:`RecommenderPolicy` keeps one :class:`~online.profile.LearnerProfile` per learner, as the
worker's profiles table stores it (:meth:`~online.profile.LearnerProfile.stored`: the interest is
quantised there), and one :class:`~online.recommender.Recommender` (the worker keeps one per partition, each
learning from that partition's learners; here all learners share it, as one partition would).
It remembers each learner's last list so the re-ranker learns from what they take up next, as
the worker does with its latest-recommendations table: here a list answers a learner's day, so
each course they take up that day learns from it (the worker gives a fresh list after each
event). Candidates are the whole catalogue the harness offers; the worker ranks the same ones
when asked by a rank request (``coursestream evaluate --through-kafka`` checks that both give the
same lists). Like the worker's taken table, it keeps every course each learner took, exactly, for
the prerequisite rule.
``vectors`` picks the modalities it ranks with (:data:`VECTOR_ABLATIONS`), for ablations.

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

from online.candidates import shortlist
from online.catalogue import MODALITIES, Catalogue
from online.events import ClickEvent, QuizEvent, VideoEvent
from online.profile import LearnerProfile
from online.recommender import (
    FUSION_LEARNING_RATE,
    LEARNING_RATE,
    NOTHING_SHOWN,
    PRIOR,
    PRIOR_INTERCEPT,
    RERANKED,
    Recommender,
    Shown,
)
from online.reranker import Reranker

#: What each ablation ranks with: its modalities, and whether the fusion learns (else its prior
#: weights stay). Without text the text interest is still kept (media interests move with it)
#: but its similarity weighs 0; ``learned`` is the worker's own configuration.
VECTOR_ABLATIONS = {
    "text": (("text",), False),
    "image": (("image",), False),
    "video": (("video",), False),
    "fused": (("text", *MODALITIES), False),
    "learned": (("text", *MODALITIES), True),
}


def step_id(user_id: str, now: datetime) -> str:
    """The id of a learner's step at ``now``: it seeds exploration here, and names the rank request
    of the step when the worker ranks it (so both explore alike).

    >>> from datetime import timezone
    >>> step_id("u1", datetime(2024, 5, 3, tzinfo=timezone.utc))
    'u1@2024-05-03T00:00:00+00:00'
    """
    return f"{user_id}@{now.isoformat()}"


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
    policy, explore_share, learning_rate
        As the worker's ``COURSESTREAM_POLICIES``, ``COURSESTREAM_EXPLORE_SHARE`` and
        ``COURSESTREAM_RERANKER_LEARNING_RATE`` (0: the re-ranker keeps its prior).
    media
        Course id -> its reduced vector by media modality, if the run has them.
    vectors
        The modalities ranked with: a key of :data:`VECTOR_ABLATIONS`.
    """

    name = "coursestream"

    def __init__(
        self,
        catalogue: Mapping[str, Mapping[str, Any]] | None = None,
        vectors: Mapping[str, np.ndarray] | None = None,
        policy: str = RERANKED,
        explore_share: float = 0.0,
        media: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        vectors_used: str = "learned",
        learning_rate: float = LEARNING_RATE,
    ) -> None:
        modalities, learns = VECTOR_ABLATIONS[vectors_used]
        self.payloads = dict(catalogue or {})
        self.vectors = dict(vectors or {})
        self.media = {course_id: {m: v for m, v in by_modality.items() if m in modalities}
                      for course_id, by_modality in (media or {}).items()}
        self.policy = policy
        self.catalogue = Catalogue()
        for course_id, payload in self.payloads.items():
            self.catalogue.put(course_id, self.vectors.get(course_id), payload, media=self.media.get(course_id))
        prior = PRIOR if "text" in modalities else {**PRIOR, "similarity": 0.0}
        self.recommender = Recommender(reranker=Reranker(prior, PRIOR_INTERCEPT, learning_rate),
                                       explore_share=explore_share,
                                       fusion_learning_rate=FUSION_LEARNING_RATE if learns else 0.0)
        self.profiles: dict[str, LearnerProfile] = {}  # as stored: each event learns from what a reader of the row sees
        self.shown: dict[str, Shown] = {}
        self.taken: dict[str, set[str]] = {}

    def learn_one(self, event: ClickEvent | VideoEvent | QuizEvent) -> None:
        profile = self.profiles.get(event.user_id) or LearnerProfile()
        self.recommender.learn_one(
            profile,
            event,
            self.vectors.get(event.course_id),
            self.payloads.get(event.course_id, {}),
            shown=self.shown.get(event.user_id, NOTHING_SHOWN),
            media=self.media.get(event.course_id),
        )
        _, self.profiles[event.user_id] = profile.stored()
        self.taken.setdefault(event.user_id, set()).add(event.course_id)

    def recommend(self, user_id: str, candidates: Sequence[str], k: int, now: datetime) -> list[str]:
        profile = self.profiles.get(user_id) or LearnerProfile()
        catalogue = self.catalogue
        rows = catalogue.rows(candidates)
        if (rows < 0).any():
            for course_id in candidates:
                if course_id not in catalogue:  # a course the catalogue does not describe: no payload, no vector
                    catalogue.put(course_id, None, {})
            rows = catalogue.rows(candidates)
        listed = shortlist(catalogue, profile, rows, time=now.timestamp(), policy=self.policy,
                           seed=step_id(user_id, now), taken=self.taken.get(user_id, frozenset()))
        [items] = self.recommender.rank(catalogue, [listed], k)
        self.shown[user_id] = Shown.of(items)
        return [item["course_id"] for item in items]
