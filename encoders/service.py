"""The encoder HTTP service: course text, images and video in, vectors out.

Endpoints (``/v1/*`` need ``Authorization: Bearer <token>`` when a token is configured, and a
token is required to serve on any other address than loopback):

- ``GET /healthz``: 200 ``{"status": "ok"}`` while the process serves.
- ``GET /readyz``: 200 once the models are loaded and warmed up, else 503.
- ``GET /metrics``: Prometheus metrics of this app (its own registry).
- ``GET /v1/info``: model names, versions, vector sizes and ``model_version``.
- ``POST /v1/embed``: ``{"items": [course, ...]}`` -> ``{"model_version", "items": [{"id", "vectors"}]}``.

Errors: 401 missing or wrong token; 413 body over ``max_request_bytes``, more than
``max_items_per_request`` items, or media over the request's budget of bytes and decoded
pixels; 422 invalid body, or media that are not allowed, cannot be fetched or cannot be
decoded; 503 with ``Retry-After`` while the models load or when the queue is full. Media are
read and decoded as ``encoders.media`` describes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import httpx
import numpy as np
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, Field, ValidationError

from encoders.batching import Busy
from encoders.credentials import require_token_off_loopback
from encoders.embedder import Course, Embedder, Encoders, course_text
from encoders.fetch import UrlFetcher, UrlPolicy
from encoders.media import Budget, MediaError, MediaReader, MediaRef, OverBudget, decode_image
from encoders.settings import EncoderSettings

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: More images than this on one course is a broken client, not a richer course.
MAX_IMAGES_PER_ITEM = 16
#: Seconds a client should wait before retrying a 503.
RETRY_AFTER_S = 1

_bearer = HTTPBearer(auto_error=False)


class VideoRef(MediaRef):
    """A video by ``url``, ``path`` or ``data``, with its transcript."""

    transcript: str = ""


class CourseItem(BaseModel):
    """One course to embed."""

    id: str = Field(min_length=1, max_length=256)
    title: str
    description: str = ""
    syllabus: str = ""
    transcript: str = ""
    images: list[MediaRef] = Field(default_factory=list, max_length=MAX_IMAGES_PER_ITEM)
    video: VideoRef | None = None


class EmbedRequest(BaseModel):
    """The body of ``POST /v1/embed``."""

    items: list[CourseItem] = Field(min_length=1)


class Pictures:
    """The images and videos of embed requests to vectors: read, decoded (shrunk as they decode) and
    embedded at most ``max_concurrent_media`` at a time over all requests, so that the bytes and
    decoded pixels in memory stay bounded; each request's :class:`Budget` bounds its own work."""

    def __init__(self, settings: EncoderSettings, reader: MediaReader, embedder: Embedder) -> None:
        self.settings, self.reader, self.embedder = settings, reader, embedder
        self._slots = asyncio.Semaphore(settings.max_concurrent_media)
        # Its own threads: a decode cancelled with its request still holds one until it finishes.
        self._decoder = ThreadPoolExecutor(settings.max_concurrent_media, thread_name_prefix="media")

    async def image(self, ref: MediaRef, budget: Budget) -> np.ndarray:
        async with self._slots:
            data = await self.reader.read(ref, self.settings.max_image_bytes, budget)
            image = await self._decode(decode_image, data, self.settings.max_image_pixels, budget)
            del data
            [vector] = await self.embedder.embed_pictures([image])
            return vector

    async def video(self, ref: MediaRef, budget: Budget) -> np.ndarray:
        async with self._slots:
            data = await self.reader.read(ref, self.settings.max_video_bytes, budget)
            frames = await self._decode(self.embedder.video.frames, data, budget)
            del data
            return await self.embedder.embed_video(frames)

    async def _decode(self, decode: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._decoder, decode, *args)

    def close(self) -> None:
        self._decoder.shutdown(wait=False, cancel_futures=True)


