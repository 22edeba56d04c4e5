"""Step 3, candidates: each wanted list's candidates, one vector-store call for the segment.

The sources and their sizes are ``online.candidates``' policy: the nearest to the learner's
interests (one query of a prefetch per modality they have an interest in, fused by Qdrant) and those their last course unlocks come from one batch of store searches for the
whole segment; what others took next and what is popular in the learner's context come from
the partition's models, read from the catalogue (one store call for the courses it lacks).
A list that comes back shorter than ``k`` is searched once more, :data:`WIDER`.
"""

from __future__ import annotations

from collections.abc import Sequence

from online.candidates import Shortlist, apply_rules, merge, nearest_limit, unlocked_by_last
from streams.faust_fixes import processing
from streams.vectorstore import MEDIA_VECTORS, Search
from streams.worker.course_index import course_index
from streams.worker.learn import Wanted

#: How much wider the second candidate search is when the first leaves fewer than k.
WIDER = 5


async def _shortlists(wanted: Sequence[Wanted], k: int, scale: int) -> list[Shortlist]:
    version = course_index.model_version
    others = []
    for w in wanted:
        with processing(w.event):  # the models read their partition's rows
            others.append(w.engine.candidate_ids(w.profile, k, w.time))
    await course_index.ensure([course_id for ids in others for course_id in ids])
    searches: list[Search] = []
    for w in wanted:
        profile = w.profile
        if profile.interest is None:
            continue
        match = {"model_version": version} if version else {}
        if profile.language:
            match["language"] = profile.language
        media = {MEDIA_VECTORS[modality]: interest.vector for modality, interest in profile.media.items()}
        searches.append(Search(profile.interest, nearest_limit(profile, scale * k), match, exclude=profile.recent,
                               media=media))
        if profile.recent:
            searches.append(Search(profile.interest, scale * k, {**match, "prerequisites": profile.recent[-1]},
                                   exclude=profile.recent))
    found = iter(await course_index.search(searches))
    catalogue = course_index.catalogue
    offered = []
    for w, ids in zip(wanted, others):
        profile = w.profile
        if profile.interest is None:  # nothing to search near: what the last course unlocks, as far as known
            sources = [(unlocked_by_last(catalogue, profile, scale * k), None)]
        else:
            sources = [next(found)]  # nearest
            if profile.recent:
                sources.append(next(found))  # unlocked
        sources.append((catalogue.rows(ids), None))
        rows, similarity = merge(sources)
        offered.append(Shortlist(profile, rows, similarity, w.time, w.policy, w.seed, w.taken))
    return apply_rules(catalogue, offered, languages=[w.profile.language for w in wanted], model_version=version)


async def candidates(wanted: Sequence[Wanted], k: int) -> list[Shortlist]:
    """The shortlist of each wanted list (see the module)."""
    lists = await _shortlists(wanted, k, 1)
    short = [i for i, listed in enumerate(lists) if len(listed.rows) < k]
    if short:
        for i, listed in zip(short, await _shortlists([wanted[i] for i in short], k, WIDER)):
            lists[i] = listed
    return lists
