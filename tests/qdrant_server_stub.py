"""A stand-in for a Qdrant server's REST API, on loopback, for the server-only code paths.

No Qdrant server can run on this project's machines (no release binary ships in a package
registry they reach), and qdrant-client's local mode skips what only a server does: payload
indexes and HTTP errors. So the client talks real HTTP to this stub. Its answers are NOT
recorded from a server: they are written in the server's documented JSON envelope
(``{"result": ..., "status": "ok", "time": ...}``; errors ``{"status": {"error": ...}}``), and
qdrant-client parses them with its models generated from the server's OpenAPI schema, which
checks their shape. What a real server would do with the requests is not tested here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: What ``GET /`` of a Qdrant server answers (no envelope); qdrant-client checks the version against its own.
ROOT = {"title": "qdrant - vector search engine", "version": "1.20.0", "commit": "0" * 40}

Answer = tuple[int, Any]


def ok(result: Any) -> Answer:
    return 200, {"result": result, "status": "ok", "time": 0.001}


def error(status: int, message: str) -> Answer:
    return status, {"status": {"error": message}, "time": 0.0}


@dataclass
class QdrantServerStub:
    """Answers each request with ``answer(method, path, body)``; keeps every request it got."""

    answer: Callable[[str, str, Any], Answer]
    requests: list[tuple[str, str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                path = self.path.split("?")[0]
                stub.requests.append((self.command, path, body))
                status, document = (200, ROOT) if path == "/" else stub.answer(self.command, path, body)
                raw = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _handle

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
