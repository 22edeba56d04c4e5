"""Per-skill mastery, updated online from quiz answers: Elo for learner, course, skill and question,
plus what the learner did the last time they met the question.

The model
---------
The probability of a correct answer is ``sigmoid(z)`` with

    z = ability + course deviation + mean(skill deviations of the question's skills)
        - difficulty(question)
        + w_attempt * log(attempt) + w_missed * missed + w_retry * retry

- ``ability`` is the learner's overall level; the course and skill deviations are how far the
  learner is above it in the course the quiz belongs to and in each skill it tests;
  ``difficulty`` is the question's, shared by all learners. Each moves by an Elo step
  ``K(n) * (outcome - prediction)`` after every answer, where ``K(n)`` shrinks as the estimate
  rests on more answers (Pelánek, "Applications of the Elo rating system in adaptive educational
  systems", 2016; see :func:`online.difficulty.elo_step`).
- ``attempt`` is the event's attempt number, ``missed`` says that the learner's latest answer to
  this question was wrong (the learner keeps the hashes of the last ``max_missed`` such
  questions), and ``retry`` is a repeat that is not among them. Their weights are shared by all
  learners and learned online by logistic SGD on the same residual.

Why this model
--------------
A learner met the same question again in 44% of the EdNet-KT1 answers, and whether they got it
right last time moves the chance of a right answer from 0.56 to 0.88: that is the sharpest signal
a stream holds, and a short list of 2-byte question hashes keeps much of it. The course deviation
captures that TOEIC listening and reading parts are different abilities. On the 16 EdNet-KT1
learners in ``../shared/data`` (``tests/test_mastery.py``) this model reaches a prequential AUC of
0.739, against 0.717 for per-skill Elo alone and 0.584 for BKT fitted offline
(:mod:`online.evaluation.bkt`). Time since the learner last practised a skill added nothing
measurable there, so the state keeps no timestamps. Compared with the alternatives:

- BKT needs four parameters per skill fitted offline (EM over whole sequences) and has no notion
  of one question being harder than another; this model needs no offline fit.
- PFA's success and failure counts never forget, while Elo's step floor lets an estimate follow a
  learner who improves.
- An update is O(skills of the question + ``max_missed``): about 17 µs in Python.

An outcome may be partial credit in [0, 1] (a quiz ``score``), which Elo takes as it is; below
0.5 counts as missed.

Where the state lives
---------------------
- :class:`KnowledgeState` is one learner's. :meth:`~KnowledgeState.to_dict` is compact and
  JSON-friendly (numbers in thousandths as integers, course and question ids as 2-byte hashes), so
  it fits in the learner's 2 KB row (``online.profile``), which calls
  :meth:`~KnowledgeState.shrink` while the row is too large.
- :class:`online.difficulty.QuestionDifficulty` and the weights are shared by all learners, so they
  live apart from any learner's state: in a stream processor, in tables of their own.
- :class:`MasteryModel` combines them. It keeps learners' states itself (keyed by ``x["user"]``),
  or works on a state the caller passes, as a stream processor does.

>>> from online.mastery import KnowledgeState, MasteryModel
>>> model = MasteryModel()
>>> answer = {"user": "ada", "question": "q1", "skills": ["loops", "lists"]}
>>> model.predict_proba_one(answer)
{True: 0.5, False: 0.5}
>>> for question in ("q1", "q2", "q3"):
...     model.learn_one({"user": "ada", "question": question, "skills": ["loops"]}, True)
>>> model.learn_one({"user": "ada", "question": "q4", "skills": ["recursion"]}, 0.0)
>>> model.predict_one({"user": "ada", "question": "q5", "skills": ["loops"]})
True
>>> ada = model.learner("ada")
>>> ada.mastery("loops") > ada.mastery("never practised") > ada.mastery("recursion")
True

Meeting again a question the learner got wrong (``attempt`` 2) lowers the prediction, once the
shared weights have seen that a missed question tends to be missed again:

>>> for i in range(300):
...     model.learn_one({"user": f"u{i}", "question": f"p{i}", "skills": []}, False)
...     model.learn_one({"user": f"u{i}", "question": f"p{i}", "skills": [], "attempt": 2}, False)
>>> again = {"user": "ada", "question": "q4", "skills": ["recursion"], "attempt": 2}
>>> model.predict_proba_one(again)[True] < model.predict_proba_one({**again, "attempt": 1,
...                                                                  "question": "q6"})[True]
True

A stream processor keeps the state in the learner's row and passes it in:

>>> row = {"knowledge": {}}
>>> state = KnowledgeState.from_dict(row["knowledge"])
>>> model = MasteryModel()
>>> model.learn_one({"user": "bob", "question": "q9", "skills": ["loops"], "course": "python"}, 0.25,
...                 state=state)
>>> row["knowledge"] = state.to_dict()
>>> row
{'knowledge': {'a': [-50, 1], 's': {'loops': [-50, 1]}, 'c': [[29450, -50, 1]], 'm': [47713]}}
>>> "bob" in model.learners
False
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from river import base

from online.difficulty import QuestionDifficulty, elo_step, sigmoid
from online.events import QuizEvent

__all__ = ["KnowledgeState", "MasteryModel", "answer_of"]

#: :meth:`KnowledgeState.to_dict` stores logits as integers in these units: far finer than any
#: Elo step, and 3 bytes of msgpack where a float takes 9.
_SCALE = 1000


def _hash16(key: str) -> int:
    """A stable 2-byte hash: a learner's few courses and hundred missed questions rarely collide."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=2).digest(), "little")


