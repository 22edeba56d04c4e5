"""Every modality counts: on real photographs (scikit-image's) embedded by the real models, the
learned fusion finds what learners take up by what the courses' images (or videos, keyframes of
the photographs) show, where text cannot; and where the text carries the signal and the images
are noise, the image weight falls and the lists are as good as text alone.

Each learner takes up courses of one theme in a random order; before each take-up after their
first, the recommender ranks the whole catalogue (what they took aside) and the step is a hit if
the course they take next is in the top 10. The first half of the learners teach the shared
models; the hit rate is that of the second half (learning goes on, as in the worker).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from encoders.embedder import Encoders
from encoders.projection import Projection
from encoders.video import temporal_pool
from online.candidates import shortlist
from online.catalogue import Catalogue
from online.events import ClickEvent
from online.profile import LearnerProfile
from online.recommender import FUSION_FEATURES, PRIOR, Recommender, Shown
from streams.tools.photos import PHOTOS, crops

pytestmark = pytest.mark.model

#: What each theme's courses say, where the text carries the signal.
TOPICS = (
    "Python programming: variables, loops, functions and debugging your first programs.",
    "The history of ancient Rome: the republic, the emperors and the fall of the empire.",
    "Organic chemistry: functional groups, reaction mechanisms and synthesis in the laboratory.",
    "Watercolour painting: washes, colour mixing and painting landscapes outdoors.",
    "Microeconomics: supply and demand, markets, prices and the behaviour of firms.",
    "Spanish for beginners: everyday conversation, grammar and pronunciation.",
)
BOILERPLATE = "An online course with short videos, readings and a quiz at the end of every week."
COURSES_PER_THEME = 12
#: Each course video's keyframes: seconds each stands for (a long middle shot between two short ones).
KEYFRAME_SECONDS = (20.0, 90.0, 10.0)
LEARNERS = 96
TAKE_UPS = 4
K = 10
START = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def embedded(encoders: Encoders) -> dict[str, np.ndarray]:
    """The catalogue's real vectors: each course's image and video (three keyframes, other views of
    its theme's photograph, pooled over time) reduced as the encoder service reduces them, the
    boilerplate and each topic's texts."""
    rng = np.random.default_rng(7)
    views = [view for name in PHOTOS for view in crops(name, COURSES_PER_THEME, rng)]
    keyframes = [view for name in PHOTOS for view in crops(name, COURSES_PER_THEME * len(KEYFRAME_SECONDS), rng)]
    projection = Projection(f"{encoders.image.name}@{encoders.image.version}", encoders.image.dim)
    images = np.array([projection.reduce(v) for v in encoders.image.encode(views)])
    frames = encoders.image.encode(keyframes).reshape(len(views), len(KEYFRAME_SECONDS), -1)
    videos = np.array([projection.reduce(temporal_pool(list(video), KEYFRAME_SECONDS)) for video in frames])
    topic_texts = [f"{topic} Lesson {j + 1}." for topic in TOPICS for j in range(COURSES_PER_THEME)]
    texts = encoders.text.encode([BOILERPLATE, *topic_texts])
    return {"images": images, "videos": videos, "boilerplate": texts[0], "topics": np.asarray(texts[1:])}


#: Each course's theme, in catalogue order (its photograph's, and its topic's where the text differs).
THEMES = np.repeat(np.arange(len(PHOTOS)), COURSES_PER_THEME)


def run(text: np.ndarray, media: dict[str, np.ndarray] | None, seed: int = 0) -> tuple[float, Recommender]:
    """The hit rate at 10 of the second half of the learners, and the recommender after them.
    ``text``: each course's text vector; ``media``: each course's reduced vector of each modality
    (None: a text-only catalogue); learners take up the courses of their theme (:data:`THEMES`)."""
    course_ids = [f"course-{i:03d}" for i in range(len(text))]
    catalogue = Catalogue()
    course_media = [None if media is None else {modality: vectors[i] for modality, vectors in media.items()}
                    for i in range(len(text))]
    for i, course_id in enumerate(course_ids):
        catalogue.put(course_id, text[i], {"title": course_id}, media=course_media[i])
    recommender, rng = Recommender(explore_share=0.0), np.random.default_rng(seed)
    hits, steps = 0, 0
    for learner in range(LEARNERS):
        theme = learner % len(TOPICS)
        path = rng.permutation(np.flatnonzero(THEMES == theme))[:TAKE_UPS]
        profile, shown = LearnerProfile(), Shown((), ())
        for step, course in enumerate(path.tolist()):
            when = START + timedelta(days=learner, hours=step)
            if step:
                listed = shortlist(catalogue, profile, np.arange(len(course_ids)), time=when.timestamp(),
                                   seed=f"{learner}-{step}")
                [items] = recommender.rank(catalogue, [listed], K)
                shown = Shown.of(items)
                if learner >= LEARNERS // 2:
                    steps += 1
                    hits += course_ids[course] in shown.course_ids
            event = ClickEvent(event_id=f"{learner}-{step}", user_id=f"learner-{learner}",
                               course_id=course_ids[course], action="open", event_time=when)
            recommender.learn_one(profile, event, text[course], {}, shown=shown, media=course_media[course])
            profile = LearnerProfile.from_bytes(profile.to_bytes())  # as the worker's table stores it
    return hits / steps, recommender


@pytest.mark.parametrize("modality", ["image", "video"])
def test_learned_fusion_finds_what_only_the_images_show(embedded: dict[str, np.ndarray], modality: str) -> None:
    """Every course has the same text; learners take up courses by what their images (or their
    videos' keyframes) show."""
    text = np.tile(embedded["boilerplate"], (len(embedded["images"]), 1))
    text_only, _ = run(text, None)
    fused, recommender = run(text, {modality: embedded[f"{modality}s"]})
    weights = recommender.fusion_weights()["weights"]
    print(f"\n{modality}s carry the signal: hit rate at {K}, text only {text_only:.3f}, learned fusion {fused:.3f}; "
          f"{modality} weight {PRIOR[f'{modality}_similarity']:.2f} -> {weights[modality]:.2f}")
    assert fused >= 0.6 and fused >= text_only + 0.4
    assert weights[modality] > PRIOR[f"{modality}_similarity"]  # learned up from the prior


def test_image_noise_loses_its_weight_and_the_text_keeps_the_quality(embedded: dict[str, np.ndarray]) -> None:
    """The text carries the signal; each course's image is drawn at random, unrelated to its theme."""
    images = embedded["images"][np.random.default_rng(3).permutation(len(embedded["images"]))]
    text_only, _ = run(embedded["topics"], None)
    fused, recommender = run(embedded["topics"], {"image": images})
    weights = recommender.fusion_weights()["weights"]
    print(f"\ntext carries the signal: hit rate at {K}, text only {text_only:.3f}, learned fusion {fused:.3f}; "
          f"image weight {PRIOR['image_similarity']:.2f} -> {weights['image']:.2f}")
    assert weights["image"] < PRIOR["image_similarity"]
    assert fused >= text_only - 0.05
    assert set(FUSION_FEATURES) >= {"image_similarity", "video_similarity"}


def test_the_evaluation_s_vector_ablations_rank_with_their_modalities(embedded: dict[str, np.ndarray]) -> None:
    """``coursestream evaluate --vectors``: with the same text everywhere, the image ablation lists
    the taken course's theme first; the text one cannot tell the themes apart."""
    from online.evaluation.recommender_policy import RecommenderPolicy

    course_ids = [f"course-{i:03d}" for i in range(len(THEMES))]
    vectors = {c: embedded["boilerplate"] for c in course_ids}
    media = {c: {"image": image} for c, image in zip(course_ids, embedded["images"])}
    listed = {}
    for ablation in ("text", "image"):
        policy = RecommenderPolicy({c: {} for c in course_ids}, vectors, media=media, vectors_used=ablation)
        policy.learn_one(ClickEvent(event_id="e", user_id="u", course_id=course_ids[-1], action="open",
                                    event_time=START))
        listed[ablation] = policy.recommend("u", course_ids, K, START + timedelta(hours=1))
    theme = THEMES[-1]
    assert sum(THEMES[course_ids.index(c)] == theme for c in listed["image"]) == K  # 11 left of its theme
    assert sum(THEMES[course_ids.index(c)] == theme for c in listed["text"]) < K // 2
