"""Video encoder: keyframes sampled with PyAV, embedded as images and pooled.

A video's vector is the normalised mean of the image vectors of up to ``max_frames``
keyframes spread evenly over it. Only keyframes are decoded: they decode on their own
(no decoding of the frames in between) and are the encoder's cleanest pictures.
Its transcript is text: the service adds it to the course text (see ``encoders.embedder``).
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
from PIL import Image

from encoders.fusion import pool
from encoders.image import ImageEncoder

#: Frames are shrunk to fit this square: image models look at a few hundred pixels at most.
MAX_FRAME_SIDE = 512


class VideoEncoder:
    """Embeds a video (file path or bytes) into one L2-normalised vector of the image model's ``dim``."""

    def __init__(self, image: ImageEncoder, max_frames: int = 8) -> None:
        self.image = image
        self.max_frames = max_frames
        self.name = f"{image.name}+keyframes"
        self.version = f"{image.version}+keyframes-{max_frames}"
        self.dim = image.dim

    def frames(self, video: bytes | Path) -> list[Image.Image]:
        """Up to ``max_frames`` keyframes spread evenly over the video, as RGB images."""
        return sample_keyframes(video, self.max_frames)

    def encode(self, video: bytes | Path) -> np.ndarray:
        """The pooled vector of the video's keyframes."""
        return pool(list(self.image.encode(self.frames(video))))


def sample_keyframes(video: bytes | Path, max_frames: int) -> list[Image.Image]:
    """Up to ``max_frames`` keyframes spread evenly over ``video``; ValueError if it has none.

    Two passes: the first reads only packet headers to find the keyframes, the second seeks
    to each chosen keyframe and decodes it alone.
    """
    try:
        with av.open(io.BytesIO(video) if isinstance(video, bytes) else str(video)) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            keyframes = [p.pts for p in container.demux(stream) if p.is_keyframe and p.pts is not None]
            spread = np.linspace(0, len(keyframes) - 1, min(max_frames, len(keyframes))).round().astype(int)
            chosen = sorted({keyframes[i] for i in spread})
            stream.codec_context.skip_frame = "NONKEY"
            frames = []
            for pts in chosen:
                container.seek(pts, stream=stream)  # lands on the keyframe at or before pts
                frame = next(container.decode(stream), None)
                if frame is not None:
                    image = frame.to_image()
                    image.thumbnail((MAX_FRAME_SIDE, MAX_FRAME_SIDE))  # bounds memory; models see less
                    frames.append(image)
    except av.FFmpegError as error:
        raise ValueError(f"cannot decode video: {error}") from error
    if not frames:
        raise ValueError("no decodable keyframes in the video")
    return frames
