"""Messages the worker cannot process go to the dead-letter topic, with their bytes and why."""

from __future__ import annotations

import base64
import logging

from faust.types import Message

from online.events import DEAD_LETTER_KEEPS_BYTES, DeadLetter, utcnow
from streams import metrics
from streams.worker.app import dead_letters

log = logging.getLogger(__name__)


async def dead_letter(message: Message, reason: str, error_type: str) -> None:
    """Park a message we cannot process, with its original bytes and why."""
    value = message.value or b""
    key = message.key[:DEAD_LETTER_KEEPS_BYTES] if message.key is not None else None
    record = DeadLetter(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=base64.b64encode(key).decode() if key is not None else None,
        value=base64.b64encode(value[:DEAD_LETTER_KEEPS_BYTES]).decode(),
        value_bytes=len(value),
        value_kept_bytes=min(len(value), DEAD_LETTER_KEEPS_BYTES),
        reason=reason[:2000],
        error_type=error_type,
        failed_at=utcnow(),
    )
    metrics.dead_letters.labels(error_type).inc()
    # %r: a reason quotes the message (field names, values), which must not forge log lines.
    log.warning("dead-lettered %s[%s]@%s: %r", message.topic, message.partition, message.offset, reason[:200])
    await dead_letters.send(key=key, value=record.model_dump_json().encode())
