"""The learning and ranking core: learner events in, ranked and explained recommendations out.

One :class:`Recommender` holds what a group of learners shares, all learned online from
their events: course popularity (``online.popularity``), what learners took up next
(``online.transitions``, the collaborative model), latent factors of learners and courses
(``online.factorization``), question difficulty inside the mastery
model (``online.mastery``), the re-ranker (``online.reranker``) and the exploration bandit
(``online.exploration``). Each learner's own state is their :class:`~online.profile.LearnerProfile`.
The live worker (one Recommender per partition, backed by Faust tables), the replay
evaluation and the tests all drive this same code.

**Learning** (:meth:`Recommender.learn_one`). When a learner takes up a course for the first
time, and before anything moves, the re-ranker learns from it (if its learning rate is above
0; by default it keeps its fitted prior, see :data:`LEARNING_RATE`): the course is a positive,
with the features it had for this learner just then, and the courses of the learner's last
list that they left are negatives (with the features they were shown with, together weighing
as much as the positive); an exploring
item rewards its bandit arm if it was taken up. Then the course's popularity and the
transitions from the learner's recent courses count it. Every click or view, first or not,
counts towards the course's use (what a cohort works on now), and the profile learns the
event (interest, knowledge, taken courses).

**Ranking** (:meth:`Recommender.recommend`). Candidates come from the caller (the vector
store: nearest by interest, unlocked by the last course, and the ids of
:meth:`Recommender.candidate_ids`: what others took next, what is popular in the learner's
context; or, offline, the whole catalogue). Then:

- education rules first: a course taken is dropped, and so is one whose prerequisites the
  learner has not taken (a learning path shows it after what it needs);
- each candidate gets the :data:`FEATURES` below (popularity, use and what others did next
  also as a share of the best candidate's: a ranking is relative, while counts grow with the
  population) and the re-ranker's probability that the learner takes it up next;
- policy :data:`RERANKED` orders by that probability; :data:`DIVERSE` picks by maximal
  marginal relevance among the best ``4 k`` (``online.diversity``), so the list is not ten
  near-duplicates;
- the best course the last one has just unlocked always gets a place: progress along a
  curriculum is the point;
- a share of slots (``explore_share``) explores: a bandit arm picks a course the ranking
  would not have shown, marked ``explore`` with its arm;
- every item carries machine-readable reasons, the strongest contribution first, and its
  features (which the re-ranker learns from later).

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
>>> candidates = [Candidate(c, cleo.similarity(vectors[c]), catalogue[c]) for c in catalogue]
>>> items = recommender.recommend(cleo, candidates, k=2, time=datetime(2024, 5, 3).timestamp(), seed="e1")
>>> [item.course_id for item in items]
['loops', 'art']
>>> [reason.code for reason in items[0].reasons]
['taken_next_by_others', 'interest_similarity', 'new_in_cohort', 'in_use_now', 'unlocked_by', 'popular_now']
>>> items[0].reasons[-1].text
'Taken up lately by about 2 learners'
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any, Callable

import numpy as np
from pydantic import TypeAdapter

from online.difficulty import QuestionDifficulty, sigmoid
from online.diversity import mmr
from online.events import ClickEvent, QuizEvent, RecommendedItem, VideoEvent
from online.exploration import ThompsonExplorer
from online.factorization import CourseFactors
from online.mastery import KnowledgeState, MasteryModel
from online.popularity import DecayedPopularity
from online.profile import LearnerProfile
from online.reranker import Reranker
from online.transitions import NextCourse

RERANKED = "reranked-v3"
DIVERSE = "reranked-diverse-v3"
POLICIES = (RERANKED, DIVERSE)

#: The re-ranker's features, each in about [0, 1] (popularity: log1p of decayed take-ups), in the
#: order of the columns of :meth:`Recommender.features`.
FEATURES = (
    "similarity",         # cosine between the learner's interest and the course
    "collaborative",      # share of learners with the same recent courses who took it next
    "popularity",         # log1p(decayed number of learners who took it up lately)
    "in_use",             # log1p(decayed number of uses lately, first or not: what the cohort works on now)
    "factors",            # the learner's and the course's latent factors' dot product (0 if below)
    "newly_used",         # 1 for a course first used just now (in a cohort: just released), halving every 3 days
    "unlocks",            # 1 if the learner's last course is one of its prerequisites
    "prerequisites_met",  # 1 if it has prerequisites (all of them taken, or it is dropped)
    "level_fit",          # 1 when its difficulty is just above the learner's mastery; 0.5 unknown
    "novelty",            # 1 if it is outside the learner's current context (module, programme)
    "freshness",          # 1 for a course indexed just now, halving every 14 days
    "popularity_share",   # popularity over the best candidate's: ranking is relative, counts grow with the cohort
    "collaborative_share",  # collaborative over the best candidate's
    "in_use_share",       # in_use over the best candidate's
    "factors_share",      # factors over the best candidate's
)
#: Features scored relative to the best candidate (``{name}_share``).
SHARED = ("popularity", "collaborative", "in_use", "factors")
#: Column of each feature in :meth:`Recommender.features`.
COLUMN = {name: j for j, name in enumerate(FEATURES)}
_OWN = FEATURES.index("popularity_share")  # the columns before the shares
#: The re-ranker before it has learned anything. The weights of similarity, popularity, use, what
#: others did next, the latent factors and newly used courses (and the shares) are a listwise fit
#: (softmax over each step's candidates) on OULAD AAA 2013J, whole presentation, with the encoder's
#: vectors, in the evaluation harness (``coursestream evaluate``); 2014J is kept out of the fit. OULAD
#: has no prerequisites, levels or index times, so those features keep hand-set weights.
PRIOR = {
    "similarity": 3.92, "collaborative": 4.66, "popularity": 0.06, "in_use": 0.46, "factors": 0.51,
    "popularity_share": 0.63, "collaborative_share": 0.97, "in_use_share": 0.85, "factors_share": 1.08,
    "newly_used": 2.2, "unlocks": 1.0, "prerequisites_met": 0.3, "level_fit": 0.5, "novelty": -0.3, "freshness": 0.2,
}
PRIOR_INTERCEPT = -4.0
#: The re-ranker's default SGD step: 0, it keeps the fitted prior (the worker's
#: ``COURSESTREAM_RERANKER_LEARNING_RATE`` turns learning on). Its negatives are the learner's own
#: last list, a biased sample (the ranking's own top), so they weigh together as much as the
#: positive. On OULAD AAA (whole presentations, NDCG@10; 2014J held out of the prior's fit) no
#: rule beat the prior: 2013J / 2014J 0.6175 / 0.6095 with no learning; at step 0.0005 0.6192 /
#: 0.5859 with each negative at full weight, 0.6133 / 0.6105 weighed so, and 0.6146 / 0.6046
#: with pairwise updates (preferred minus left). Learning is for a catalogue or population
#: unlike the prior's.
LEARNING_RATE = 0.0
#: Difficulty of a course level, on the scale of mastery (probability of a correct answer).
LEVEL_DIFFICULTY = {"beginner": 0.3, "intermediate": 0.55, "advanced": 0.8}
#: How far above current mastery the right difficulty is.
STRETCH = 0.1
FRESH_HALF_LIFE_S = 14 * 86_400.0
NEWLY_USED_HALF_LIFE_S = 3 * 86_400.0
#: How much relevance counts against redundancy in the diverse policy.
DIVERSITY_LAMBDA = 0.7
#: Candidates of each kind the caller should fetch per item wanted.
POOL = 4

LearnerEvent = ClickEvent | VideoEvent | QuizEvent
_ITEMS = TypeAdapter(list[RecommendedItem])


@dataclass(frozen=True, slots=True)
class Candidate:
    """A course offered for ranking: its similarity to the learner's interest, payload, vector."""

    course_id: str
    similarity: float
    payload: Mapping[str, Any] = field(default_factory=dict)
    vector: np.ndarray | None = None


