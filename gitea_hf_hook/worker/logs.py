"""The worker's log: one line per event, with anything token-shaped redacted."""

from __future__ import annotations

import logging

from ..redact import redact

log = logging.getLogger("gitea_hf_hook.worker")


def say(message: str, level: int = logging.INFO) -> None:
    """Log one line, redacted; a file name Gitea's user chose may hold bytes that are not UTF-8, or line breaks."""
    text = redact(message).encode("utf-8", "backslashreplace").decode("utf-8")
    log.log(level, text.replace("\n", "\\n").replace("\r", "\\r"))
