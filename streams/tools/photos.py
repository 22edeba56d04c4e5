"""Real photographs as course media: scikit-image's sample photos, views of them and short videos
of them, for the benchmark's catalogue and the tests (never random vectors: the image model
must see real pictures for image and video interests to mean anything).

scikit-image ships the photos in its wheel; it comes with the ``bench`` extra (the ``test``
extra includes it).

>>> image = photo("rocket")
>>> image.mode, [view.size < image.size for view in crops("rocket", 2, np.random.default_rng(0))]
('RGB', [True, True])
>>> jpeg(image)[:2], mp4([image])[4:8]
(b'\\xff\\xd8', b'ftyp')
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import av
import numpy as np
from PIL import Image, ImageOps

#: Photographs of distinct subjects, one a theme.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")


def photo(name: str, box: tuple[int, int, int, int] | None = None) -> Image.Image:
    """scikit-image's photograph ``name`` (``skimage.data.<name>``) in RGB, cropped to ``box`` if given."""
    try:
        from skimage import data
    except ImportError as error:
        raise ImportError("real photographs need scikit-image: pip install 'coursestream[bench]'") from error
    image = Image.fromarray(getattr(data, name)()).convert("RGB")
    return image.crop(box) if box else image


def crops(name: str, count: int, rng: np.random.Generator) -> list[Image.Image]:
    """``count`` different views of a photograph: random crops of 55-85% of each side, some mirrored."""
    image = photo(name)
    width, height = image.size
    views = []
    for i in range(count):
        w, h = (int(side * rng.uniform(0.55, 0.85)) for side in (width, height))
        left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        view = image.crop((left, top, left + w, top + h))
        views.append(ImageOps.mirror(view) if i % 2 else view)
    return views


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


def mp4(photos: Sequence[Image.Image], frames_each: int = 6) -> bytes:
    """A short MPEG-4 video (6 frames a second) showing each photo in turn, a keyframe at each change."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=6)
        stream.width, stream.height, stream.pix_fmt, stream.gop_size = 320, 240, "yuv420p", frames_each
        for image in photos:
            frame = av.VideoFrame.from_image(image.resize((320, 240)))
            for _ in range(frames_each):
                container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buffer.getvalue()
