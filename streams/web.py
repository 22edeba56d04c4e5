"""The worker's HTTP API, served on the worker's own event loop (``faust.contrib.asgi``).

- ``GET /``: the live page (``streams/page/``: HTML and a little JavaScript over the endpoints
  below; it holds no data itself).
- ``GET /healthz``: liveness (the event loop answers).
- ``GET /readyz``: 200 once tables are recovered and no rebalance is under way, else 503.
- ``GET /metrics``: Prometheus text.
- ``GET /recommendations?after=N``: the lists this worker published lately, after the N-th
  (``{"next": count, "lists": [...]}``); operator only.
- ``GET /recommendations/{user_id}``: the latest list published for the learner; for a
  learner with none yet, what is popular in ``?context=PART_OF`` (a module, a programme), or
  in every context without one, as the answering worker has seen it: cold start.
- ``GET /profiles/{user_id}``: a readable summary of the learner's profile.
- ``GET /paths/{user_id}/{goal}``: the courses to take, in order, to reach ``goal``.

The learner endpoints need the operator token or the learner's own token (``streams.auth``:
401 without credentials, 403 for another learner's token); ids are checked as the event
contract checks them (422). A learner's state lives only on the worker that owns the learner's
partition; any worker answers, forwarding the request to the owner (found through Faust's table
router) with its raw path, query and credentials, which the owner checks again. The access log
names routes, not learners: ``GET /profiles/{user_id} 200``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Protocol

import faust
import httpx
from faust.contrib.asgi import serve_asgi
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi import Path as PathParameter
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import TypeAdapter, ValidationError
from yarl import URL

from online.events import Id
from online.prerequisites import PrerequisiteCycle
from online.profile import LearnerProfile
from streams import metrics
from streams.auth import Authenticator
from streams.settings import Settings

FORWARDED = "x-coursestream-forwarded"
log = logging.getLogger(__name__)
access_log = logging.getLogger("streams.web.access")
_ID = TypeAdapter(Id)


PAGE = Path(__file__).parent / "page"
#: The page's files, and the headers that keep it to itself: its own scripts and styles only, its
#: own API only, never in a frame, no referrer (its URL may carry a token in the fragment).
PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"), "/page.js": ("page.js", "text/javascript"),
              "/page.css": ("page.css", "text/css")}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


class LearnerRows(Protocol):
    """A learner-keyed table as the API reads it (its name routes a request to the owner)."""

    name: str

    def get(self, key: bytes) -> bytes | None: ...


class PublishedLists(Protocol):
    """The lists a worker published lately (``streams.worker.recent``)."""

    count: int

    def since(self, after: int, limit: int) -> list[bytes]: ...


def _same_worker(a: URL, b: URL) -> bool:
    return (a.host, a.port) == (b.host, b.port)


def valid_id(value: str, name: str) -> str:
    """``value`` as the event contract reads an id (stripped); 422 if it is not one."""
    try:
        return _ID.validate_python(value)
    except ValidationError:
        raise HTTPException(422, f"{name} is not a valid id (1 to 256 printable characters)") from None


def forward_url(owner: URL, request: Request) -> str:
    """The owner's URL for this request: its raw path and query, exactly as received; 400 if
    they cannot be sent unchanged (dot segments would be resolved on the way)."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    target = str(owner.with_path("/").with_query(None)).rstrip("/") + raw_path.decode("latin-1")
    target += f"?{query.decode('latin-1')}" if query else ""
    if httpx.URL(target).raw_path != raw_path + (b"?" + query if query else b""):
        raise HTTPException(400, "the path has dot segments")
    return target


