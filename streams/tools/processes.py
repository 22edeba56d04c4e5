"""Local processes of the tools and tests: free ports, a worker as a child process, the settings
of a worker on the embedded broker, and the embedded broker with the encoder service together."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, get_origin

from streams.settings import Settings

if TYPE_CHECKING:
    from streams.tools.embedded_broker import EmbeddedBroker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def terminate(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``; returns the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def embedded_env(bootstrap_servers: str, encoder_url: str, data_dir: Path, app_id: str = "coursestream-demo",
                 partitions: int = 2) -> dict[str, str]:
    """Settings (as environment variables) of a worker on the embedded broker, isolated by app id.

    Each call picks a free port for the worker's HTTP API, so several workers can share a machine.
    """
    env = {
        "COURSESTREAM_WEB_PORT": str(free_port()),
        "COURSESTREAM_APP_ID": app_id,
        "COURSESTREAM_KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "COURSESTREAM_KAFKA_EMBEDDED": "1",
        # Tansu: joining a group takes about half the session timeout.
        "COURSESTREAM_KAFKA_SESSION_TIMEOUT_S": "6",
        "COURSESTREAM_KAFKA_HEARTBEAT_INTERVAL_S": "2",
        "COURSESTREAM_DATA_DIR": str(data_dir),
        "COURSESTREAM_PARTITIONS": str(partitions),
        "COURSESTREAM_ENCODER_URL": encoder_url,
    }
    for topic in ("learner_events", "course_content", "recommendations", "dead_letter", "course_indexed",
                  "content_retry", "course_vectors"):
        env[f"COURSESTREAM_TOPIC_{topic.upper()}"] = f"{app_id}.{topic.replace('_', '-')}"
    return env


@contextlib.contextmanager
def embedded_services() -> Iterator[tuple[EmbeddedBroker, str]]:
    """A Tansu broker and the encoder service (in this process, CPU, models loaded): the broker and
    the encoder's URL. Both stop on exit."""
    from encoders.service import serve_in_background
    from encoders.settings import EncoderSettings
    from streams.tools.embedded_broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        encoder = serve_in_background(EncoderSettings(), port=0)
        try:
            encoder.wait_ready()
            yield broker, encoder.url
        finally:
            encoder.stop()


def settings_from(env: Mapping[str, str]) -> Settings:
    """The settings a process started with ``env`` would read (ignoring this process's own).

    List settings are JSON in the environment, as pydantic-settings reads them there.
    """
    values: dict[str, object] = {}
    for key, value in env.items():
        name = key.removeprefix("COURSESTREAM_").lower()
        field = Settings.model_fields.get(name)
        values[name] = json.loads(value) if field is not None and get_origin(field.annotation) is list else value
    return Settings(**values)


class WorkerProcess:
    """``coursestream worker`` (or another Faust worker's ``python -m`` arguments) as a child process
    with ``env`` settings, its output in a log file."""

    def __init__(self, env: Mapping[str, str], log_path: Path,
                 arguments: Sequence[str] = ("streams", "worker", "--loglevel", "warning")) -> None:
        self.env = {**os.environ, **env, "TOKENIZERS_PARALLELISM": "false"}
        self.log_path = log_path
        self.arguments = arguments
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", *self.arguments],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to flush or commit anything."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL after 30 s); returns the exit code."""
        return None if self.process is None else terminate(self.process, timeout_s=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
