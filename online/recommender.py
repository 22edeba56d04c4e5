"""The learning and ranking core: learner events in, ranked and explained recommendations out.

One :class:`Recommender` holds what a group of learners shares, all learned online from
their events: course popularity (``online.popularity``), where in learners' paths each course
is taken up (``online.position``), what learners took up next
(``online.transitions``, the collaborative model), latent factors of learners and courses
(``online.factorization``), question difficulty and the repeat weights inside the mastery
model (``online.mastery``), the re-ranker (``online.reranker``) and the exploration bandit
(``online.exploration``). Each learner's own state is their :class:`~online.profile.LearnerProfile`.
The live worker (one Recommender per partition, backed by Faust tables), the replay
evaluation and the tests all drive this same code.

**Learning** (:meth:`Recommender.learn_one`). When a learner takes up a course for the first
time, and before anything moves, the re-ranker learns from it if it was on the learner's last
list (:data:`LEARNING_RATE`): its weights move towards a weighting that would have shown it
higher among the shown courses the learner had not taken; the learned fusion moves the media
features' weights from the same take-up (:data:`FUSION_LEARNING_RATE`); an exploring item
rewards its bandit arm if it was taken up. Then the course's popularity, its place in learners'
paths and the transitions from the learner's recent courses count it. Every click or view,
first or not, counts towards the course's use (what a cohort works on now), and the profile
learns the event (interest, knowledge, taken courses).

**Ranking** (:meth:`Recommender.rank`), a segment of lists at a time, in named steps:

- **candidates** (``online.candidates``): the caller's candidate rows (the vector store's
  nearest, those the last course unlocks, :meth:`Recommender.candidate_ids`; offline, the whole
  catalogue), less what the education rules drop (taken, or prerequisites not taken);
- **features** (``online.features``): one matrix for the segment, a row a candidate;
- **order** (``online.order``): the re-ranker's probabilities in one matrix product, then each
  list's policy (by score, or diverse), the unlocked slot and the exploring slots;
- **explain** (``online.explain``): reasons in words and codes, for the listed items only.

Courses are read as columns of a :class:`~online.catalogue.Catalogue`, the shared models'
course rows through array caches: the work per candidate is a few array elements.

Everything is a function of the events, so a replay gives the same lists: decay uses event
time and exploration draws from a random source seeded by the triggering event's id.

>>> from datetime import datetime, timezone
>>> import numpy as np
>>> from online.events import ClickEvent
>>> from online.profile import LearnerProfile
>>> def click(user, course, day):
...     return ClickEvent(event_id=f"{user}-{course}", user_id=user, course_id=course, action="open",
...                       event_time=datetime(2024, 5, day, tzinfo=timezone.utc))
>>> recommender = Recommender(explore_share=0.0)
>>> vectors = {"intro": np.array([1.0, 0.0]), "loops": np.array([0.9, 0.1]), "art": np.array([0.0, 1.0])}
>>> catalogue = {"intro": {}, "loops": {"prerequisites": ["intro"]}, "art": {}}
>>> for user in ("ann", "bob"):  # others took intro, then loops
...     profile = LearnerProfile()
...     for day, course in enumerate(["intro", "loops"], start=1):
...         _ = recommender.learn_one(profile, click(user, course, day), vectors[course], catalogue[course])
>>> cleo = LearnerProfile()
>>> recommender.learn_one(cleo, click("cleo", "intro", 3), vectors["intro"], {})
True
>>> candidates = [Candidate(c, cleo.similarity(vectors[c]), catalogue[c]) for c in catalogue]  # one list, off the hot path
>>> items = recommender.recommend(cleo, candidates, k=2, time=datetime(2024, 5, 3).timestamp(), seed="e1")
>>> [item.course_id for item in items]
['loops', 'art']
>>> [reason.code for reason in items[0].reasons]
['taken_next_by_others', 'interest_similarity', 'new_in_cohort', 'in_use_now', 'unlocked_by', 'popular_now']
>>> items[0].reasons[-1].text
'Taken up lately by about 2 learners'
"""

