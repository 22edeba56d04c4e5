"""The encoders on real models and real data, their batching, and the HTTP service around them.

The models load once for this module (all real-model tests live here for that reason).
"""

from __future__ import annotations

import asyncio
import base64
import csv
import functools
import http.server
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from PIL import Image

from encoders.embedder import Course, Embedder, Encoders, course_text
from encoders.service import ServiceHandle, serve_in_background
from encoders.settings import EncoderSettings
from encoders.video import VideoEncoder
from streams.tools.photos import jpeg, mp4, photo

pytestmark = pytest.mark.model

SUBJECTS = ["Computer Science", "Language", "Math", "Economics & Finance", "History", "Biology & Life Sciences"]


@pytest.fixture(scope="module")
def service(encoders: Encoders) -> Iterator[ServiceHandle]:
    with serve_in_background(EncoderSettings(), encoders=encoders) as handle:
        handle.wait_ready()
        yield handle


def write_video(path: Path, photos: list[Image.Image]) -> Path:
    path.write_bytes(mp4(photos))
    return path


# Real models on real data


def test_edx_neighbours_share_the_subject(encoders: Encoders, shared_data: Path) -> None:
    with open(shared_data / "catalogs" / "edx_courses.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["subject"] in SUBJECTS and r["language"] == "English"]
    courses = [r for subject in SUBJECTS for r in [r for r in rows if r["subject"] == subject][:32]]
    texts = [course_text(r["title"], r["course_description"][:300]) for r in courses]
    vectors = np.concatenate([encoders.text.encode(texts[i : i + 32]) for i in range(0, len(texts), 32)])
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    neighbours = np.argsort(-similarity, axis=1)[:, :5]
    subjects = np.array([r["subject"] for r in courses])

    programming = [i for i, r in enumerate(courses) if any(w in r["title"] for w in ("Python", "Java", "Programming"))]
    assert len(programming) >= 3
    assert (subjects[neighbours[programming]] == "Computer Science").mean() >= 0.6

    precision = {s: (subjects[neighbours[subjects == s]] == s).mean() for s in SUBJECTS}
    base_rate = {s: (subjects == s).mean() for s in SUBJECTS}
    well_separated = [s for s in SUBJECTS if precision[s] >= max(0.5, 3 * base_rate[s])]
    assert len(well_separated) >= 3, (precision, base_rate)


def test_two_crops_of_the_cat_are_nearer_than_cat_and_rocket(encoders: Encoders) -> None:
    left, right, rocket = encoders.image.encode(
        [photo("chelsea", (0, 0, 300, 300)), photo("chelsea", (151, 0, 451, 300)), photo("rocket")]
    )
    assert left @ right > left @ rocket + 0.3
    assert left @ right > right @ rocket + 0.3


def test_video_vector_is_near_the_photos_it_was_made_from(encoders: Encoders, tmp_path: Path) -> None:
    video = write_video(tmp_path / "lecture.mp4", [photo("chelsea"), photo("coffee")])
    encoder = VideoEncoder(encoders.image, max_frames=4)
    assert len(encoder.frames(video)) == 2  # one keyframe per photo
    vector = encoder.encode(video)
    cat, coffee, rocket, astronaut = encoders.image.encode(
        [photo("chelsea"), photo("coffee"), photo("rocket"), photo("astronaut")]
    )
    assert min(vector @ cat, vector @ coffee) > max(vector @ rocket, vector @ astronaut) + 0.2


def test_a_video_s_keyframes_count_for_the_time_they_stand_for(encoders: Encoders, tmp_path: Path) -> None:
    """Four seconds of a cat, then one of coffee: in temporal order, the cat counts four times as much."""
    path = tmp_path / "long-opening.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=6)
        stream.width, stream.height, stream.pix_fmt, stream.gop_size = 320, 240, "yuv420p", 1000
        for name, count in (("chelsea", 24), ("coffee", 6)):
            for i in range(count):
                frame = av.VideoFrame.from_image(photo(name).resize((320, 240)))
                if i == 0:  # a keyframe where the picture changes
                    frame.pict_type = av.video.frame.PictureType.I
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    encoder = VideoEncoder(encoders.image)
    keyframes = encoder.frames(path)
    assert [round(k.seconds, 2) for k in keyframes] == [4.0, 1.0]
    cat, coffee = encoders.image.encode([k.image for k in keyframes])
    vector = encoder.encode(path)
    assert vector @ cat > vector @ coffee + 0.2  # a plain mean would sit halfway


def test_concurrent_requests_share_passes_and_match_one_by_one(encoders: Encoders) -> None:
    texts = ["Introduction to Python", "Japanese for beginners", "The French Revolution", "Linear algebra"] * 3
    images = [photo("chelsea"), photo("rocket"), photo("coffee"), photo("astronaut")]
    settings = EncoderSettings(max_batch_size=64, max_wait_ms=50)

    async def concurrently(embedder: Embedder) -> tuple[list, list]:
        async with embedder:
            return await asyncio.gather(
                asyncio.gather(*(embedder.text_batcher.submit([t]) for t in texts)),
                asyncio.gather(*(embedder.image_batcher.submit([i]) for i in images)),
            )

    embedder = Embedder(settings, encoders)
    text_results, image_results = asyncio.run(concurrently(embedder))
    assert embedder.text_batcher.forward_passes < len(texts)
    assert embedder.image_batcher.forward_passes < len(images)
    atol = 1e-2 if encoders.text.device.type == "cuda" else 1e-5  # fp16 on a GPU
    for text, [vector] in zip(texts, text_results):
        np.testing.assert_allclose(vector, encoders.text.encode([text])[0], atol=atol)
    for image, [vector] in zip(images, image_results):
        np.testing.assert_allclose(vector, encoders.image.encode([image])[0], atol=atol)


def test_course_vectors_pool_images_and_video(encoders: Encoders, tmp_path: Path) -> None:
    frames = VideoEncoder(encoders.image).frames(write_video(tmp_path / "v.mp4", [photo("coffee")]))

    async def embed() -> list:
        async with Embedder(EncoderSettings(), encoders) as embedder:
            images, video = await embedder.embed_pictures([photo("chelsea")]), await embedder.embed_video(frames)
            return await embedder.embed([Course("text-only", "Python"), Course("cat", "Cats", images, video),
                                         Course("clip", "Coffee", video=video)])

    text_only, cat, clip = asyncio.run(embed())
    assert set(text_only) == {"text", "fused"}
    assert set(cat) == {"text", "image", "fused", "image_reduced", "video_reduced"}
    assert set(clip) == {"text", "image", "fused", "video_reduced"}  # no image of its own: image unknown
    for vectors in (text_only, cat):
        assert abs(np.linalg.norm(vectors["fused"]) - 1) < 1e-5
    assert not text_only["fused"][encoders.text.dim :].any()  # zero image block
    for reduced in (cat["image_reduced"], cat["video_reduced"]):
        assert reduced.shape == (32,) and abs(np.linalg.norm(reduced) - 1) < 1e-5
    np.testing.assert_allclose(cat["video_reduced"], clip["video_reduced"], atol=1e-6)


# The service over real HTTP


def test_health_readiness_metrics_and_info(service: ServiceHandle, encoders: Encoders) -> None:
    assert httpx.get(f"{service.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{service.url}/readyz").status_code == 200
    info = httpx.get(f"{service.url}/v1/info").json()
    assert info["vectors"] == {"text": 384, "image": 1280, "fused": 1664, "image_reduced": 32, "video_reduced": 32}
    assert info["models"]["text"]["version"] == encoders.text.version
    assert info["model_version"].startswith("enc-")
    metrics = httpx.get(f"{service.url}/metrics")
    assert metrics.status_code == 200
    assert 'coursestream_encoder_requests_total{path="/v1/info",status="200"}' in metrics.text
    for name in ("batch_size_bucket", "queue_depth", "request_seconds_bucket"):
        assert f"coursestream_encoder_{name}" in metrics.text


def test_embed_images_by_data_path_and_url_and_a_video(encoders: Encoders, tmp_path: Path) -> None:
    (tmp_path / "cat.jpg").write_bytes(jpeg(photo("chelsea")))
    video = write_video(tmp_path / "v.mp4", [photo("rocket")])
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as media_server:
        threading.Thread(target=media_server.serve_forever, daemon=True).start()
        # Paths under an explicit root; URLs from an allowed host, here on loopback, which must be allowed too.
        settings = EncoderSettings(media_root=tmp_path, media_hosts=[f"127.0.0.1:{media_server.server_port}"],
                                   media_networks=["127.0.0.1/32"])
        items = [
            {"id": "by-data", "title": "Cats", "images": [{"data": base64.b64encode(jpeg(photo("chelsea"))).decode()}]},
            {"id": "by-path", "title": "Cats", "images": [{"path": str(tmp_path / "cat.jpg")}]},
            {"id": "by-relative-path", "title": "Cats", "images": [{"path": "cat.jpg"}]},
            {"id": "by-url", "title": "Cats", "images": [{"url": f"http://127.0.0.1:{media_server.server_port}/cat.jpg"}]},
            {"id": "video", "title": "Rockets", "video": {"path": str(video), "transcript": "Lift-off."}},
            {"id": "text", "title": "Cats", "description": "All about cats."},
        ]
        with serve_in_background(settings, encoders=encoders) as service:
            service.wait_ready()
            response = httpx.post(f"{service.url}/v1/embed", json={"items": items}, timeout=60)
            info = httpx.get(f"{service.url}/v1/info").json()
        media_server.shutdown()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == info["model_version"]
    vectors = {item["id"]: {k: np.array(v) for k, v in item["vectors"].items()} for item in body["items"]}
    assert "image" not in vectors["text"] and len(vectors["text"]["fused"]) == 1664
    cat = vectors["by-data"]["image"]
    for same in ("by-path", "by-relative-path", "by-url"):
        assert cat @ vectors[same]["image"] > 0.999
    assert cat @ vectors["video"]["image"] < 0.5


def test_not_ready_when_the_models_fail_to_load() -> None:
    with serve_in_background(EncoderSettings(text_model="/no/such/model")) as service:
        assert httpx.get(f"{service.url}/healthz").status_code == 200
        with pytest.raises(RuntimeError, match="neither a model folder nor a Hugging Face id"):
            service.wait_ready()
        readiness = httpx.get(f"{service.url}/readyz")
        assert readiness.status_code == 503 and readiness.json()["status"] == "failed"
        refused = httpx.post(f"{service.url}/v1/embed", json={"items": [{"id": "a", "title": "Python"}]})
        assert refused.status_code == 503 and "Retry-After" in refused.headers


def test_bad_token_is_refused(encoders: Encoders) -> None:
    token = secrets.token_hex(16)
    with serve_in_background(EncoderSettings(token=token), encoders=encoders) as service:
        service.wait_ready()
        body = {"items": [{"id": "a", "title": "Python"}]}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"}):
            response = httpx.post(f"{service.url}/v1/embed", json=body, headers=headers)
            assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        assert httpx.get(f"{service.url}/v1/info").status_code == 401
        ok = httpx.post(f"{service.url}/v1/embed", json=body, headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200


def test_oversized_requests_get_413(encoders: Encoders) -> None:
    settings = EncoderSettings(max_request_bytes=2048, max_items_per_request=2)
    with serve_in_background(settings, encoders=encoders) as service:
        service.wait_ready()
        big = httpx.post(f"{service.url}/v1/embed", json={"items": [{"id": "a", "title": "x" * 5000}]})
        assert big.status_code == 413 and "limit of 2048 bytes" in big.json()["detail"]
        many = httpx.post(f"{service.url}/v1/embed", json={"items": [{"id": str(i), "title": "x"} for i in range(3)]})
        assert many.status_code == 413 and "3 items, over the limit of 2" in many.json()["detail"]


def test_invalid_bodies_and_undecodable_images_get_422(service: ServiceHandle) -> None:
    url = f"{service.url}/v1/embed"
    assert httpx.post(url, content=b"{not json").status_code == 422
    assert httpx.post(url, json={"items": []}).status_code == 422
    two_sources = {"items": [{"id": "a", "title": "x", "images": [{"url": "https://x.org/a.jpg", "path": "/a.jpg"}]}]}
    assert httpx.post(url, json=two_sources).status_code == 422
    not_an_image = {"items": [{"id": "a", "title": "x", "images": [{"data": base64.b64encode(b"hello").decode()}]}]}
    response = httpx.post(url, json=not_an_image)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["items", 0, "images", 0] and "cannot decode image" in error["msg"]


def test_a_full_queue_answers_503_busy(encoders: Encoders) -> None:
    # A tiny queue, one item per pass and long texts: each request takes several slow passes.
    settings = EncoderSettings(max_queue=1, max_batch_size=1, max_wait_ms=0)
    description = " ".join(["An introduction to programming with Python for data analysis."] * 30)
    body = {"items": [{"id": str(i), "title": "Python", "description": description} for i in range(8)]}

    async def burst(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(client.post(f"{url}/v1/embed", json=body) for _ in range(12)))

    with serve_in_background(settings, encoders=encoders) as service:
        service.wait_ready()
        responses = asyncio.run(burst(service.url))
        metrics = httpx.get(f"{service.url}/metrics").text
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 503}, statuses
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["Retry-After"] == "1" and "busy" in busy.json()["detail"]
    assert f'requests_total{{path="/v1/embed",status="503"}} {statuses.count(503)}.0' in metrics
