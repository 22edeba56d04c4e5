"""The images and videos of embed requests: where they may come from, and what decoding may cost.

Sources. Inline ``data`` is always accepted. A ``path`` is read only when ``media_root`` is set,
only from under it, and without following symbolic links (each folder and the file are opened
relative to the one before, refusing links). A ``url`` is fetched only from allowed hosts and
public addresses (see :mod:`encoders.fetch`). With default settings both are refused before any
file is opened or any connection made, with the same message whatever the target is.

Costs. Each request has a :class:`Budget` of media bytes and decoded pixels; images and video
frames are shrunk while they are decoded (JPEG decodes at a reduced scale directly), and no more
than ``max_concurrent_media`` media are fetched and decoded at once, over all requests.

>>> MediaRef(data="aGVsbG8=").data
b'hello'
>>> MediaRef(url="https://example.org/a.jpg", path="/tmp/a.jpg")
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for MediaRef
...
>>> budget = Budget(pixels=100, media_bytes=10)
>>> budget.spend_pixels(60); budget.spend_pixels(60)
Traceback (most recent call last):
...
encoders.media.OverBudget: the request's media need more than its budget of 100 decoded pixels
"""

from __future__ import annotations

import asyncio
import io
import os
import stat
import threading
from pathlib import Path, PurePosixPath

from PIL import Image
from pydantic import Base64Bytes, BaseModel, ConfigDict, model_validator

from encoders.fetch import FetchFailed, MediaError, MediaNotAllowed, OverLimit, UrlFetcher

__all__ = [
    "MAX_SIDE", "Budget", "FetchFailed", "MediaError", "MediaNotAllowed", "MediaReader", "MediaRef", "OverBudget",
    "OverLimit", "decode_image",
]

#: Decoded images and video frames are shrunk to fit this square: image models look at a few
#: hundred pixels, and a small picture is all that waits in memory for the model.
MAX_SIDE = 512
#: Image formats decoded; anything else is refused (Pillow's rarer plugins are more attack surface).
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
#: Non-blocking: a FIFO planted under the root must not hang the read.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


class OverBudget(ValueError):
    """A request whose media need more than its budget (HTTP 413)."""


