"""River's matrix factorisation on implicit feedback: each use a 1, sampled unused items a 0."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime

import numpy as np
from river import optim, reco

from online.evaluation.baselines._common import Event, LatentFactors
from online.evaluation.baselines.recent_popularity import ScoredByModel

_UNSEEN = -1e9


class RiverMF(ScoredByModel):
    """``river.reco.BiasedMF`` (or ``FunkMF``) learning one event at a time, with sampled negatives.

    Each event is a positive ``(learner, item, 1)``; then ``negatives`` items drawn uniformly
    (seeded) from the items seen so far that the learner has not used are learned as
    ``(learner, item, 0)``. Candidates are ranked by the model's prediction, read from its
    weights without creating any (river's ``predict_one`` would add unseen ids to the model).
    Ties, and learners the model has not seen (cold start), go to :class:`RecentPopularity`.

    Tuned on OULAD AAA 2013J (whole presentation, 11,542 steps, K=10), NDCG@10. BiasedMF, 10
    factors, l2 0.001, by learning rate and negatives per positive:

    ======  =====  =====  =====
    lr      1      3      8
    ======  =====  =====  =====
    0.01    0.488  0.510  0.532
    0.05    0.538  0.566  0.575
    0.1     0.532  0.549  0.544
    ======  =====  =====  =====

    At lr 0.05 and 8 negatives: 5 / 12 negatives 0.573 / 0.568; l2 0 / 0.01 0.574 / 0.575;
    20 factors 0.578. FunkMF (no biases; uniform negatives teach the latent factors the
    popularity the biases would hold): 10 factors 0.579, 20 factors 0.587 (seeds 1, 2: 0.588,
    0.589), 40 factors 0.588; at 10 factors lr 0.03 / 0.1: 0.569 / 0.564. Kept: FunkMF,
    20 factors, SGD lr 0.05, l2 0.001, 8 negatives (0.587). The slowest baseline: about 25 s
    of learning for a presentation (9 river updates per event).

    >>> from datetime import datetime, timezone
    >>> from online.events import ClickEvent
    >>> def click(user, course):
    ...     return ClickEvent(event_id=f"{user}{course}", user_id=user, course_id=course,
    ...                       action="open", event_time=datetime(2024, 5, 1, tzinfo=timezone.utc))
    >>> policy = RiverMF(LatentFactors(n_factors=4, learning_rate=0.05, seed=1), negatives=2)
    >>> for _ in range(30):
    ...     for user in ("u1", "u2", "u3"):
    ...         policy.learn_one(click(user, "popular"))
    ...     policy.learn_one(click("u3", "rare"))
    >>> policy.recommend("u1", ["rare", "popular"], k=2, now=datetime(2024, 5, 2, tzinfo=timezone.utc))
    ['popular', 'rare']
    """

    name = "river-mf"

    def __init__(
        self,
        factors: LatentFactors = LatentFactors(n_factors=20, learning_rate=0.05),
        negatives: int = 8,
        biased: bool = False,
    ):
        super().__init__()
        self.negatives = negatives
        self.biased = biased
        n_factors, learning_rate, l2, seed = factors.n_factors, factors.learning_rate, factors.l2, factors.seed
        self._rng = random.Random(seed)
        initializer = optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed)
        if biased:
            self.model = reco.BiasedMF(
                n_factors=n_factors,
                bias_optimizer=optim.SGD(learning_rate),
                latent_optimizer=optim.SGD(learning_rate),
                l2_bias=l2,
                l2_latent=l2,
                latent_initializer=initializer,
                seed=seed,
            )
        else:
            self.model = reco.FunkMF(
                n_factors=n_factors, optimizer=optim.SGD(learning_rate), l2=l2, initializer=initializer, seed=seed
            )
        self._items: list[str] = []
        self._known: set[str] = set()
        self._used: dict[str, set[str]] = {}
        self._zero = np.zeros(n_factors)

    def learn(self, event: Event) -> None:
        user, item = event.user_id, event.course_id
        if item not in self._known:
            self._known.add(item)
            self._items.append(item)
        used = self._used.setdefault(user, set())
        used.add(item)
        self.model.learn_one(user, item, 1.0)
        if len(used) >= len(self._items):
            return
        for _ in range(self.negatives):
            for _attempt in range(10):
                other = self._items[self._rng.randrange(len(self._items))]
                if other not in used:
                    self.model.learn_one(user, other, 0.0)
                    break

    def score(self, user_id: str, candidates: Sequence[str], now: datetime) -> np.ndarray | None:
        model = self.model
        if user_id not in model.u_latents:
            return None
        latents = np.array([model.i_latents.get(c, self._zero) for c in candidates])
        score = latents @ model.u_latents[user_id]
        if self.biased:
            score = score + np.array([model.i_biases.get(c, 0.0) for c in candidates])
        # An item the model never saw has no estimate: it goes after every item it knows.
        unseen = np.array([c not in self._known for c in candidates], dtype=bool)
        score[unseen] = _UNSEEN
        return score
