"""From courses to vectors: the loaded models behind dynamic batchers, and the fusion of their outputs.

A course's text vector embeds :func:`course_text` (its video's transcript included); its image
vector pools the vectors of its images and of its video (itself the temporal pool of its keyframes); its
fused vector combines the two (see ``encoders.fusion``). Its reduced vectors ``image_reduced``
(its images alone) and ``video_reduced`` (its video alone) are the ranking's media vectors, each
only for a course that has that medium (see ``encoders.projection``). Pictures are embedded as soon as they are decoded
(:meth:`Embedder.embed_pictures`), so what waits for the rest of a course is a vector, not an
image. The HTTP service and the benchmark both drive an :class:`Embedder`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from encoders.batching import Batcher
from encoders.fusion import Fusion, pool
from encoders.image import ImageEncoder
from encoders.projection import Projection
from encoders.settings import EncoderSettings
from encoders.text import TextEncoder
from encoders.video import Keyframe, VideoEncoder, temporal_pool

#: Bump when the vectors change while the models do not (text joining, pooling, fusion, image scaling).
VECTOR_FORMAT = 3


def course_text(title: str, description: str = "", syllabus: str = "", *transcripts: str) -> str:
    """The text a course's text vector embeds: its non-empty fields, stripped, one per line.

    The order is title, description, syllabus, then transcripts (the course's, its video's):
    the model reads only the first 256 tokens, so what says most about a course comes first.

    >>> course_text(" Python for Everybody ", "Learn to program.", "", "Hello and welcome.")
    'Python for Everybody\\nLearn to program.\\nHello and welcome.'
    """
    parts = (title, description, syllabus, *transcripts)
    return "\n".join(part.strip() for part in parts if part.strip())


@dataclass(frozen=True)
class Encoders:
    """The loaded text and image models: the slow part to start, shareable between apps."""

    text: TextEncoder
    image: ImageEncoder

    @classmethod
    def load(cls, settings: EncoderSettings) -> Encoders:
        """Load and warm up the configured models, from local files only."""
        text = TextEncoder(settings.text_model, settings.device)
        return cls(text, ImageEncoder(settings.image_model, settings.device))


@dataclass
class Course:
    """One course to embed: its text, the vectors of its images, and its video's vector (its pooled
    keyframes: in the image vector a video counts as much as one image however many frames it has)."""

    id: str
    text: str
    images: list[np.ndarray] = field(default_factory=list)
    video: np.ndarray | None = None


class Embedder:
    """Embeds courses with dynamic batching; start it with ``async with``.

    ``on_batch(modality, size)`` is called for each forward pass (for metrics).
    """

    def __init__(
        self,
        settings: EncoderSettings,
        encoders: Encoders,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        self.encoders = encoders
        self.video = VideoEncoder(encoders.image, settings.video_frames, settings.max_image_pixels)
        self.fusion = Fusion(settings.text_weight, settings.image_weight, encoders.image.dim)
        self.projection = Projection(f"{encoders.image.name}@{encoders.image.version}", encoders.image.dim)
        # One inference thread for both models: concurrent passes would only fight over the
        # same cores (or GPU), and the event loop never waits on a model.
        executor = ThreadPoolExecutor(1, thread_name_prefix="encoder")
        self.text_batcher: Batcher[str, np.ndarray] = _batcher(
            settings, encoders.text.encode, executor, "text", on_batch
        )
        self.image_batcher: Batcher[Image.Image, np.ndarray] = _batcher(
            settings, encoders.image.encode, executor, "image", on_batch
        )
        versions = {
            "format": VECTOR_FORMAT,
            "text": encoders.text.version,
            "max_tokens": encoders.text.max_tokens,
            "image": encoders.image.version,
            "video": self.video.version,
            "weights": [self.fusion.text_weight, self.fusion.image_weight],
            "projection": self.projection.version,
        }
        digest = hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()
        #: Changes when a model, the token limit, the frame count, the weights, the projection or the format change.
        self.model_version = f"enc-{digest[:12]}"

    async def __aenter__(self) -> Embedder:
        self.text_batcher.start()
        self.image_batcher.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.text_batcher.stop()
        await self.image_batcher.stop()

    def info(self) -> dict[str, Any]:
        """Model names, versions and vector sizes (the body of ``GET /v1/info``)."""
        text, image = self.encoders.text, self.encoders.image
        return {
            "model_version": self.model_version,
            "models": {
                "text": {"name": text.name, "version": text.version, "dim": text.dim},
                "image": {"name": image.name, "version": image.version, "dim": image.dim},
            },
            "vectors": {"text": text.dim, "image": image.dim, "fused": text.dim + image.dim,
                        "image_reduced": self.projection.matrix.shape[1], "video_reduced": self.projection.matrix.shape[1]},
        }

    async def embed_pictures(self, pictures: Sequence[Image.Image]) -> list[np.ndarray]:
        """Each picture's vector, from shared forward passes; raises ``Busy`` when the queue is full."""
        return await self.image_batcher.submit(pictures)

    async def embed_video(self, keyframes: Sequence[Keyframe]) -> np.ndarray:
        """A video's vector: the temporal pool of its keyframes' vectors (``encoders.video``)."""
        vectors = await self.embed_pictures([keyframe.image for keyframe in keyframes])
        return temporal_pool(vectors, [keyframe.seconds for keyframe in keyframes])

    async def embed(self, courses: Sequence[Course]) -> list[dict[str, np.ndarray]]:
        """Vectors ``text``, ``fused``, and for courses with images or a video ``image``, per course;
        ``image_reduced`` for those with images, ``video_reduced`` for those with a video.

        Raises ``Busy`` when the text batcher's queue is full.
        """
        text_vectors = await self.text_batcher.submit([course.text for course in courses])
        results = []
        for course, text in zip(courses, text_vectors):
            pictures = [*course.images, *([] if course.video is None else [course.video])]
            image = pool(pictures) if pictures else None
            vectors = {"text": text, "fused": self.fusion.fuse(text, image)}
            if image is not None:
                vectors["image"] = image
            if course.images:
                vectors["image_reduced"] = self.projection.reduce(pool(course.images))
            if course.video is not None:
                vectors["video_reduced"] = self.projection.reduce(course.video)
            results.append(vectors)
        return results


def _batcher(
    settings: EncoderSettings,
    fn: Callable[[list[Any]], np.ndarray],
    executor: Executor,
    modality: str,
    on_batch: Callable[[str, int], None] | None,
) -> Batcher[Any, np.ndarray]:
    return Batcher(
        fn,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        max_queue=settings.max_queue,
        executor=executor,
        on_batch=None if on_batch is None else lambda size: on_batch(modality, size),
    )
