"""A learner's candidates from a vector store as the worker's candidates step searches them
(``streams.worker.candidates``: nearest to the interest, and what the last course unlocks),
for tests that rank one learner's list without a worker."""

from __future__ import annotations

from online.candidates import nearest_limit
from online.profile import LearnerProfile
from online.recommender import Candidate
from streams.vectorstore import Search, VectorStore


def store_candidates(store: VectorStore, profile: LearnerProfile, k: int, using: str = "text") -> list[Candidate]:
    searches = [Search(profile.interest, nearest_limit(profile, k), exclude=profile.recent)]
    if profile.recent:
        searches.append(Search(profile.interest, k, {"prerequisites": profile.recent[-1]}, exclude=profile.recent))
    hits = [hit for found in store.search(searches, using) for hit in zip(*found)]
    points = store.points(list(dict.fromkeys(course_id for course_id, _ in hits)), using)
    return [Candidate(c, score, points[c].payload, points[c].vectors[using]) for c, score in hits]
