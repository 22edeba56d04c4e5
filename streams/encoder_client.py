"""Async client of the encoder service (``encoders.service``), with timeouts and retries.

Transient failures (the service cannot be reached, a timeout, 429 and 5xx "busy") are
retried with exponential backoff and jitter; after the last attempt :class:`EncoderUnavailable`
is raised and the caller parks the content for later. The service failing while it handles the
request (closing the connection without an answer, as a crash does, or answering 500) raises
:class:`EncoderUnavailable` at once with ``failed_on_content`` set: retrying it at once would
crash it again, and the caller counts such failures against the content. A 4xx answer means the
content itself is bad and raises :class:`EncoderRejected` at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import numpy as np
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from online.events import CourseContent


class EncoderUnavailable(RuntimeError):
    """The service could not be reached or stayed busy through every retry, or (``failed_on_content``)
    failed while it handled the request."""

    def __init__(self, message: str, failed_on_content: bool = False) -> None:
        super().__init__(message)
        self.failed_on_content = failed_on_content


class EncoderRejected(ValueError):
    """The service refused the content itself (4xx): retrying will not help."""


class _Transient(Exception):
    pass


class _FailedOnIt(Exception):
    pass


#: The service took the request and died or broke on it: not retried at once.
_FAILED_ON_IT = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


@dataclass(frozen=True, slots=True)
class Embedding:
    course_id: str
    vectors: dict[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class EmbedResult:
    model_version: str
    embeddings: list[Embedding]


def embed_item(content: CourseContent) -> dict[str, object]:
    """The service's request item for one course."""
    return {
        "id": content.course_id,
        "title": content.title,
        "description": content.description,
        "syllabus": content.syllabus,
        "transcript": content.video.transcript if content.video else "",
        "images": [image.model_dump(exclude_none=True) for image in content.images],
        "video": content.video.model_dump(exclude_none=True, exclude={"transcript"}) if content.video else None,
    }


class EncoderClient:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout_s: float = 30.0,
        attempts: int = 5,
        max_backoff_s: float = 10.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout_s)
        self._retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Transient),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential_jitter(initial=0.2, max=max_backoff_s),
            reraise=True,
        )

    async def _request(self, method: str, path: str, **kwargs: object) -> dict:
        try:
            # A copy per request: a retrying object keeps its call's state, and concurrent requests
            # sharing one would end each other's attempts (a 503 then reads as a refusal).
            async for attempt in self._retrying.copy():
                with attempt:
                    try:
                        response = await self._http.request(method, path, **kwargs)
                    except _FAILED_ON_IT as error:
                        raise _FailedOnIt(f"{type(error).__name__}: {error}") from error
                    except httpx.TransportError as error:
                        raise _Transient(f"{type(error).__name__}: {error}") from error
                    if response.status_code == 500:
                        raise _FailedOnIt(f"HTTP 500: {response.text[:200]}")
                    if response.status_code == 429 or response.status_code >= 500:
                        raise _Transient(f"HTTP {response.status_code}: {response.text[:200]}")
        except _Transient as error:
            raise EncoderUnavailable(f"encoder at {self._http.base_url} unavailable: {error}") from error
        except _FailedOnIt as error:
            raise EncoderUnavailable(f"encoder at {self._http.base_url} failed on the request: {error}",
                                     failed_on_content=True) from error
        if response.status_code >= 400:
            raise EncoderRejected(f"encoder refused the request: HTTP {response.status_code}: {response.text[:500]}")
        return response.json()

    async def info(self) -> dict:
        return await self._request("GET", "/v1/info")

    async def embed(self, contents: Sequence[CourseContent]) -> EmbedResult:
        body = await self._request("POST", "/v1/embed", json={"items": [embed_item(c) for c in contents]})
        return EmbedResult(
            model_version=body["model_version"],
            embeddings=[
                Embedding(item["id"], {name: np.asarray(v, dtype=np.float32) for name, v in item["vectors"].items()})
                for item in body["items"]
            ],
        )

    async def aclose(self) -> None:
        await self._http.aclose()