from __future__ import annotations

import operator
from collections.abc import Container, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from pydantic import TypeAdapter

from online.candidates import POOL, Shortlist, shortlist
from online.catalogue import MODALITIES, Catalogue, context_key
from online.difficulty import QuestionDifficulty
from online.events import ClickEvent, QuizEvent, RecommendedItem, VideoEvent
from online.exploration import ThompsonExplorer
from online.explain import explain
from online.factorization import CourseFactors
from online.features import COLUMN, FEATURES, MEDIA_FEATURES, features
from online.mastery import MasteryModel
from online.order import DIVERSE, POLICIES, RERANKED, best_first_many, order
from online.popularity import DecayedPopularity
from online.position import PathPosition
from online.profile import LearnerProfile
from online.reranker import Reranker
from online.rows import RowKeys
from online.transitions import NextCourse

__all__ = ["COLUMN", "DIVERSE", "FEATURES", "FUSION_FEATURES", "FUSION_LEARNING_RATE", "NOTHING_SHOWN", "POLICIES", "PRIOR", "PRIOR_INTERCEPT", "RERANKED", "USAGE_HALF_LIFE_DAYS", "Candidate", "Recommender", "Shown"]

#: The re-ranker before it has learned anything. The weights of similarity, popularity, use, what
#: others did next, the latent factors and newly used courses (and the shares) are a listwise fit
#: (softmax over each step's candidates) on OULAD AAA 2013J, whole presentation, with the encoder's
#: vectors, in the evaluation harness (``coursestream evaluate``); 2014J is kept out of the fit. The
#: latent factors' two weights and the path position's are set on the same presentation's NDCG@10,
#: which the softmax fit does not maximise. OULAD has no prerequisites, levels or index times, so
#: those features keep hand-set weights.
PRIOR = {
    "similarity": 3.92, "collaborative": 4.66, "popularity": 0.06, "in_use": 0.46, "factors": 1.02,
    "popularity_share": 0.63, "collaborative_share": 0.97, "in_use_share": 0.85, "factors_share": 1.73,
    "newly_used": 2.2, "unlocks": 1.0, "prerequisites_met": 0.3, "level_fit": 0.5, "novelty": -0.3, "freshness": 0.2,
    "image_similarity": 1.0, "image_known": 0.0, "video_similarity": 1.0, "video_known": 0.0, "path_position": 1.0,
}
PRIOR_INTERCEPT = -4.0
#: The re-ranker's default online step (``Reranker.learn_choice``): from each take-up of a shown
#: course, the groups of :data:`CHOICE_GROUPS` move towards the weighting that would have shown it
#: higher. 0 keeps the prior. On OULAD AAA 2013J NDCG@10 is 0.6256 with it and 0.6236 with the prior
#: alone; the step and its size were set there (steps 0.01 to 0.05, factors 1.25 and 1.5).
LEARNING_RATE = 0.01
#: The weights the online step moves, each group as one (a feature and its share): the fitted
#: ones, whose balance differs from one module to another.
CHOICE_GROUPS = (
    ("similarity",), ("collaborative", "collaborative_share"), ("in_use", "in_use_share"), ("newly_used",),
    ("factors", "factors_share"), ("popularity", "popularity_share"),
)
#: The step of the learned fusion: the media features' weights (``online.features.MEDIA_FEATURES``)
#: learned from every take-up against the shown courses left (``Reranker.learn_list``), from the
#: prior above. Text-only catalogues never move them (their media features are all 0).
FUSION_LEARNING_RATE = 0.05
#: How fast use (every click or view, first or not) fades: a day, so ``in_use`` is what the cohort
#: works on now. On OULAD AAA 2013J NDCG@10 peaks there (half-lives of 0.5, 0.75, 1, 1.5, 3 and 6 days:
#: 0.6214, 0.6221, 0.6218, 0.6214, 0.6208, 0.6193); take-ups (``popularity``) keep 3 days.
USAGE_HALF_LIFE_DAYS = 1.0
#: The weights the learned fusion moves.
FUSION_FEATURES = tuple(name for names in MEDIA_FEATURES.values() for name in names)
_FUSION_COLUMNS = [COLUMN[name] for name in FUSION_FEATURES]
_FEATURE_VALUES = operator.itemgetter(*FEATURES)

