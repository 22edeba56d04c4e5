"""The encoder client's retries against a real HTTP server: a busy answer is retried and ends as
"unavailable" (the content is parked), never as a refusal (which dead-letters it), even while
other requests of the same client succeed."""

from __future__ import annotations

import asyncio

from aiohttp import web

from online.events import CourseContent
from streams.encoder_client import EncoderClient, EncoderUnavailable

COURSE = CourseContent(course_id="c1", title="Statistics")


async def _busy_embedder() -> web.AppRunner:
    async def info(request: web.Request) -> web.Response:
        await asyncio.sleep(0.01)
        return web.json_response({"model_version": "enc-test"})

    async def embed(request: web.Request) -> web.Response:
        await asyncio.sleep(0.01)
        return web.json_response({"detail": "the models are still loading"}, status=503, headers={"Retry-After": "1"})

    app = web.Application()
    app.router.add_get("/v1/info", info)
    app.router.add_post("/v1/embed", embed)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def test_a_busy_answer_stays_unavailable_while_other_requests_of_the_client_succeed() -> None:
    async def run() -> None:
        runner = await _busy_embedder()
        port = runner.addresses[0][1]
        client = EncoderClient(f"http://127.0.0.1:{port}", attempts=3, max_backoff_s=0.05)
        try:
            info, embedded = await asyncio.gather(client.info(), client.embed([COURSE]),
                                                  return_exceptions=True)
            assert info == {"model_version": "enc-test"}
            assert isinstance(embedded, EncoderUnavailable), embedded
        finally:
            await client.aclose()
            await runner.cleanup()

    asyncio.run(run())
