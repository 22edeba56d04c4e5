"""Exploration: a Thompson-sampling bandit that decides how an exploring slot is filled.

A ranking that only exploits never learns about courses it does not already rank high, and a
new course would never get its first take-ups. So a small share of slots explores, and a
bandit chooses among ways (arms) of picking an item the ranking would not have shown: the
most similar course not in the list, the one others most often learned next, the most popular
one, the most recently indexed one, or one at random. An arm is rewarded when the learner
takes up the course it picked before anything else: the bandit learns which kind of
exploration pays, per partition of learners.

Thompson sampling over Beta posteriors (one per arm); it follows river's bandit protocol
(``pull`` an arm, ``update`` it with a reward) but takes its random source per call, so a
replay of the same events explores exactly the same way, and keeps its counts in a mapping the
caller provides, so a stream processor's table can back it.

>>> import random
>>> from online.exploration import ThompsonExplorer
>>> explorer = ThompsonExplorer(arms=("popular", "random"))
>>> for _ in range(50):
...     explorer.update("popular", 1.0)
...     explorer.update("random", 0.0)
>>> rng = random.Random(7)
>>> [explorer.pull(rng) for _ in range(5)]
['popular', 'popular', 'popular', 'popular', 'popular']
>>> explorer.table["random"]
[1.0, 51.0]
"""

from __future__ import annotations

import random
from collections.abc import MutableMapping, Sequence
from typing import Any

ARMS = ("similar", "collaborative", "popular", "fresh", "random")


class ThompsonExplorer:
    """Beta-Bernoulli Thompson sampling over exploration arms.

    Parameters
    ----------
    arms
        The ways of picking an exploring item.
    table
        Where the state lives: arm -> ``[alpha, beta]`` (successes and failures, plus the
        uniform prior's 1 each); a dict by default.
    """

    def __init__(self, arms: Sequence[str] = ARMS, table: MutableMapping[str, Any] | None = None) -> None:
        self.arms = tuple(arms)
        self.table: MutableMapping[str, Any] = {} if table is None else table

    def pull(self, rng: random.Random, among: Sequence[str] | None = None) -> str:
        """The arm to play now (of ``among``, the arms that can pick something this time)."""
        def draw(arm: str) -> float:
            alpha, beta = self.table.get(arm) or (1.0, 1.0)
            return rng.betavariate(alpha, beta)

        return max(among or self.arms, key=draw)

    def update(self, arm: str, reward: float) -> None:
        """Reward in [0, 1]: did the learner take up what the arm picked."""
        alpha, beta = self.table.get(arm) or (1.0, 1.0)
        self.table[arm] = [alpha + reward, beta + 1.0 - reward]