LearnerEvent = ClickEvent | VideoEvent | QuizEvent
_ITEMS = TypeAdapter(list[RecommendedItem])


@dataclass(frozen=True, slots=True)
class Candidate:
    """A course offered for ranking: its similarity to the learner's interest, payload, vector."""

    course_id: str
    similarity: float
    payload: Mapping[str, Any] = field(default_factory=dict)
    vector: np.ndarray | None = None
    media: Mapping[str, np.ndarray] | None = None  #: reduced vector by media modality


@dataclass(frozen=True, slots=True)
class Shown:
    """A list as the learner saw it, as learning reads it at their next event: the courses, the
    exploring arm of each (None: ranked), and its items, whose :attr:`features` the re-ranker
    learns from (read only when it learns)."""

    course_ids: tuple[str, ...]
    arms: tuple[str | None, ...]
    items: Sequence[Mapping[str, Any]] = ()

    @classmethod
    def of(cls, items: Sequence[Mapping[str, Any]]) -> Shown:
        """From a list's items in the contract's shape (``online.events.RecommendedItem`` as JSON)."""
        return cls(
            tuple(item["course_id"] for item in items),
            tuple(item.get("exploration_arm") if item.get("explore") else None for item in items),
            items,
        )

    def untaken(self, profile: LearnerProfile, course_id: str) -> Shown:
        """The items the learner had not taken up before ``course_id`` (a list answers every
        take-up until the next one: the worker gives one after every event, a replay one a day)."""
        keep = [j for j, shown_id in enumerate(self.course_ids) if shown_id == course_id or not profile.has_taken(shown_id)]
        if len(keep) == len(self.course_ids):
            return self
        return Shown(tuple(self.course_ids[j] for j in keep), tuple(self.arms[j] for j in keep),
                     [self.items[j] for j in keep] if self.items else ())

    @property
    def features(self) -> np.ndarray:
        """The items' features, a row each (:data:`FEATURES`)."""
        rows = []
        for item in self.items:
            shown_with = item.get("features") or {}
            try:
                rows.append(_FEATURE_VALUES(shown_with))
            except KeyError:  # a list from before a feature was added, or one without features
                rows.append(tuple(shown_with.get(name, 0.0) for name in FEATURES))
        return np.array(rows, dtype=np.float64).reshape(len(self.items), len(FEATURES))


NOTHING_SHOWN = Shown((), ())