def _halved(ages: np.ndarray, half_life: float) -> np.ndarray:
    """``0.5 ** (age / half_life)``, 1 for an age below 0 (a clock ahead), 0 for ``nan`` (never)."""
    return np.where(np.isnan(ages), 0.0, 0.5 ** (np.maximum(0.0, ages) / half_life))


def level_fit(knowledge: KnowledgeState, payload: Mapping[str, Any]) -> tuple[float, float | None]:
    """How well a course's level suits the learner, and their mastery of its skills (None: unknown).

    The right difficulty is :data:`STRETCH` above what the learner masters: hard enough to
    learn from, not so hard as to fail. Without a level or any quiz answer it is neutral, 0.5.
    """
    difficulty = LEVEL_DIFFICULTY.get(payload.get("level") or "")
    if difficulty is None or knowledge.answers == 0:
        return 0.5, None
    skills = [skill for skill in payload.get("skills") or () if skill in knowledge.skills]
    mastery = float(np.mean([knowledge.mastery(s) for s in skills])) if skills else sigmoid(knowledge.ability)
    return max(0.0, 1.0 - 2.0 * abs(difficulty - (mastery + STRETCH))), mastery


@dataclass
class Recommender:
    """What a group of learners shares, learned online; ranks and explains (see the module)."""

    popularity: DecayedPopularity = field(default_factory=DecayedPopularity)
    usage: DecayedPopularity = field(default_factory=DecayedPopularity)
    transitions: NextCourse = field(default_factory=NextCourse)
    factors: CourseFactors = field(default_factory=CourseFactors)
    reranker: Reranker = field(default_factory=lambda: Reranker(PRIOR, PRIOR_INTERCEPT, LEARNING_RATE))
    explorer: ThompsonExplorer = field(default_factory=ThompsonExplorer)
    mastery: MasteryModel = field(default_factory=MasteryModel)
    explore_share: float = 0.1

    @classmethod
    def over(
        cls,
        tables: Callable[[str], MutableMapping[str, Any]],
        explore_share: float = 0.1,
        learning_rate: float = LEARNING_RATE,
    ) -> Recommender:
        """A recommender whose models keep their state in ``tables(name)``: a stream processor's
        tables; ``learning_rate`` is the re-ranker's SGD step."""
        return cls(
            popularity=DecayedPopularity(table=tables("popularity")),
            usage=DecayedPopularity(table=tables("usage")),
            transitions=NextCourse(table=tables("transitions")),
            factors=CourseFactors(table=tables("factors")),
            reranker=Reranker(PRIOR, PRIOR_INTERCEPT, learning_rate, table=tables("reranker")),
            explorer=ThompsonExplorer(table=tables("explorer")),
            mastery=MasteryModel(difficulty=QuestionDifficulty(table=tables("difficulty"))),
            explore_share=explore_share,
        )

    def learn_one(
        self,
        profile: LearnerProfile,
        event: LearnerEvent,
        vector: np.ndarray | None,
        payload: Mapping[str, Any],
        offset: int | None = None,
        shown: Sequence[RecommendedItem] = (),
    ) -> bool:
        """Learn one event into the shared models and the profile; False if it was already applied.

        ``vector`` and ``payload`` are the engaged course's (None and ``{}`` when it is not
        indexed yet); ``shown`` is the last list recommended to this learner.
        """
        if profile.seen(event.event_id, offset):
            return False
        time = event.event_time.timestamp()
        if not profile.has_taken(event.course_id):
            if self.reranker.learning_rate:  # else the prior stays: spare the positive's features
                similarity = profile.similarity(vector) if vector is not None else 0.0
                taken_up = Candidate(event.course_id, similarity, payload)
                # its shares are taken against what the learner could have been offered instead
                offered = self.candidate_ids(profile, POOL, time)
                others = [Candidate(c, 0.0) for c in offered if c != event.course_id and not profile.has_taken(c)]
                features = self.features(profile, [taken_up, *others], time)[0]
                self.reranker.learn_one(dict(zip(FEATURES, features.tolist())), True)
                left = [item for item in shown if item.course_id != event.course_id and item.features]
                for item in left:  # together they weigh as much as the positive (see LEARNING_RATE)
                    self.reranker.learn_one(item.features, False, w=1.0 / len(left))
            for item in shown:
                if item.explore and item.exploration_arm:
                    self.explorer.update(item.exploration_arm, float(item.course_id == event.course_id))
            self.transitions.learn_one(profile.recent, event.course_id, time)
            self.popularity.learn_one(event.course_id, time, context=payload.get("part_of"))
        if isinstance(event, ClickEvent | VideoEvent):
            self.usage.learn_one(event.course_id, time)
        profile.factors = self.factors.learn_one(profile.factors, event.course_id, profile.has_taken, event.event_id)
        return profile.learn_one(
            event, vector, offset=offset, mastery=self.mastery,
            context=payload.get("part_of"), language=payload.get("language"),
        )

    def candidate_ids(self, profile: LearnerProfile, k: int, time: float) -> list[str]:
        """Courses to rank besides those nearest the learner's interest: what others took next
        after the learner's recent courses, and what is popular in the learner's context."""
        ids = [course_id for course_id, _ in self.transitions.successors(profile.recent, POOL * k)]
        if profile.context is not None:
            ids += [course_id for course_id, _ in self.popularity.top(POOL * k, time, profile.context)]
        return list(dict.fromkeys(ids))

    def features(self, profile: LearnerProfile, candidates: Sequence[Candidate], time: float) -> np.ndarray:
        """The :data:`FEATURES` of each candidate for this learner at ``time``, a row a candidate
        (columns: :data:`COLUMN`); shares are relative to the best of ``candidates``."""
        ids = [c.course_id for c in candidates]
        payloads = [c.payload for c in candidates]
        prerequisites = [payload.get("prerequisites") or () for payload in payloads]
        collaborative = self.transitions.scores(profile.recent)
        last = profile.recent[-1] if profile.recent else None
        context = profile.context
        popularity, _ = self.popularity.predict_many(ids, time)
        in_use, first_used = self.usage.predict_many(ids, time)
        indexed_at = np.array([payload.get("indexed_at") or np.nan for payload in payloads], dtype=np.float64)
        matrix = np.zeros((len(candidates), len(FEATURES)))
        for name, values in (
            ("similarity", [c.similarity for c in candidates]),
            ("collaborative", [collaborative.get(course_id, 0.0) for course_id in ids]),
            ("popularity", np.log1p(popularity)),
            ("in_use", np.log1p(in_use)),
            ("factors", np.maximum(0.0, self.factors.scores(profile.factors, ids))),
            ("newly_used", _halved(time - first_used, NEWLY_USED_HALF_LIFE_S)),
            ("unlocks", [last is not None and last in required for required in prerequisites]),
            ("prerequisites_met", [bool(required) for required in prerequisites]),
            ("level_fit", [level_fit(profile.knowledge, payload)[0] for payload in payloads]),
            ("novelty", [context is not None and payload.get("part_of") not in (None, context) for payload in payloads]),
            ("freshness", _halved(time - indexed_at, FRESH_HALF_LIFE_S)),
        ):
            matrix[:, COLUMN[name]] = values
        for name in SHARED:
            column = matrix[:, COLUMN[name]]
            best = column.max(initial=0.0)
            if best > 0:
                matrix[:, COLUMN[f"{name}_share"]] = column / best
        return matrix

    def recommend(
        self,
        profile: LearnerProfile,
        candidates: Iterable[Candidate],
        k: int,
        policy: str = RERANKED,
        time: float = 0.0,
        seed: str = "",
    ) -> list[RecommendedItem]:
        """The top ``k`` courses the learner has not taken and is ready for, with reasons, by ``policy``.

        ``time`` (event time, seconds) ages popularity and freshness; ``seed`` (the triggering
        event's id) makes exploration repeatable.
        """
        pool: dict[str, Candidate] = {}
        for c in candidates:
            prerequisites = c.payload.get("prerequisites") or ()
            if c.course_id not in pool and not profile.has_taken(c.course_id) and all(map(profile.has_taken, prerequisites)):
                pool[c.course_id] = c
        ready = list(pool.values())
        features = self.features(profile, ready, time)
        scores = self.reranker.predict_matrix(features, FEATURES)
        order = sorted(range(len(ready)), key=lambda i: (-scores[i], ready[i].course_id))
        rng = random.Random(seed)
        explore = int(self.explore_share * k) + (rng.random() < (self.explore_share * k) % 1)
        exploit = max(0, k - explore)
        chosen = order[:exploit]
        if policy == DIVERSE and ready and all(c.vector is not None for c in ready):
            top = order[: POOL * k]
            vectors = np.stack([ready[i].vector for i in top]).astype(np.float32)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            chosen = [top[j] for j in mmr([scores[i] for i in top], vectors, exploit, DIVERSITY_LAMBDA)]
        unlocked = [i for i in order if features[i, COLUMN["unlocks"]]]
        if unlocked and exploit and not any(i in chosen for i in unlocked):
            chosen = [*chosen[: exploit - 1], unlocked[0]]  # one slot is kept for the next step of the curriculum
        picks = [(i, None) for i in chosen]
        for _ in range(explore):
            arm_picks = self._exploration_picks(ready, features, {i for i, _ in picks}, rng)
            if not arm_picks:
                break
            arm = self.explorer.pull(rng, sorted(arm_picks))
            picks.insert(rng.randint(min(2, len(picks)), len(picks)), (arm_picks[arm], arm))
        weights = self.reranker.weights()
        rows = features[[i for i, _ in picks]]
        # validated in one call: a model built per reason and item cost most of the explaining
        return _ITEMS.validate_python([
            {
                "course_id": ready[i].course_id,
                "rank": position,
                "score": round(scores[i], 6),
                "reasons": self._reasons(profile, ready[i], dict(zip(FEATURES, row)), weights, arm),
                "explore": arm is not None,
                "exploration_arm": arm,
                "features": dict(zip(FEATURES, rounded)),
            }
            for position, (i, arm), row, rounded in zip(count(1), picks, rows.tolist(), rows.round(4).tolist())
        ])

    @staticmethod
    def _exploration_picks(
        ready: Sequence[Candidate], features: np.ndarray, taken: set[int], rng: random.Random
    ) -> dict[str, int]:
        """What each exploration arm would pick among the candidates not in the list yet."""
        left = [i for i in range(len(ready)) if i not in taken]
        if not left:
            return {}

        def best(values: Sequence[float]) -> int:
            return max(left, key=lambda i: (values[i], ready[i].course_id))

        picks = {"similar": best(features[:, COLUMN["similarity"]].tolist()), "random": rng.choice(left)}
        for arm, feature in (("collaborative", "collaborative"), ("popular", "popularity"), ("fresh", "freshness")):
            values = features[:, COLUMN[feature]].tolist()
            if any(values[i] > 0 for i in left):
                picks[arm] = best(values)
        return picks

    def _reasons(
        self,
        profile: LearnerProfile,
        candidate: Candidate,
        x: Mapping[str, float],
        weights: Mapping[str, float],
        arm: str | None,
    ) -> list[dict[str, Any]]:
        """Why, strongest contribution to the score first; an exploring item says so first."""
        last = profile.recent[-1] if profile.recent else None
        prerequisites = list(candidate.payload.get("prerequisites") or ())
        found: list[tuple[float, dict[str, Any]]] = []

        def add(feature: str, reason: dict[str, Any]) -> None:
            share = f"{feature}_share"
            found.append((weights.get(feature, 0.0) * x[feature] + weights.get(share, 0.0) * x.get(share, 0.0), reason))

        if x["similarity"] > 0:
            add("similarity", {"code": "interest_similarity", "value": round(x["similarity"], 4),
                               "text": f"Close to what you engaged with recently (cosine {x['similarity']:.2f})"})
        if x["collaborative"] >= 0.01:
            add("collaborative", {"code": "taken_next_by_others", "course_id": last, "value": round(x["collaborative"], 4),
                                  "text": f"Learners who took what you took recently went on to it "
                                          f"({x['collaborative']:.0%})"})
        if x["popularity"] > 0:
            takers = math.expm1(x["popularity"])
            add("popularity", {"code": "popular_now", "value": round(takers, 2),
                               "text": f"Taken up lately by about {takers:.0f} learners"})
        if x["in_use"] > 0:
            uses = math.expm1(x["in_use"])
            add("in_use", {"code": "in_use_now", "value": round(uses, 2),
                           "text": f"In use by your cohort: about {uses:.0f} visits lately"})
        if x["factors"] > 0:
            add("factors", {"code": "used_by_learners_like_you", "value": round(x["factors"], 4),
                            "text": "Learners whose history is like yours use it"})
        if x["newly_used"] >= 0.5:
            add("newly_used", {"code": "new_in_cohort", "text": "Your cohort started on it in the last days"})
        if x["unlocks"]:
            add("unlocks", {"code": "unlocked_by", "course_id": last, "text": f"Builds on {last}, which you just took"})
        elif prerequisites:
            add("prerequisites_met", {"code": "prerequisites_met", "course_id": prerequisites[0],
                                      "text": f"You have taken what it builds on: {', '.join(prerequisites[:3])}"})
        fit, mastery = level_fit(profile.knowledge, candidate.payload)
        if mastery is not None and fit >= 0.5:
            add("level_fit", {"code": "matches_level", "value": round(mastery, 3),
                              "text": f"{candidate.payload['level'].capitalize()}: just above your mastery "
                                      f"({mastery:.2f}) of what it teaches"})
        if x["freshness"] >= 0.5:
            add("freshness", {"code": "new_course", "text": "Recently added to the catalogue"})
        reasons = [reason for _, reason in sorted(found, key=lambda item: -item[0])]
        if arm is not None:
            reasons.insert(0, {"code": "exploration", "text": f"Something different to try (exploring: {arm})"})
        return reasons
