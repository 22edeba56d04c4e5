"""The worker's HTTP API, served on the worker's own event loop (``faust.contrib.asgi``).

- ``GET /healthz``: liveness (the event loop answers).
- ``GET /readyz``: 200 once tables are recovered and no rebalance is under way, else 503.
- ``GET /metrics``: Prometheus text.
- ``GET /recommendations/{user_id}``: the latest list published for the learner; for a
  learner with none yet, ``?context=PART_OF`` gives what is popular in that context (a
  module, a programme) as the answering worker has seen it: cold start.
- ``GET /profiles/{user_id}``: a readable summary of the learner's profile.
- ``GET /paths/{user_id}/{goal}``: the courses to take, in order, to reach ``goal``.

A learner's state lives only on the worker that owns the learner's partition; any worker
answers, forwarding the request to the owner (found through Faust's table router).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

import faust
import httpx
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from online.prerequisites import PrerequisiteCycle
from online.profile import LearnerProfile
from streams import metrics

FORWARDED = "x-coursestream-forwarded"


class LearnerRows(Protocol):
    """A learner-keyed table as the API reads it (its name routes a request to the owner)."""

    name: str

    def get(self, key: bytes) -> bytes | None: ...


def _same_worker(a: URL, b: URL) -> bool:
    return (a.host, a.port) == (b.host, b.port)


def create_api(
    app: faust.App,
    profiles: LearnerRows,
    latest: LearnerRows,
    describe_profile: Callable[[str, LearnerProfile], Awaitable[dict[str, Any]]],
    learning_path: Callable[[LearnerProfile, str], Awaitable[list[dict[str, Any]]]],
    cold_start: Callable[[str, str], Awaitable[dict[str, Any]]],
) -> FastAPI:
    """The API of one worker; the callables summarise a profile, plan a path from it, and
    recommend to a learner with no profile yet in a given context."""
    http = httpx.AsyncClient(timeout=5.0)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await http.aclose()

    api = FastAPI(title="coursestream worker", lifespan=lifespan)

    async def owned_or_forwarded(table: LearnerRows, user_id: str, request: Request) -> bytes | Response:
        """The table's row for this learner if this worker owns it, else the owner's answer."""
        key = user_id.encode()
        owner = app.router.key_store(table.name, key)
        if _same_worker(owner, app.conf.canonical_url):
            value = table.get(key)
            if value is None:
                raise HTTPException(404, f"no {table.name} entry for user {user_id!r}")
            return value
        if request.headers.get(FORWARDED):  # the owner moved while the request was in flight
            raise HTTPException(503, "partition ownership is changing; retry")
        url = owner.with_path(request.url.path).with_query(request.url.query)
        answer = await http.get(str(url), headers={FORWARDED: "1"})
        return Response(answer.content, answer.status_code, media_type="application/json")

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

    @api.get("/recommendations/{user_id}")
    async def recommendations(user_id: str, request: Request, context: str | None = None) -> Response:
        try:
            found = await owned_or_forwarded(latest, user_id, request)
        except HTTPException as error:
            if error.status_code != 404 or context is None:
                raise
            found = Response(status_code=404)
        if context is not None and isinstance(found, Response) and found.status_code == 404:
            return JSONResponse(await cold_start(user_id, context))
        return found if isinstance(found, Response) else Response(found, media_type="application/json")

    @api.get("/profiles/{user_id}")
    async def profile(user_id: str, request: Request) -> Response:
        found = await owned_or_forwarded(profiles, user_id, request)
        if isinstance(found, Response):
            return found
        summary = await describe_profile(user_id, LearnerProfile.from_bytes(found))
        return Response(json.dumps(summary), media_type="application/json")

    @api.get("/paths/{user_id}/{goal:path}")
    async def path(user_id: str, goal: str, request: Request) -> Response:
        found = await owned_or_forwarded(profiles, user_id, request)
        if isinstance(found, Response):
            return found
        try:
            steps = await learning_path(LearnerProfile.from_bytes(found), goal)
        except PrerequisiteCycle as error:
            raise HTTPException(409, str(error)) from None
        return Response(json.dumps({"user_id": user_id, "goal": goal, "path": steps}), media_type="application/json")

    return api
