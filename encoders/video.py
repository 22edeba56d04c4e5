r"""Video encoder: keyframes sampled with PyAV, embedded as images and pooled over time.

A video's vector pools the image vectors of up to ``max_frames`` keyframes spread evenly over
it, in temporal order, each weighted by the time it stands for: from its timestamp to the next
chosen keyframe's (the last, to the video's end). A long opening shot then counts for its
length, not as one frame among a quick montage's many (:func:`temporal_pool`). Only keyframes
are decoded: they decode on their own (no decoding of the frames in between) and are the
encoder's cleanest pictures.
Its transcript is text: the service adds it to the course text (see ``encoders.embedder``).

Videos come from course content, so decoding is kept narrow: only MP4/MOV and Matroska/WebM
containers, named from the file's first bytes rather than probed (probing could pick a playlist
format that opens other files or URLs), no nested file opens at all, frames no larger than
``max_pixels``, and each frame scaled down to the model's scale as it is converted from the
decoder's format.

>>> container_format(b"\x00\x00\x00\x20ftypisom"), container_format(b"\x1a\x45\xdf\xa3\x01")
('mov', 'matroska')
>>> container_format(b"#EXTM3U\nfile:///etc/passwd")
Traceback (most recent call last):
...
encoders.fetch.MediaError: cannot decode video: not an MP4, MOV, WebM or Matroska file
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from encoders.fusion import normalise
from encoders.image import ImageEncoder
from encoders.media import MAX_SIDE, Budget, MediaError

#: No frame larger than this is decoded unless the caller allows more (8K UHD is 33 million).
MAX_FRAME_PIXELS = 16_777_216


@dataclass(frozen=True, slots=True)
class Keyframe:
    """A decoded keyframe and the seconds of video it stands for."""

    image: Image.Image
    seconds: float


def temporal_pool(vectors: Sequence[np.ndarray], seconds: Sequence[float]) -> np.ndarray:
    """The keyframes' vectors averaged with the time each stands for, L2-normalised (equal weights
    where the times are unknown).

    >>> [round(float(x), 3) for x in temporal_pool([np.array([1.0, 0.0]), np.array([0.0, 1.0])], [3.0, 1.0])]
    [0.949, 0.316]
    """
    weights = np.asarray(seconds, dtype=np.float64)
    if not np.isfinite(weights).all() or weights.sum() <= 0:
        weights = np.ones(len(vectors))
    return normalise(np.average(np.asarray(vectors, dtype=np.float64), axis=0, weights=weights)).astype(np.float32)


class VideoEncoder:
    """Embeds a video (file path or bytes) into one L2-normalised vector of the image model's ``dim``."""

    def __init__(self, image: ImageEncoder, max_frames: int = 8, max_pixels: int = MAX_FRAME_PIXELS) -> None:
        self.image = image
        self.max_frames = max_frames
        self.max_pixels = max_pixels
        self.name = f"{image.name}+keyframes"
        self.version = f"{image.version}+keyframes-{max_frames}-timed"
        self.dim = image.dim

    def frames(self, video: bytes | Path, budget: Budget | None = None) -> list[Keyframe]:
        """Up to ``max_frames`` keyframes spread evenly over the video, in order, as small RGB images."""
        return sample_keyframes(video, self.max_frames, self.max_pixels, budget)

    def encode(self, video: bytes | Path) -> np.ndarray:
        """The temporal pool of the video's keyframes' vectors."""
        keyframes = self.frames(video)
        return temporal_pool(list(self.image.encode([k.image for k in keyframes])), [k.seconds for k in keyframes])


def container_format(head: bytes) -> str:
    """FFmpeg's demuxer for a file starting with ``head``: ``mov`` (MP4, MOV) or ``matroska`` (MKV, WebM)."""
    if head[4:8] == b"ftyp" or head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    raise MediaError("cannot decode video: not an MP4, MOV, WebM or Matroska file")


def _no_other_files(url: str, flags: int, options: dict) -> None:
    raise MediaError("cannot decode video: it refers to other files")


def sample_keyframes(
    video: bytes | Path,
    max_frames: int,
    max_pixels: int = MAX_FRAME_PIXELS,
    budget: Budget | None = None,
    side: int = MAX_SIDE,
) -> list[Keyframe]:
    """Up to ``max_frames`` keyframes spread evenly over ``video``, in order, each fitting ``side`` x
    ``side``, with the seconds each stands for;
    :class:`MediaError` if it has none, is not a supported container, or has frames over ``max_pixels``.

    Two passes: the first reads only packet headers to find the keyframes, the second seeks
    to each chosen keyframe and decodes it alone. Each decoded frame's pixels are taken from
    ``budget`` before it is decoded.
    """
    data = video if isinstance(video, bytes) else Path(video).read_bytes()
    try:
        with av.open(io.BytesIO(data), format=container_format(data[:12]), io_open=_no_other_files) as container:
            if not container.streams.video:
                raise MediaError("cannot decode video: no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > max_pixels:
                raise MediaError(f"video frames are {width}x{height} pixels, over the limit of {max_pixels}")
            keyframes = [p.pts for p in container.demux(stream) if p.is_keyframe and p.pts is not None]
            spread = np.linspace(0, len(keyframes) - 1, min(max_frames, len(keyframes))).round().astype(int)
            chosen = sorted({keyframes[i] for i in spread})
            stream.codec_context.skip_frame = "NONKEY"
            seconds = _spans(chosen, stream.time_base, _end(container, stream, keyframes))
            frames = []
            for pts in chosen:
                if budget is not None:
                    budget.spend_pixels(width * height)
                container.seek(pts, stream=stream)  # lands on the keyframe at or before pts
                frame = next(container.decode(stream), None)
                if frame is not None:
                    if frame.width * frame.height > max_pixels:  # a stream may change size midway
                        raise MediaError(f"video frames are over the limit of {max_pixels} pixels")
                    scale = min(1.0, side / max(frame.width, frame.height))
                    size = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
                    frames.append(Keyframe(frame.reformat(width=size[0], height=size[1], format="rgb24").to_image(),
                                           seconds[len(frames)]))
    except av.FFmpegError as error:
        raise MediaError(f"cannot decode video: {error}") from error
    if not frames:
        raise MediaError("cannot decode video: no decodable keyframes")
    return frames


def _end(container: av.container.InputContainer, stream: av.video.stream.VideoStream, keyframes: list[int]) -> float | None:
    """The video stream's end in its time base: its duration, else the container's; None if neither is known."""
    if stream.duration:
        return float((stream.start_time or 0) + stream.duration)
    if container.duration and stream.time_base:
        return container.duration / av.time_base / float(stream.time_base)
    return None


def _spans(chosen: list[int], time_base: object, end: float | None) -> list[float]:
    """The seconds each chosen keyframe (by pts, in order) stands for: until the next, the last until
    ``end``; nan where unknown (the pool then weighs them equally)."""
    bounds = [*chosen[1:], end if end is not None and chosen and end > chosen[-1] else float("nan")]
    return [(stop - start) * float(time_base) if time_base else float("nan") for start, stop in zip(chosen, bounds)]