@dataclass
class Recommender:
    """What a group of learners shares, learned online; ranks and explains (see the module)."""

    popularity: DecayedPopularity = field(default_factory=DecayedPopularity)
    usage: DecayedPopularity = field(default_factory=lambda: DecayedPopularity(USAGE_HALF_LIFE_DAYS))
    transitions: NextCourse = field(default_factory=NextCourse)
    position: PathPosition = field(default_factory=PathPosition)
    factors: CourseFactors = field(default_factory=CourseFactors)
    reranker: Reranker = field(default_factory=lambda: Reranker(PRIOR, PRIOR_INTERCEPT, LEARNING_RATE))
    explorer: ThompsonExplorer = field(default_factory=ThompsonExplorer)
    mastery: MasteryModel = field(default_factory=MasteryModel)
    explore_share: float = 0.1
    fusion_learning_rate: float = FUSION_LEARNING_RATE

    @classmethod
    def over(
        cls,
        tables: Callable[[str], MutableMapping[str, Any]],
        explore_share: float = 0.1,
        learning_rate: float = LEARNING_RATE,
        fusion_learning_rate: float = FUSION_LEARNING_RATE,
    ) -> Recommender:
        """A recommender whose models keep their state in ``tables(name)``: a stream processor's
        tables; ``learning_rate`` is the re-ranker's SGD step, ``fusion_learning_rate`` the
        learned fusion's."""
        return cls(
            popularity=DecayedPopularity(table=tables("popularity")),
            usage=DecayedPopularity(USAGE_HALF_LIFE_DAYS, table=tables("usage")),
            transitions=NextCourse(table=tables("transitions")),
            position=PathPosition(table=tables("position")),
            factors=CourseFactors(table=tables("factors")),
            reranker=Reranker(PRIOR, PRIOR_INTERCEPT, learning_rate, table=tables("reranker")),
            explorer=ThompsonExplorer(table=tables("explorer")),
            mastery=MasteryModel(difficulty=QuestionDifficulty(table=tables("difficulty")),
                                 weights=tables("mastery")),
            explore_share=explore_share,
            fusion_learning_rate=fusion_learning_rate,
        )

    def learn_one(
        self,
        profile: LearnerProfile,
        event: LearnerEvent,
        vector: np.ndarray | None,
        payload: Mapping[str, Any],
        offset: int | None = None,
        shown: Shown = NOTHING_SHOWN,
        media: Mapping[str, np.ndarray] | None = None,
    ) -> bool:
        """Learn one event into the shared models and the profile; False if it was already applied.

        ``vector``, ``payload`` and ``media`` (reduced vector by media modality) are the engaged
        course's (None and ``{}`` when it is not indexed yet); ``shown`` is the last list
        recommended to this learner.
        """
        if profile.seen(event.event_id, offset):
            return False
        time = event.event_time.timestamp()
        if not profile.has_taken(event.course_id):
            shown = shown.untaken(profile, event.course_id)
            chooses = bool(self.reranker.learning_rate) and event.course_id in shown.course_ids
            left = [j for j, shown_id in enumerate(shown.course_ids) if shown_id != event.course_id]
            # a learner without a media interest was shown no media similarity, nor has the taken course any
            fuses = bool(self.fusion_learning_rate and left and profile.media)
            if chooses or fuses:
                seen = shown.features  # read once, for both
                if chooses:
                    self.reranker.learn_choice(seen, shown.course_ids.index(event.course_id), FEATURES, CHOICE_GROUPS)
                if fuses:
                    self._learn_fusion(profile, media or {}, seen[left])
            for course_id, arm in zip(shown.course_ids, shown.arms):
                if arm is not None:
                    self.explorer.update(arm, float(course_id == event.course_id))
            self.transitions.learn_one(profile.recent, event.course_id, time)
            self.position.learn_one(event.course_id, profile.taken_count)
            self.popularity.learn_one(event.course_id, time, context=context_key(payload.get("part_of")))
        if isinstance(event, ClickEvent | VideoEvent):
            self.usage.learn_one(event.course_id, time)
        profile.factors = self.factors.learn_one(profile.factors, event.course_id, profile.taken, event.event_id)
        return profile.learn_one(
            event, vector, offset=offset, mastery=self.mastery,
            context=payload.get("part_of"), language=payload.get("language"), media=media,
        )

    def _learn_fusion(self, profile: LearnerProfile, media: Mapping[str, np.ndarray], left: np.ndarray) -> None:
        """The learned fusion's step for a take-up (see :data:`FUSION_LEARNING_RATE`): the taken
        course's media features, for the profile before it moves, against the features of the
        shown ones left (a row each)."""
        others = left[:, _FUSION_COLUMNS]
        taken = np.zeros(len(FUSION_FEATURES))
        for modality in MODALITIES:
            similarity = profile.media_similarity(modality, media.get(modality))
            if similarity is not None:
                name, known = MEDIA_FEATURES[modality]
                taken[FUSION_FEATURES.index(name)], taken[FUSION_FEATURES.index(known)] = similarity, 1.0
        if not taken.any() and not others.any():  # text only: nothing to learn, spare the table a write
            return
        self.reranker.learn_list(taken, others, FUSION_FEATURES, self.fusion_learning_rate)

    def fusion_weights(self) -> dict[str, dict[str, float]]:
        """The weight of each modality's similarity (text: the interest's) and, for media, of its
        being known: the fusion as learned so far.

        >>> Recommender().fusion_weights()["weights"]
        {'text': 3.92, 'image': 1.0, 'video': 1.0}
        """
        weights = self.reranker.weights()
        return {
            "weights": {"text": weights["similarity"],
                        **{m: weights.get(MEDIA_FEATURES[m][0], 0.0) for m in MODALITIES}},
            "known": {m: weights.get(MEDIA_FEATURES[m][1], 0.0) for m in MODALITIES},
        }

    def candidate_ids(self, profile: LearnerProfile, k: int, time: float) -> list[str]:
        """Courses to rank besides those nearest the learner's interest: what others took next
        after the learner's recent courses, and what is popular in the learner's context."""
        ids = [course_id for course_id, _ in self.transitions.successors(profile.recent, POOL * k)]
        if profile.context is not None:
            ids += [course_id for course_id, _ in self.popularity.top(POOL * k, time, profile.context)]
        return list(dict.fromkeys(ids))

    def rank(self, catalogue: Catalogue, lists: Sequence[Shortlist], k: int) -> list[list[dict[str, Any]]]:
        """The top ``k`` items of each list, explained, in the contract's shape (see the module):
        features of the whole segment, scores in one product, the best of every list in one
        sort, then each list ordered by its policy and explained."""
        matrix = features(self, catalogue, lists)
        scores = self.reranker.predict_matrix(matrix, FEATURES)
        weights = self.reranker.weights()
        sizes = [len(listed.rows) for listed in lists]
        rows = np.concatenate([listed.rows for listed in lists]) if lists else np.zeros(0, dtype=np.int64)
        best = best_first_many(scores, rows, sizes, catalogue.course_ids, POOL * k)
        ranked, start = [], 0
        for listed, size, top in zip(lists, sizes, best):
            end = start + size
            unit_vectors = None
            if listed.policy == DIVERSE and bool((catalogue.norms[listed.rows] > 0).all()):
                def unit_vectors(picked: list[int], rows: np.ndarray = listed.rows) -> np.ndarray:
                    vectors = catalogue.vectors[rows[picked]]
                    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            picks = order(scores[start:end], matrix[start:end], RowKeys(catalogue.course_ids, listed.rows),
                          unit_vectors, k, listed.policy or RERANKED, self.explorer, self.explore_share, listed.seed, top)
            ranked.append(explain(catalogue, listed.profile, listed.rows, scores[start:end], matrix[start:end], picks,
                                  weights))
            start = end
        return ranked

    def recommend(
        self,
        profile: LearnerProfile,
        candidates: Iterable[Candidate],
        k: int,
        policy: str = RERANKED,
        time: float = 0.0,
        seed: str = "",
        taken: Container[str] | None = None,
    ) -> list[RecommendedItem]:
        """One learner's list from candidates given as objects, validated (:meth:`rank` is the
        same ranking for many lists over a catalogue, as the worker and the harness run it).

        ``time`` (event time, seconds) ages popularity and freshness; ``seed`` (the triggering
        event's id) makes exploration repeatable; ``taken`` is the exact set of what the learner
        took, which prerequisites are checked against (``online.candidates.shortlist``).
        """
        catalogue, rows, similarity = Catalogue(), [], []
        for c in candidates:
            rows.append(catalogue.put(c.course_id, c.vector, c.payload, media=c.media))
            similarity.append(c.similarity)
        listed = shortlist(catalogue, profile, np.array(rows, dtype=np.int64), np.array(similarity, dtype=np.float64),
                           time=time, policy=policy, seed=seed, taken=taken)
        [items] = self.rank(catalogue, [listed], k)
        return _ITEMS.validate_python(items)