@dataclass
class _State:
    embedder: Embedder | None = None
    pictures: Pictures | None = None
    error: str | None = None


class _Metrics:
    """The app's Prometheus metrics, in a registry of its own: several apps can share a process."""

    def __init__(self, state: _State) -> None:
        self.registry = CollectorRegistry()
        self.batch_size = Histogram(
            "coursestream_encoder_batch_size",
            "Items per forward pass.",
            ["modality"],
            buckets=[2**i for i in range(13)],
            registry=self.registry,
        )
        queue_depth = Gauge(
            "coursestream_encoder_queue_depth",
            "Requests waiting for a forward pass.",
            ["modality"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "coursestream_encoder_request_seconds", "HTTP request latency.", ["path"], registry=self.registry
        )
        self.requests = Counter(
            "coursestream_encoder_requests",
            "HTTP requests by path and status.",
            ["path", "status"],
            registry=self.registry,
        )
        for modality in ("text", "image"):
            self.batch_size.labels(modality)  # exported (as zeros) before the first pass
            queue_depth.labels(modality).set_function(functools.partial(_queue_depth, state, modality))

    def observe_batch(self, modality: str, size: int) -> None:
        self.batch_size.labels(modality).observe(size)


def _queue_depth(state: _State, modality: str) -> int:
    if state.embedder is None:
        return 0
    return (state.embedder.text_batcher if modality == "text" else state.embedder.image_batcher).queue_depth


def create_app(settings: EncoderSettings, encoders: Encoders | None = None) -> FastAPI:
    """The encoder service; it loads ``settings``' models in the background unless ``encoders`` are given."""
    state = _State()
    metrics = _Metrics(state)

    async def start(stack: contextlib.AsyncExitStack, reader: MediaReader) -> None:
        try:
            loaded = encoders or await asyncio.to_thread(Encoders.load, settings)
            embedder = await stack.enter_async_context(Embedder(settings, loaded, metrics.observe_batch))
            state.pictures = Pictures(settings, reader, embedder)
            stack.callback(state.pictures.close)
            state.embedder = embedder
            logger.info("encoder ready: %s", state.embedder.model_version)
        except Exception as error:
            state.error = f"{type(error).__name__}: {error}"
            logger.exception("the encoder models failed to load")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        fetcher = UrlFetcher(UrlPolicy(settings.media_hosts, settings.media_networks), settings.fetch_timeout_s)
        async with fetcher, contextlib.AsyncExitStack() as stack:
            # Models load in the background so that /healthz answers (and /readyz says 503) meanwhile.
            starting = asyncio.create_task(start(stack, MediaReader(fetcher, settings.media_root)))
            try:
                yield
            finally:
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)

    app = FastAPI(title="coursestream encoder", lifespan=lifespan)

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "other")  # route templates only: unknown paths must not add labels
        metrics.latency.labels(path).observe(time.perf_counter() - started)
        metrics.requests.labels(path, str(response.status_code)).inc()
        return response

    def authorize(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if settings.token is None:
            return
        expected = settings.token.get_secret_value().encode()
        if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), expected):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def ready() -> tuple[Embedder, Pictures]:
        if state.embedder is None or state.pictures is None:
            raise HTTPException(503, "the models are still loading", headers={"Retry-After": str(RETRY_AFTER_S)})
        return state.embedder, state.pictures

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        if state.embedder is not None:
            return JSONResponse({"status": "ready"})
        status = {"status": "failed", "error": state.error} if state.error else {"status": "loading"}
        return JSONResponse(status, status_code=503)

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/info", dependencies=[Depends(authorize)])
    def info() -> dict[str, Any]:
        embedder, _ = ready()
        return embedder.info()

    @app.post("/v1/embed", dependencies=[Depends(authorize)])
    async def embed(request: Request) -> JSONResponse:
        embedder, pictures = ready()
        body = await _read_body(request, settings.max_request_bytes)
        try:
            payload = EmbedRequest.model_validate_json(body)
        except ValidationError as error:
            errors = error.errors(include_url=False, include_input=False, include_context=False)
            raise RequestValidationError(errors) from error
        if len(payload.items) > settings.max_items_per_request:
            limit = settings.max_items_per_request
            raise HTTPException(413, f"{len(payload.items)} items, over the limit of {limit} per request")
        budget = Budget(settings.max_request_pixels, settings.max_request_media_bytes)
        try:
            courses = await _all_or_none(_course(n, item, pictures, budget) for n, item in enumerate(payload.items))
            vectors = await embedder.embed(courses)
        except Busy as error:
            retry = {"Retry-After": str(RETRY_AFTER_S)}
            raise HTTPException(503, f"busy ({error}): retry later", headers=retry) from error
        except OverBudget as error:
            raise HTTPException(413, str(error)) from None
        items = [
            {"id": course.id, "vectors": {name: vector.tolist() for name, vector in course_vectors.items()}}
            for course, course_vectors in zip(courses, vectors)
        ]
        return JSONResponse({"model_version": embedder.model_version, "items": items})

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 as soon as it is known to be over ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body of {declared} bytes is over the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"request body is over the limit of {limit} bytes")
    return bytes(body)