def create_api(
    app: faust.App,
    profiles: LearnerRows,
    latest: LearnerRows,
    describe_profile: Callable[[str, LearnerProfile], Awaitable[dict[str, Any]]],
    learning_path: Callable[[str, LearnerProfile, str], Awaitable[list[dict[str, Any]]]],
    cold_start: Callable[[str, str | None], Awaitable[dict[str, Any]]],
    published: PublishedLists,
    fusion: Callable[[], dict[str, Any]],
    *,
    auth: Authenticator | None = None,
) -> FastAPI:
    """The API of one worker; the callables summarise a profile, plan a learner's path from it, and
    recommend to a learner with no list yet (in a context, if given); ``published`` holds the
    lists the worker published lately, ``fusion`` gives the learned fusion weights. ``auth`` decides who reads which learner: by default the
    settings' credentials (SystemExit if they do not allow serving)."""
    auth = auth or Authenticator.from_settings(Settings())
    http = httpx.AsyncClient(timeout=5.0)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if auth.open:  # only ever on loopback: see Authenticator.from_settings
            log.warning("the API answers anyone who can reach this machine's loopback: set COURSESTREAM_WEB_TOKEN")
        yield
        await http.aclose()

    api = FastAPI(title="coursestream worker", lifespan=lifespan)

    @api.middleware("http")
    async def log_route(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "(no route)")  # the template: no learner ids
        access_log.info("%s %s %d %.1fms", request.method, route, response.status_code,
                        (time.perf_counter() - started) * 1000)
        return response

    def learner(user_id: Annotated[str, PathParameter()], request: Request) -> str:
        """The learner asked about, if the request's credentials may read their data."""
        user_id = valid_id(user_id, "user_id")
        auth.authorize(request.headers.get("authorization"), user_id)
        return user_id

    async def owned_or_forwarded(table: LearnerRows, user_id: str, request: Request) -> bytes | Response:
        """The table's row for this learner if this worker owns it, else the owner's answer."""
        key = user_id.encode()
        owner = app.router.key_store(table.name, key)
        if _same_worker(owner, app.conf.canonical_url):
            value = table.get(key)
            if value is None:
                raise HTTPException(404, f"no {table.name} entry for this learner")
            return value
        if request.headers.get(FORWARDED):  # the owner moved while the request was in flight
            raise HTTPException(503, "partition ownership is changing; retry")
        headers = {FORWARDED: "1"}
        if authorization := request.headers.get("authorization"):
            headers["authorization"] = authorization
        answer = await http.get(forward_url(owner, request), headers=headers)
        return Response(answer.content, answer.status_code, media_type="application/json")

    def page_file(path: str) -> Callable[[], Awaitable[Response]]:
        name, media_type = PAGE_FILES[path]
        content = (PAGE / name).read_bytes()

        async def serve() -> Response:
            return Response(content, media_type=media_type, headers=PAGE_HEADERS)
        return serve

    for page_path in PAGE_FILES:
        api.add_api_route(page_path, page_file(page_path), methods=["GET"], include_in_schema=False)

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz() -> JSONResponse:
        ready = app.tables.recovery.completed.is_set() and not app.rebalancing
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @api.get("/metrics")
    async def prometheus() -> Response:
        monitor = app.monitor
        for tp, end in monitor.tp_end_offsets.items():
            committed = monitor.tp_committed_offsets.get(tp, 0)
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, end - committed))
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @api.get("/recommendations")
    async def recently_published(request: Request, after: Annotated[int, Query(ge=0)] = 0,
                                 limit: Annotated[int, Query(ge=1, le=100)] = 20) -> Response:
        auth.authorize(request.headers.get("authorization"), None)
        lists = b",".join(published.since(after, limit))
        return Response(b'{"next":%d,"lists":[%b]}' % (published.count, lists), media_type="application/json")

    @api.get("/models/fusion")
    async def fusion_weights(request: Request) -> JSONResponse:
        auth.authorize(request.headers.get("authorization"), None)
        return JSONResponse(fusion())

    @api.get("/recommendations/{user_id}")
    async def recommendations(request: Request, user_id: str = Depends(learner), context: str | None = None
                              ) -> Response:
        if context is not None:
            context = valid_id(context, "context")
        try:
            found = await owned_or_forwarded(latest, user_id, request)
        except HTTPException as error:
            if error.status_code != 404:
                raise
            return JSONResponse(await cold_start(user_id, context))  # never a 404: a newcomer gets a list
        return found if isinstance(found, Response) else Response(found, media_type="application/json")

    @api.get("/profiles/{user_id}")
    async def profile(request: Request, user_id: str = Depends(learner)) -> Response:
        found = await owned_or_forwarded(profiles, user_id, request)
        if isinstance(found, Response):
            return found
        summary = await describe_profile(user_id, LearnerProfile.from_bytes(found))
        return Response(json.dumps(summary), media_type="application/json")

    @api.get("/paths/{user_id}/{goal:path}")
    async def path(goal: str, request: Request, user_id: str = Depends(learner)) -> Response:
        goal = valid_id(goal, "goal")
        found = await owned_or_forwarded(profiles, user_id, request)
        if isinstance(found, Response):
            return found
        try:
            steps = await learning_path(user_id, LearnerProfile.from_bytes(found), goal)
        except PrerequisiteCycle as error:
            raise HTTPException(409, str(error)) from None
        return Response(json.dumps({"user_id": user_id, "goal": goal, "path": steps}), media_type="application/json")

    return api


def serve_api(app: faust.App, api: FastAPI) -> None:
    """Serve ``api`` from the Faust worker; uvicorn's access log (which prints every URL, learner
    ids in them) is off: the API logs routes instead."""
    serve_asgi(app, api, access_log=False)
