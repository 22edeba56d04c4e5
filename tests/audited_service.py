"""The encoder service as its own process, recording every file it opens and every connection it
makes (Python's audit hooks), so that a test can show what a request did not do.

``python -m tests.audited_service AUDIT_FILE`` serves with the ``COURSESTREAM_ENCODER_*`` settings
of its environment; each ``open`` and ``socket.connect`` event is one line of AUDIT_FILE:
``open <path>`` or ``connect <address>``. The hook is installed before the service is imported.
"""

from __future__ import annotations

import os
import sys


def record_to(descriptor: int) -> None:
    """Install the audit hook: a line per event, written straight to ``descriptor`` (no open, no buffer)."""

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            os.write(descriptor, f"open {args[0]!s}\n".encode(errors="replace"))
        elif event == "socket.connect":
            os.write(descriptor, f"connect {args[1]!r}\n".encode(errors="replace"))

    sys.addaudithook(hook)


if __name__ == "__main__":
    record_to(os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    from encoders.service import main
    from encoders.settings import EncoderSettings

    main(EncoderSettings())