async def _all_or_none(coroutines: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run concurrently; on the first failure cancel the rest (their media stop being read) and raise it."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


async def _course(index: int, item: CourseItem, pictures: Pictures, budget: Budget) -> Course:
    """Read, decode and embed one item's media; a 422 says which one failed and why."""
    where: tuple[str | int, ...] = ("items", index)
    images, video, video_transcript = [], None, ""
    try:
        for n, ref in enumerate(item.images):
            where = ("items", index, "images", n)
            images.append(await pictures.image(ref, budget))
        if item.video is not None:
            where = ("items", index, "video")
            video = await pictures.video(item.video, budget)
            video_transcript = item.video.transcript
    except MediaError as error:
        # Shaped like the body's validation errors, so that clients handle one 422 format.
        raise RequestValidationError([{"type": "media", "loc": where, "msg": str(error)}]) from None
    text = course_text(item.title, item.description, item.syllabus, item.transcript, video_transcript)
    return Course(item.id, text, images, video)


@dataclass
class ServiceHandle:
    """A service running in a background thread: its base ``url``, and ``stop()``."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until ``/readyz`` answers 200; RuntimeError if the models failed to load, or TimeoutError."""
        deadline = time.monotonic() + timeout
        while (readiness := httpx.get(f"{self.url}/readyz")).status_code != 200:
            if readiness.json()["status"] == "failed":
                raise RuntimeError(f"the encoder service failed to start: {readiness.json()['error']}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the encoder service at {self.url} is not ready after {timeout} s")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down gracefully and wait for its thread."""
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> ServiceHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_in_background(
    settings: EncoderSettings, host: str = "127.0.0.1", port: int = 0, encoders: Encoders | None = None
) -> ServiceHandle:
    """Run the service with uvicorn in a thread with its own event loop (port 0: any free port).

    Returns once the server accepts connections; call ``wait_ready()`` to wait for the models.
    """
    require_token_off_loopback("the encoder service", host, settings.token, "COURSESTREAM_ENCODER_TOKEN")
    config = uvicorn.Config(create_app(settings, encoders), host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="encoder-service", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the encoder service could not start on {host}:{port}")
        time.sleep(0.01)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    return ServiceHandle(f"http://{host}:{bound_port}", server, thread)


def main(settings: EncoderSettings, log_config: dict[str, Any] | None = None) -> None:
    """Run the service in the foreground until interrupted (``coursestream encoder``).

    ``log_config`` is a :func:`logging.config.dictConfig` (e.g. JSON lines); uvicorn's own by default.
    """
    require_token_off_loopback("the encoder service", settings.host, settings.token, "COURSESTREAM_ENCODER_TOKEN")
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_config=log_config or uvicorn.config.LOGGING_CONFIG
    )
