"""Reading the images and videos that embed requests point to: by URL, by path, or inline.

Security: a URL makes the service fetch from wherever it can reach, and a path makes it read
any file its user can read. Media are only ever read and decoded, never executed, but a
deployment should still run the service without access to anything secret, restrict its
network egress, and set ``media_root`` (paths must then lie under that folder).

>>> MediaRef(data="aGVsbG8=").data
b'hello'
>>> MediaRef(url="https://example.org/a.jpg", path="/tmp/a.jpg")
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for MediaRef
...
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import httpx
from PIL import Image
from pydantic import Base64Bytes, BaseModel, ConfigDict, model_validator

#: Larger images are refused before decoding: a small file can expand into gigabytes of pixels.
MAX_IMAGE_PIXELS = 50_000_000


class MediaError(ValueError):
    """Media that cannot be read or decoded; the text says why (HTTP 422)."""


class MediaRef(BaseModel):
    """Exactly one of: ``url`` (http or https), ``path`` (a file the service can read), ``data`` (base64)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    path: str | None = None
    data: Base64Bytes | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> MediaRef:
        given = [name for name in ("url", "path", "data") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of url, path, data (got {', '.join(given) or 'none'})")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return self


class MediaReader:
    """Reads the bytes of a :class:`MediaRef`, at most ``max_bytes`` of them."""

    def __init__(self, client: httpx.AsyncClient, media_root: Path | None = None) -> None:
        self.client = client
        self.media_root = media_root.resolve() if media_root is not None else None

    async def read(self, ref: MediaRef, max_bytes: int) -> bytes:
        """The media's bytes; :class:`MediaError` when missing, unreadable or over ``max_bytes``."""
        if ref.data is not None:
            data = ref.data
        elif ref.url is not None:
            data = await self._fetch(ref.url, max_bytes)
        else:
            data = await asyncio.to_thread(self._read_file, Path(ref.path or ""), max_bytes)
        if len(data) > max_bytes:
            raise MediaError(f"media is over the {max_bytes}-byte limit")
        return data

    async def _fetch(self, url: str, max_bytes: int) -> bytes:
        chunks, size = [], 0
        try:
            async with self.client.stream("GET", url) as response:
                response.raise_for_status()
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise MediaError(f"{url} is over the {max_bytes}-byte limit")
                    chunks.append(chunk)
        except httpx.HTTPError as error:
            raise MediaError(f"cannot fetch {url}: {error}") from error
        return b"".join(chunks)

    def _read_file(self, path: Path, max_bytes: int) -> bytes:
        resolved = path.resolve()
        if self.media_root is not None and not resolved.is_relative_to(self.media_root):
            raise MediaError(f"{path} is outside the media root")
        if not resolved.is_file():
            raise MediaError(f"{path} is not a readable file")
        try:
            with open(resolved, "rb") as f:
                return f.read(max_bytes + 1)  # one byte more tells "over the limit"
        except OSError as error:
            raise MediaError(f"cannot read {path}: {error.strerror}") from error


def decode_image(data: bytes) -> Image.Image:
    """An RGB image from encoded bytes (JPEG, PNG, WebP, ...); :class:`MediaError` if it is not one."""
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
    except (OSError, Image.DecompressionBombError):
        raise MediaError("cannot decode image: not an image in a known format") from None
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise MediaError(f"image is {image.width}x{image.height}, over {MAX_IMAGE_PIXELS} pixels")
    try:
        return image.convert("RGB")
    except (OSError, ValueError) as error:
        raise MediaError(f"cannot decode image: {error}") from error
