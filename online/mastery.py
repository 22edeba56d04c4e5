"""Per-skill mastery, updated online from quiz answers: an Elo model of learner and question.

Why Elo rather than BKT or PFA
------------------------------
The model predicts a correct answer with probability

    sigmoid(ability + mean(skill deviations of the question's skills) - difficulty(question))

and after each answer moves every term by an Elo step ``K(n) * (outcome - prediction)``.
Compared with the alternatives:

- BKT needs four parameters per skill fitted offline (EM over whole sequences) and has no
  notion of one question being harder than another; Elo needs no offline fit.
- PFA is a logistic regression over success and failure counts whose weights are also fitted
  offline; its counts never forget, while Elo's step floor lets an estimate follow a learner
  who improves.
- Elo's update is O(number of skills of the question) and its state is two numbers per
  skill, which is what a stream processor with a small per-learner row can afford.

The step size depends on uncertainty (Pelánek, "Applications of the Elo rating system in
adaptive educational systems", 2016): ``K(n) = step / (1 + decay * n)``, with a floor, where
``n`` is how many answers the estimate already rests on (see :func:`online.difficulty.elo_step`).
Learners' abilities keep a larger floor than questions' difficulties: learners learn.
An outcome may be partial credit in [0, 1] (a quiz ``score``), which Elo takes as it is.

Where the state lives
---------------------
- :class:`KnowledgeState` is one learner's: a global ability and, per skill, a deviation from
  it, each with its answer count. It has a compact JSON-friendly :meth:`~KnowledgeState.to_dict`
  so it fits in the learner's row of a partitioned table (one worker owns a learner, and
  processes their events in order).
- :class:`online.difficulty.QuestionDifficulty` is shared by all learners, so it is a separate
  object whose state can live in its own table or be re-learned from the answer log.
- :class:`MasteryModel` combines the two. It keeps learners' states itself (keyed by
  ``x["user"]``), or works on a state the caller passes, as a stream processor does.

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

A stream processor keeps the state in the learner's row and passes it in:

>>> row = {"knowledge": {}}
>>> state = KnowledgeState.from_dict(row["knowledge"])
>>> model.learn_one({"user": "bob", "question": "q9", "skills": ["loops"]}, 0.75, state=state)
>>> row["knowledge"] = state.to_dict()
>>> row
{'knowledge': {'a': [0.05, 1], 's': {'loops': [0.05, 1]}}}
>>> "bob" in model.learners
False
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from river import base

from online.difficulty import QuestionDifficulty, elo_step, sigmoid

__all__ = ["KnowledgeState", "MasteryModel"]

#: Decimals kept by :meth:`KnowledgeState.to_dict`: far finer than any Elo step, and short.
_DECIMALS = 3


@dataclass
class KnowledgeState:
    """One learner's knowledge: a global ability and per-skill deviations, in logits.

    ``skills`` maps a skill to ``[deviation, answers]`` and is ordered from least to most
    recently practised, so the oldest is the first to go when the model caps it.
    """

    ability: float = 0.0
    answers: int = 0
    skills: dict[str, list[Any]] = field(default_factory=dict)

    def mastery(self, skill: str) -> float:
        """Probability of answering a question of average difficulty on ``skill`` correctly.

        A skill never practised (or no longer kept) gets the learner's overall level.
        """
        entry = self.skills.get(skill)
        return sigmoid(self.ability + (0.0 if entry is None else entry[0]))

    def to_dict(self) -> dict[str, Any]:
        """Compact JSON-friendly form: ``{"a": [ability, answers], "s": {skill: [deviation, answers]}}``."""
        return {
            "a": [round(self.ability, _DECIMALS), self.answers],
            "s": {skill: [round(value, _DECIMALS), n] for skill, (value, n) in self.skills.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KnowledgeState:
        """Inverse of :meth:`to_dict`; an empty dict (a new learner's row) gives a fresh state."""
        ability, answers = data.get("a", (0.0, 0))
        skills = {skill: [float(value), int(n)] for skill, (value, n) in data.get("s", {}).items()}
        return cls(ability=float(ability), answers=int(answers), skills=skills)


class MasteryModel(base.Classifier):
    """Probability of a correct answer from learner ability, skill mastery and question difficulty.

    Parameters
    ----------
    difficulty
        The shared per-question difficulties; a fresh :class:`QuestionDifficulty` by default.
    step, decay, min_step
        The learner's uncertainty-dependent Elo step, for the global ability and each skill
        alike (each with its own answer count), see :func:`online.difficulty.elo_step`.
    max_skills
        Skills kept per learner, the most recently practised. The learner's row has to stay
        within about 2 KB with the rest of the profile: 64 skills take about 1.1 KB as JSON
        with short tags like EdNet's (use fewer, or short skill ids, for long tag names).
        A skill not practised for a long time is the least reliable estimate anyway, and when
        it is practised again it restarts from the learner's global ability.

    ``x`` is ``{"user": ..., "question": ..., "skills": [...]}``: the learner, the question
    (the quiz id when there is no question id) and its skill tags, possibly none.
    The defaults were tuned on half of the EdNet-KT1 learners (see ``tests/test_mastery.py``).
    """

    def __init__(
        self,
        difficulty: QuestionDifficulty | None = None,
        step: float = 0.2,
        decay: float = 0.05,
        min_step: float = 0.05,
        max_skills: int = 64,
    ) -> None:
        self.difficulty = QuestionDifficulty() if difficulty is None else difficulty
        self.step = step
        self.decay = decay
        self.min_step = min_step
        self.max_skills = max_skills
        self.learners: dict[str, KnowledgeState] = {}

    def learner(self, user: str) -> KnowledgeState:
        """The knowledge state this model keeps for ``user``, created empty on first use."""
        return self.learners.setdefault(user, KnowledgeState())

    def _logit(self, state: KnowledgeState, question: str, skills: Iterable[str]) -> float:
        deviations = [state.skills[skill][0] if skill in state.skills else 0.0 for skill in skills]
        skill_term = sum(deviations) / len(deviations) if deviations else 0.0
        return state.ability + skill_term - self.difficulty.difficulty(question)

    def predict_proba_one(
        self, x: dict[str, Any], state: KnowledgeState | None = None, **kwargs: Any
    ) -> dict[bool, float]:
        """``{True: p, False: 1 - p}`` for answering ``x`` correctly.

        ``state`` is the learner's knowledge state when the caller keeps it; by default the
        model's own for ``x["user"]`` (a fresh one for a learner it has not seen).
        """
        if state is None:
            state = self.learners.get(x["user"], KnowledgeState())
        p = sigmoid(self._logit(state, x["question"], _unique(x.get("skills", ()))))
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
        question = x["question"]
        skills = _unique(x.get("skills", ()))
        residual = outcome - sigmoid(self._logit(state, question, skills))

        state.ability += elo_step(state.answers, self.step, self.decay, self.min_step) * residual
        state.answers += 1
        for skill in skills:
            # Re-inserting moves the skill to the most recent end of the order.
            deviation, answers = state.skills.pop(skill, (0.0, 0))
            deviation += elo_step(answers, self.step, self.decay, self.min_step) * residual
            state.skills[skill] = [deviation, answers + 1]
        while len(state.skills) > self.max_skills:
            del state.skills[next(iter(state.skills))]
        self.difficulty.update(question, residual)


def _unique(skills: Iterable[str]) -> list[str]:
    """Skills without repeats, in order: a tag listed twice is still one skill."""
    return list(dict.fromkeys(skills))
