"""The 2 KB profile holds for every input the event contract accepts: ids and contexts of up to
256 characters (of up to 4 UTF-8 bytes each), skill tags of up to 128, every event kind, every
modality (text, image and video interests), a full knowledge state, long histories. No shared data
needed: the inputs are generated."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from online.events import ClickEvent, QuizEvent, VideoEvent
from online.mastery import MasteryModel
from online.catalogue import MEDIA_DIM, MODALITIES, context_key
from online.mastery import KnowledgeState
from online.profile import MAX_BYTES, RECENT_BYTES, LearnerProfile, MediaInterest, ProfileTooLarge
from online.recommender import Recommender

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
#: The widest character the contract lets through: 4 bytes in UTF-8.
WIDE = "\U0001d518"


def event(kind: str, i: int, course: str, event_id: str, tags: list[str],
          score: float | None = None) -> ClickEvent | VideoEvent | QuizEvent:
    """An event of ``kind``; a quiz scores ``score`` (by default, one of five scores in turn)."""
    common = {"event_id": event_id, "user_id": "u", "course_id": course, "event_time": START + timedelta(hours=i)}
    if kind == "click":
        return ClickEvent(**common, action="open", item_id=event_id)
    if kind == "video":
        return VideoEvent(**common, video_id=event_id, watched_seconds=30, position_seconds=30, video_length_seconds=60)
    return QuizEvent(**common, quiz_id=event_id, question_id=event_id, skill_tags=tags,
                     score=(i % 5) / 4 if score is None else score)


def learn(events: list, contexts: list[str], language: str) -> LearnerProfile:
    """Each event through the recommender (profile, factors, knowledge), every course with a text,
    an image and a video vector, stored and read back each time, as the worker's table does."""
    recommender, profile, rng = Recommender(explore_share=0.0), LearnerProfile(), np.random.default_rng(0)
    for offset, (e, context) in enumerate(zip(events, contexts)):
        vector = rng.normal(size=384).astype(np.float32)
        media = {modality: rng.normal(size=MEDIA_DIM).astype(np.float32) for modality in MODALITIES}
        recommender.learn_one(profile, e, vector, {"part_of": context, "language": language}, offset=offset,
                              media=media)
        raw = profile.to_bytes()
        assert len(raw) <= MAX_BYTES
        profile = LearnerProfile.from_bytes(raw)
        assert sorted(profile.media) == sorted(MODALITIES) and profile.interest is not None  # no interest dropped
    return profile


@pytest.mark.parametrize("char", ["a", WIDE], ids=["ascii", "4-byte"])
def test_64_events_of_every_kind_with_256_character_ids_and_a_full_knowledge_state_fit(char: str) -> None:
    kinds = ["click", "video", "quiz"] * 22
    tags = [f"{i:03d}" + char * 125 for i in range(64)]  # 64 tags of 128 characters: a full state
    events = [event(kind, i, f"{i:03d}" + char * 253, f"{i:03d}" + char * 253, tags) for i, kind in enumerate(kinds[:64])]
    contexts = [f"{i % 3}" + char * 255 for i in range(64)]
    profile = learn(events, contexts, char * 16)

    assert len(profile.to_bytes()) <= MAX_BYTES
    assert profile.events == 64 and profile.knowledge.answers == sum(e.kind == "quiz" for e in events)
    assert all(profile.has_taken(e.course_id) for e in events)
    # the recent ids kept are the newest, in order, within their budget
    assert profile.recent == [e.course_id for e in events][len(events) - len(profile.recent):]
    assert sum(len(c.encode()) for c in profile.recent) <= RECENT_BYTES
    if char == "a":  # 256 bytes: the newest id fits
        assert len(profile.recent) == 1
    else:  # 1,015 bytes: it does not, so none is kept rather than an older one passing for the latest
        assert profile.recent == []
    assert profile.context == context_key(contexts[-1]) and profile.context.startswith("#")  # kept by its hash


def test_short_ids_keep_all_eight_recent_courses_and_the_context() -> None:
    events = [event("click", i, f"course-{i}", f"e{i}", []) for i in range(20)]
    profile = learn(events, ["module-a"] * 20, "en")
    assert profile.recent == [f"course-{i}" for i in range(12, 20)]
    assert profile.context == "module-a"


contract_id = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=256).filter(
    lambda s: s.strip() == s and s)