class MediaRef(BaseModel):
    """Exactly one of: ``url`` (http or https), ``path`` (under the media root), ``data`` (base64)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    path: str | None = None
    data: Base64Bytes | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> MediaRef:
        given = [name for name in ("url", "path", "data") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of url, path, data (got {', '.join(given) or 'none'})")
        return self


class Budget:
    """What one request's media may still take: bytes read and pixels decoded. Its media decode
    on several threads at once, so each spending is checked and taken under a lock."""

    def __init__(self, pixels: int, media_bytes: int) -> None:
        self.pixels_limit, self.bytes_limit = pixels, media_bytes
        self.pixels, self.media_bytes = pixels, media_bytes
        self._lock = threading.Lock()

    def spend_pixels(self, pixels: int) -> None:
        with self._lock:
            if pixels > self.pixels:
                raise OverBudget(f"the request's media need more than its budget of {self.pixels_limit} decoded pixels")
            self.pixels -= pixels

    def spend_bytes(self, size: int) -> None:
        with self._lock:
            if size > self.media_bytes:
                raise OverBudget(f"the request's media need more than its budget of {self.bytes_limit} bytes")
            self.media_bytes -= size


class MediaReader:
    """Reads the bytes of a :class:`MediaRef` as the settings allow (see the module's docstring)."""

    def __init__(self, fetcher: UrlFetcher, media_root: Path | None = None) -> None:
        self.fetcher = fetcher
        self.media_root = Path(os.path.abspath(media_root)) if media_root is not None else None

    async def read(self, ref: MediaRef, max_bytes: int, budget: Budget) -> bytes:
        """The media's bytes, at most ``max_bytes`` and within ``budget``.

        Raises :class:`MediaNotAllowed`, :class:`FetchFailed`, :class:`OverLimit` or :class:`OverBudget`.
        """
        limit = min(max_bytes, budget.media_bytes)
        try:
            if ref.data is not None:
                if len(ref.data) > limit:
                    raise OverLimit(limit)
                data = ref.data
            elif ref.url is not None:
                data = await self.fetcher.fetch(ref.url, limit)
            else:
                relative = self.relative_path(ref.path or "")  # refused here, before any file is touched
                data = await asyncio.to_thread(self._read_file, relative, limit)
        except OverLimit:
            if limit < max_bytes:
                budget.spend_bytes(limit + 1)  # raises OverBudget
            raise
        budget.spend_bytes(len(data))
        return data

    def relative_path(self, path: str) -> PurePosixPath:
        """``path`` as a path under the media root; :class:`MediaNotAllowed` if it cannot be one."""
        if self.media_root is None:
            raise MediaNotAllowed("path not allowed: media by path need COURSESTREAM_ENCODER_MEDIA_ROOT")
        given = PurePosixPath(path)
        if given.is_absolute():
            if not given.is_relative_to(self.media_root):
                raise MediaNotAllowed("path not allowed: outside the media root")
            given = given.relative_to(self.media_root)
        if not given.parts or any(part in ("..", "") for part in given.parts) or "\x00" in path:
            raise MediaNotAllowed("path not allowed: outside the media root")
        return given

    def _read_file(self, relative: PurePosixPath, limit: int) -> bytes:
        """Open each folder, then the file, relative to the one before and refusing symbolic links."""
        assert self.media_root is not None
        descriptors: list[int] = []
        try:
            descriptors.append(os.open(self.media_root, _DIRECTORY_FLAGS & ~os.O_NOFOLLOW))
            for folder in relative.parts[:-1]:
                descriptors.append(os.open(folder, _DIRECTORY_FLAGS, dir_fd=descriptors[-1]))
            descriptors.append(os.open(relative.parts[-1], _FILE_FLAGS, dir_fd=descriptors[-1]))
            if not stat.S_ISREG(os.fstat(descriptors[-1]).st_mode):
                raise FetchFailed()
            with os.fdopen(os.dup(descriptors[-1]), "rb") as file:
                data = file.read(limit + 1)  # one byte more tells "over the limit"
        except OSError:
            raise FetchFailed() from None
        finally:
            for descriptor in descriptors:
                os.close(descriptor)
        if len(data) > limit:
            raise OverLimit(limit)
        return data


def decode_image(data: bytes, max_pixels: int, budget: Budget | None = None, side: int = MAX_SIDE) -> Image.Image:
    """An RGB image of at most ``side`` x ``side`` from encoded bytes; :class:`MediaError` if it is not
    an image of :data:`IMAGE_FORMATS` or decodes to more than ``max_pixels`` (checked, and taken from
    ``budget``, before decoding)."""
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)  # reads the header only
        image.draft("RGB", (side, side))  # JPEG: decode at 1/2, 1/4 or 1/8 scale, still at least `side`
    except Image.DecompressionBombError:
        raise MediaError(f"image decodes to more than {max_pixels} pixels") from None
    except (OSError, SyntaxError, ValueError):
        raise MediaError("cannot decode image: not a JPEG, PNG, WebP or GIF image") from None
    pixels = image.width * image.height
    if pixels > max_pixels:
        raise MediaError(f"image decodes to {image.width}x{image.height} pixels, over the limit of {max_pixels}")
    if budget is not None:
        budget.spend_pixels(pixels)
    try:
        if image.mode not in ("RGB", "RGBA", "L"):  # a palette would be shrunk by nearest neighbour
            image = image.convert("RGB")
        image.thumbnail((side, side), reducing_gap=2.0)  # decodes, then shrinks by whole factors first
        return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise MediaError(f"cannot decode image: {error}") from None
    finally:
        image.close()