def answer_of(event: QuizEvent) -> dict[str, Any]:
    """A quiz event as :class:`MasteryModel` reads it (the question id, or the quiz id without one).

    >>> from datetime import datetime, timezone
    >>> answer_of(QuizEvent(event_id="e", user_id="u", course_id="c", quiz_id="z", correct=True,
    ...                     skill_tags=["s"], attempt=2, event_time=datetime(2024, 5, 1, tzinfo=timezone.utc)))
    {'user': 'u', 'question': 'z', 'skills': ['s'], 'course': 'c', 'attempt': 2}
    """
    return {"user": event.user_id, "question": event.question_id or event.quiz_id, "skills": event.skill_tags,
            "course": event.course_id, "attempt": event.attempt}


@dataclass
class KnowledgeState:
    """One learner's knowledge: a global ability and per-course and per-skill deviations, in logits.

    ``skills`` maps a skill to ``[deviation, answers]``, ``courses`` a course's 2-byte hash to
    the same; both are ordered from least to most recently practised, so the oldest is the first
    to go when the model caps them. ``missed`` holds the hashes of the questions whose latest
    answer was wrong, oldest first.
    """

    ability: float = 0.0
    answers: int = 0
    skills: dict[str, list[Any]] = field(default_factory=dict)
    courses: dict[int, list[Any]] = field(default_factory=dict)
    missed: list[int] = field(default_factory=list)

    def mastery(self, skill: str) -> float:
        """Probability of answering a question of average difficulty on ``skill`` correctly.

        A skill never practised (or no longer kept) gets the learner's overall level.
        """
        entry = self.skills.get(skill)
        return sigmoid(self.ability + (0.0 if entry is None else entry[0]))

    def shrink(self) -> bool:
        """Forget one thing to make the state smaller; False if there is nothing left to forget.

        The least recently practised skill goes first (a skill's name is the largest entry, and
        the one that adds least to predictions), then the oldest missed question, then the least
        recently practised course.
        """
        for kept in (self.skills, self.missed, self.courses):
            if kept:
                del kept[next(iter(kept)) if isinstance(kept, dict) else 0]
                return True
        return False

    def to_dict(self) -> dict[str, Any]:
        """Compact JSON-friendly form, logits in thousandths: ``{"a": [ability, answers],
        "s": {skill: [deviation, answers]}, "c": [[course hash, deviation, answers]], "m": [hash]}``."""
        return {
            "a": [round(self.ability * _SCALE), self.answers],
            "s": {skill: [round(value * _SCALE), n] for skill, (value, n) in self.skills.items()},
            "c": [[course, round(value * _SCALE), n] for course, (value, n) in self.courses.items()],
            "m": list(self.missed),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KnowledgeState:
        """Inverse of :meth:`to_dict`; an empty dict (a new learner's row) gives a fresh state.

        A row written in logits as floats (the form before thousandths) reads as it was meant:

        >>> KnowledgeState.from_dict({"a": [0.25, 3], "s": {"grammar": [-0.5, 2]}}).skills
        {'grammar': [-0.5, 2]}
        >>> KnowledgeState.from_dict({"a": [250, 3], "s": {"grammar": [-500, 2]}}).skills
        {'grammar': [-0.5, 2]}
        """
        ability, answers = data.get("a", (0, 0))
        return cls(
            ability=_logit(ability),
            answers=int(answers),
            skills={skill: [_logit(value), int(n)] for skill, (value, n) in data.get("s", {}).items()},
            courses={int(course): [value / _SCALE, int(n)] for course, value, n in data.get("c", ())},
            missed=list(map(int, data.get("m", ()))),
        )


def _logit(stored: int | float) -> float:
    """A stored logit: thousandths as an int, or (a row in the earlier form) a float as it is."""
    return stored if isinstance(stored, float) else stored / _SCALE


class MasteryModel(base.Classifier):
    """Probability of a correct answer from learner, course, skill, question and the learner's last
    answer to it (see the module).

    Parameters
    ----------
    difficulty
        The shared per-question difficulties; a fresh :class:`QuestionDifficulty` by default.
    weights
        The shared weights of the repeat features (``attempt``, ``missed``, ``retry``), by name;
        a stream processor's table (or a plain dict, the default). Entries are re-assigned on every
        update, as persistent tables require.
    step, decay, min_step
        The learner's uncertainty-dependent Elo step, for the global ability and each course and
        skill alike (each with its own answer count), see :func:`online.difficulty.elo_step`.
    rate
        The SGD step of the shared weights.
    max_skills, max_courses, max_missed
        What one learner keeps, the most recent of each. The learner's row has to stay within
        2 KB with the rest of the profile, which leaves the knowledge state about 850 bytes: a full
        state takes about 770 bytes of msgpack with EdNet's tags (``ednet:tag:78``), two thirds of
        them the missed questions, which predict far more than skills beyond the 16 most recent
        do. A skill or course not practised for a long time is the least reliable estimate
        anyway; when it is practised again it restarts from the learner's global ability.

    ``x`` is ``{"user", "question", "skills"}`` and optionally ``"course"`` and ``"attempt"``
    (1 when absent): the learner, the question (the quiz id when there is no question id), its
    skill tags (possibly none), the course it belongs to and the how-manyth time the learner
    answers it; :func:`answer_of` builds it from a quiz event. The defaults were tuned on half of
    the EdNet-KT1 learners (see ``tests/test_mastery.py``).
    """

    def __init__(
        self,
        difficulty: QuestionDifficulty | None = None,
        weights: MutableMapping[str, float] | None = None,
        step: float = 0.2,
        decay: float = 0.05,
        min_step: float = 0.05,
        rate: float = 0.01,
        max_skills: int = 16,
        max_courses: int = 8,
        max_missed: int = 128,
    ) -> None:
        self.difficulty = QuestionDifficulty() if difficulty is None else difficulty
        self.weights: MutableMapping[str, float] = {} if weights is None else weights
        self.step = step
        self.decay = decay
        self.min_step = min_step
        self.rate = rate
        self.max_skills = max_skills
        self.max_courses = max_courses
        self.max_missed = max_missed
        self.learners: dict[str, KnowledgeState] = {}

    def learner(self, user: str) -> KnowledgeState:
        """The knowledge state this model keeps for ``user``, created empty on first use."""
        return self.learners.setdefault(user, KnowledgeState())

    def _features(self, state: KnowledgeState, x: dict[str, Any]) -> dict[str, float]:
        attempt = int(x.get("attempt", 1))
        missed = _hash16(x["question"]) in state.missed
        return {"attempt": math.log(attempt), "missed": float(missed), "retry": float(attempt > 1 and not missed)}

    def _logit(self, state: KnowledgeState, x: dict[str, Any], skills: list[str], features: dict[str, float]) -> float:
        deviations = [state.skills[skill][0] if skill in state.skills else 0.0 for skill in skills]
        skill_term = sum(deviations) / len(deviations) if deviations else 0.0
        course = state.courses.get(_hash16(x["course"])) if "course" in x else None
        course_term = 0.0 if course is None else course[0]
        repeat = sum(self.weights.get(name, 0.0) * value for name, value in features.items())
        return state.ability + course_term + skill_term - self.difficulty.difficulty(x["question"]) + repeat

    def predict_proba_one(
        self, x: dict[str, Any], state: KnowledgeState | None = None, **kwargs: Any
    ) -> dict[bool, float]:
        """``{True: p, False: 1 - p}`` for answering ``x`` correctly.

        ``state`` is the learner's knowledge state when the caller keeps it; by default the
        model's own for ``x["user"]`` (a fresh one for a learner it has not seen).
        """
        if state is None:
            state = self.learners.get(x["user"], KnowledgeState())
        p = sigmoid(self._logit(state, x, _unique(x.get("skills", ())), self._features(state, x)))
        return {True: p, False: 1.0 - p}

    def learn_one(self, x: dict[str, Any], y: bool | float, state: KnowledgeState | None = None) -> None:
        """Learn from one answer: ``y`` is correct or not, or partial credit in [0, 1].

        ``state`` is the learner's knowledge state when the caller keeps it (a stream
        processor's table row); it is updated in place. By default the model keeps one per
        ``x["user"]``.
        """
        outcome = float(y)
        if not 0.0 <= outcome <= 1.0:
            raise ValueError(f"outcome must be in [0, 1], got {y!r}")
        if state is None:
            state = self.learner(x["user"])
        skills = _unique(x.get("skills", ()))
        features = self._features(state, x)
        residual = outcome - sigmoid(self._logit(state, x, skills, features))

        state.ability += elo_step(state.answers, self.step, self.decay, self.min_step) * residual
        state.answers += 1
        if "course" in x:
            self._step(state.courses, _hash16(x["course"]), residual, self.max_courses)
        for skill in skills:
            self._step(state.skills, skill, residual, self.max_skills)
        self.difficulty.update(x["question"], residual)
        for name, value in features.items():
            if value:
                self.weights[name] = self.weights.get(name, 0.0) + self.rate * residual * value

        question = _hash16(x["question"])
        if question in state.missed:
            state.missed.remove(question)
        if outcome < 0.5:
            state.missed.append(question)
            if len(state.missed) > self.max_missed:
                del state.missed[0]

    def _step(self, deviations: dict[Any, list[Any]], key: Any, residual: float, cap: int) -> None:
        """One Elo step of a deviation, moving it to the most recent end and keeping ``cap`` of them."""
        deviation, answers = deviations.pop(key, (0.0, 0))
        deviations[key] = [deviation + elo_step(answers, self.step, self.decay, self.min_step) * residual, answers + 1]
        while len(deviations) > cap:
            del deviations[next(iter(deviations))]


def _unique(skills: Iterable[str]) -> list[str]:
    """Skills without repeats, in order: a tag listed twice is still one skill."""
    return list(dict.fromkeys(skills))