contract_tag = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=128).filter(
    lambda s: s.strip() == s and s)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    courses=st.lists(contract_id, min_size=1, max_size=12),
    contexts=st.lists(contract_id, min_size=1, max_size=4),
    tags=st.lists(contract_tag, min_size=0, max_size=64, unique=True),
    language=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=2, max_size=16),
    kinds=st.lists(st.sampled_from(["click", "video", "quiz"]), min_size=1, max_size=80),
)
def test_any_history_the_contract_accepts_fits(courses, contexts, tags, language, kinds) -> None:
    assume(language.strip() == language)
    events = [event(kind, i, courses[i % len(courses)], f"{i}-{courses[i % len(courses)]}", tags)
              for i, kind in enumerate(kinds)]
    profile = learn(events, [contexts[i % len(contexts)] for i in range(len(events))], language)
    assert len(profile.to_bytes()) <= MAX_BYTES
    assert all(profile.has_taken(e.course_id) for e in events)
    last = events[-1].course_id
    assert profile.recent[-1:] == ([last] if len(last.encode()) <= RECENT_BYTES else [])
    context = contexts[(len(events) - 1) % len(contexts)]
    assert profile.context == context_key(context)


def test_a_full_knowledge_state_beside_every_modality_is_kept_whole() -> None:
    """A learner who answered 160 questions wrong over 16 skills and 8 courses (short tags, as
    EdNet's), besides clicks and videos on courses with every modality: nothing is forgotten."""
    kinds = ["quiz"] * 160 + ["click", "video"] * 20
    events = [event(kind, i, f"course-{i % 8:02d}-2013J", f"event-{i:05d}", [f"{i % 16:03d}"], score=0.0)
              for i, kind in enumerate(kinds)]  # every answer wrong: each question joins the missed list
    profile = learn(events, ["AAA-2013J"] * len(events), "en")

    knowledge = profile.knowledge
    assert (len(knowledge.skills), len(knowledge.courses), len(knowledge.missed)) == (16, 8, 128)
    assert len(profile.recent) == 8 and profile.context == "AAA-2013J"


def test_every_other_part_at_its_largest_leaves_the_knowledge_state_at_least_312_bytes() -> None:
    """The worst case of every part but the knowledge state (the table in ``online.profile``): the
    knowledge state forgets skills, then missed questions, to fit, and says how many."""
    wide = "\U0001d518"
    profile = LearnerProfile(
        interest=np.ones(384, dtype=np.float32), weight=1.0, latest_time=1.7e9, recent=["a" * 32] * 8,
        applied_offset=2**40, recent_event_hashes=[2**31] * 16, events=10**6, taken_count=10**6,
        vector_version="v" * 32, context=context_key("m" * 32), language=wide * 16,
        factors=np.ones(20, dtype=np.float32),
        media={modality: MediaInterest(np.ones(MEDIA_DIM, dtype=np.float32), 1.0) for modality in MODALITIES},
        knowledge=KnowledgeState(ability=-1.5, answers=10**5, skills={wide * 128 + str(i): [-1.5, 10**4] for i in range(16)},
                                 courses={60_000 + i: [-1.5, 10**4] for i in range(8)}, missed=list(range(60_000, 60_128))),
    )
    for i in range(16):
        profile.dismissed.add(f"course-{i}", time=1.7e9)
    knowledge_room = MAX_BYTES - (len(msgpack.packb({**profile._state(), "k": None})) - 1)  # None: 1 byte

    raw = profile.to_bytes()
    assert len(raw) <= MAX_BYTES and profile.forgotten == 16 + (128 - len(profile.knowledge.missed))
    assert knowledge_room >= 312
    kept = LearnerProfile.from_bytes(raw).knowledge
    assert kept.skills == {} and len(kept.courses) == 8 and len(kept.missed) >= 80
    assert (kept.answers, kept.missed) == (10**5, list(range(60_128 - len(kept.missed), 60_128)))


def test_a_profile_that_cannot_fit_is_refused_not_written() -> None:
    """A ranking vector far larger than MiniLM's 384 dimensions cannot fit: say so, never exceed."""
    profile = LearnerProfile()
    profile.learn_one(event("click", 0, "c", "e", []), np.ones(2048, dtype=np.float32), offset=0,
                      mastery=MasteryModel())
    with pytest.raises(ProfileTooLarge, match="over the 2048 limit"):
        profile.to_bytes()
