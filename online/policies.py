"""Ranking policies side by side: each learner is assigned one by a stable hash of their id.

The assignment depends on the user id alone, so it is the same on every worker, after every
restart and in replays; every recommendation names the policy that produced it.

>>> assign("learner-42", ["reranked-v3", "reranked-diverse-v3"]) in ("reranked-v3", "reranked-diverse-v3")
True
>>> assign("learner-42", ["reranked-v3"])
'reranked-v3'
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def assign(user_id: str, policies: Sequence[str]) -> str:
    """The policy of ``user_id``: equal shares, by a hash of the id that never changes."""
    bucket = int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "little")
    return policies[bucket % len(policies)]
