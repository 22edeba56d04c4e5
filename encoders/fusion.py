"""The fused course vector: one vector per course for a single nearest-neighbour search.

``fused = normalise(concat(w_text * text, w_image * image))`` where ``text`` and ``image`` are
the L2-normalised vectors of each modality and the weights are rescaled so that
``w_text² + w_image² = 1``. A course without images or video gets a zero image block.

Why this form: for two courses that both have an image, the fused vectors already have
norm 1 and their cosine is a weighted sum of the per-modality cosines,

    cos(fused_a, fused_b) = w_text² · cos(text_a, text_b) + w_image² · cos(image_a, image_b),

so the weights say exactly how much each modality counts, and a Qdrant cosine (or dot)
search on the fused vector ranks by that sum. Dimensions simply add: 384 + 1280 = 1664.

The final normalisation matters only for a missing image: a text-only course is then its
text vector padded with zeros, so two text-only courses compare by text alone
(``cos(text_a, text_b)``), and a text-only course against a course with an image by
``w_text · cos(text_a, text_b)``: no image counts as "no evidence of a match".

>>> import numpy as np
>>> fusion = Fusion(text_weight=3, image_weight=4, image_dim=3)  # rescaled to 0.6 and 0.8
>>> fusion.text_weight, fusion.image_weight
(0.6, 0.8)
>>> text_a, image_a = np.array([1.0, 0.0]), np.array([1.0, 0.0, 0.0])
>>> text_b, image_b = np.array([0.6, 0.8]), np.array([0.0, 1.0, 0.0])
>>> a, b = fusion.fuse(text_a, image_a), fusion.fuse(text_b, image_b)
>>> a.shape, round(float(np.linalg.norm(a)), 6)
((5,), 1.0)
>>> round(float(a @ b), 6) == round(0.6**2 * 0.6 + 0.8**2 * 0.0, 6)
True
>>> fusion.fuse(text_b, None).round(2).tolist()  # no image: a zero image block
[0.6, 0.8, 0.0, 0.0, 0.0]
>>> pool([np.array([1.0, 0.0]), np.array([0.0, 1.0])]).round(3).tolist()
[0.707, 0.707]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


class Fusion:
    """Concatenates weighted text and image vectors into one L2-normalised course vector."""

    def __init__(self, text_weight: float, image_weight: float, image_dim: int) -> None:
        norm = math.hypot(text_weight, image_weight)
        if norm == 0 or text_weight < 0 or image_weight < 0:
            raise ValueError("weights must be non-negative and not both 0")
        self.text_weight = text_weight / norm
        self.image_weight = image_weight / norm
        self.image_dim = image_dim

    def fuse(self, text: np.ndarray, image: np.ndarray | None) -> np.ndarray:
        """The fused vector of one course; ``image`` is None when it has no image or video."""
        if image is None:
            image = np.zeros(self.image_dim, dtype=text.dtype)
        return normalise(np.concatenate([self.text_weight * text, self.image_weight * image]))


def pool(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of L2-normalised vectors, L2-normalised again: one vector for several images."""
    return normalise(np.mean(vectors, axis=0))


def normalise(vector: np.ndarray) -> np.ndarray:
    """``vector`` over its L2 norm (a zero vector as it is)."""
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector
