"""Encoder benchmark: what dynamic batching buys under concurrent load, on the loaded models.

For text and for images, in one run on the same models:

- ``sequential_items_per_s``: one item at a time, straight through the encoder (no batcher);
- ``batched_items_per_s``: ``concurrency`` clients each sending one-item requests, back to back,
  through the service's :class:`~encoders.batching.Batcher` (HTTP and JSON not included);
- ``speedup``: batched / sequential; ``latency_ms``: p50 and p99 per request under that load.

Texts are real edX course titles and descriptions when the shared data is present (else a few
built-in course texts, repeated); images are real photographs from ``skimage.data``.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from encoders.batching import Batcher
from encoders.embedder import Embedder, Encoders, course_text
from encoders.settings import EncoderSettings

EDX_CATALOG = Path(__file__).resolve().parents[2] / "shared" / "data" / "catalogs" / "edx_courses.csv"

FALLBACK_TEXTS = [
    course_text("Programming for Everybody (Getting Started with Python)", "An introduction to Python."),
    course_text("Fundamentals of Neuroscience", "Learn how electricity makes the neurons in your brain tick."),
    course_text("Financial Market Analysis", "The fundamentals of finance for investors and policymakers."),
    course_text("China and Communism", "Explore the Maoist period of China, from the Party to Mao's death."),
]
PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina"]


def run_encoder_benchmark(
    settings: EncoderSettings,
    n_texts: int = 128,
    n_images: int = 64,
    concurrency: int = 16,
    encoders: Encoders | None = None,
) -> dict[str, Any]:
    """Measure the encoders with and without dynamic batching; a JSON-able dict of the figures.

    The batchers use ``settings``' batch size and wait, and a queue long enough for ``concurrency``.
    """
    started = time.perf_counter()
    encoders = encoders or Encoders.load(settings)
    load_s = time.perf_counter() - started
    settings = settings.model_copy(update={"max_queue": max(settings.max_queue, concurrency)})
    embedder = Embedder(settings, encoders)
    texts, images = _texts(n_texts), _photos(n_images)
    return {
        "device": str(encoders.text.device),
        "model_version": embedder.model_version,
        "load_s": round(load_s, 2),
        "max_batch_size": settings.max_batch_size,
        "max_wait_ms": settings.max_wait_ms,
        "concurrency": concurrency,
        "text": _measure(encoders.text.encode, embedder.text_batcher, texts, concurrency),
        "image": _measure(encoders.image.encode, embedder.image_batcher, images, concurrency),
    }


def _measure(
    encode: Callable[[list[Any]], np.ndarray], batcher: Batcher, items: Sequence[Any], concurrency: int
) -> dict[str, Any]:
    started = time.perf_counter()
    for item in items:
        encode([item])
    sequential = len(items) / (time.perf_counter() - started)
    latencies, elapsed = asyncio.run(_concurrent_load(batcher, items, concurrency))
    batched = len(items) / elapsed
    return {
        "items": len(items),
        "sequential_items_per_s": round(sequential, 1),
        "batched_items_per_s": round(batched, 1),
        "speedup": round(batched / sequential, 2),
        "latency_ms": {f"p{q}": round(float(np.percentile(latencies, q)) * 1000, 1) for q in (50, 99)},
        "forward_passes": batcher.forward_passes,
        "mean_batch_size": round(len(items) / batcher.forward_passes, 1),
    }


async def _concurrent_load(batcher: Batcher, items: Sequence[Any], concurrency: int) -> tuple[list[float], float]:
    """``concurrency`` clients send one-item requests back to back until all items are done."""
    pending = iter(items)
    latencies: list[float] = []

    async def client() -> None:
        for item in pending:  # the clients share one iterator: each item is sent once
            sent = time.perf_counter()
            await batcher.submit([item])
            latencies.append(time.perf_counter() - sent)

    async with batcher:
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, elapsed


def _texts(n: int) -> list[str]:
    if EDX_CATALOG.is_file():
        with open(EDX_CATALOG, newline="", encoding="utf-8") as f:
            texts = [course_text(row["title"], row["course_description"]) for row in csv.DictReader(f)]
    else:
        texts = FALLBACK_TEXTS
    return list(itertools.islice(itertools.cycle(texts), n))


def _photos(n: int) -> list[Image.Image]:
    """``n`` real photographs: skimage's, each cut in different crops so that no two are the same."""
    from skimage import data  # only the benchmark and tests need scikit-image

    photos = [Image.fromarray(getattr(data, name)()) for name in PHOTOS]
    crops = []
    for i in range(n):
        photo = photos[i % len(photos)]
        shrink = 1 - 0.3 * ((i // len(photos)) % 10) / 10  # 100%, 97%, ... 73% of the photo
        width, height = round(photo.width * shrink), round(photo.height * shrink)
        crops.append(photo.crop((0, 0, width, height)))
    return crops
