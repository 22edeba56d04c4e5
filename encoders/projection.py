"""The reduced media vectors: a fixed random projection of an image model's vectors to a few dimensions.

A learner's profile has room for a small interest per media modality (2 KB in all), so the
service also returns each image and video vector projected to :data:`REDUCED_DIM` dimensions
and L2-normalised (the named vectors ``image_reduced`` and ``video_reduced``). The projection is
a Gaussian matrix with orthonormal columns, seeded from the model's name and version: the same
model always gives the same projection, and its :attr:`Projection.version` is part of the
service's ``model_version``. A random projection keeps cosines roughly (Johnson-Lindenstrauss)
without fitting anything to a catalogue.

>>> import numpy as np
>>> projection = Projection("efficientnet-lite0@1", dim=1280)
>>> projection.version == Projection("efficientnet-lite0@1", dim=1280).version
True
>>> reduced = projection.reduce(np.ones(1280, dtype=np.float32))
>>> reduced.shape, round(float(np.linalg.norm(reduced)), 5)
((32,), 1.0)
>>> bool(np.allclose(projection.matrix.T @ projection.matrix, np.eye(32), atol=1e-5))
True
>>> small = Projection("tiny-clip@1", dim=16)
>>> small.matrix.shape, bool(np.allclose(small.matrix @ small.matrix.T, np.eye(16), atol=1e-5))
((16, 32), True)
"""

from __future__ import annotations

import hashlib

import numpy as np

#: Dimensions of a reduced vector (the profile's ``online.catalogue.MEDIA_DIM``).
REDUCED_DIM = 32


class Projection:
    """A seeded orthonormal projection from ``dim`` to ``reduced_dim`` dimensions (see the module)."""

    def __init__(self, model: str, dim: int, reduced_dim: int = REDUCED_DIM) -> None:
        digest = hashlib.sha256(f"{model}|{dim}|{reduced_dim}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        orthonormal, _ = np.linalg.qr(rng.normal(size=(max(dim, reduced_dim), min(dim, reduced_dim))))
        # a model of fewer dimensions (a small CLIP) is embedded isometrically: its cosines kept exactly
        self.matrix = (orthonormal if dim >= reduced_dim else orthonormal.T).astype(np.float32)
        #: Names the projection: a change of model, size or seed changes it.
        self.version = f"orthogonal-{reduced_dim}-{digest[:4].hex()}"

    def reduce(self, vector: np.ndarray) -> np.ndarray:
        """``vector`` projected and L2-normalised."""
        reduced = vector.astype(np.float32) @ self.matrix
        norm = float(np.linalg.norm(reduced))
        return reduced / norm if norm > 0 else reduced
