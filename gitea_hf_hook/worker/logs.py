"""The worker's log: one line per event, with anything token-shaped redacted and anything unprintable escaped."""

from __future__ import annotations

import logging

from ..redact import escape, redact

log = logging.getLogger("gitea_hf_hook.worker")


def say(message: str, level: int = logging.INFO) -> None:
    """Log one line, redacted and escaped: a message quotes names Gitea's user chose and words the Hub said, which
    may hold line breaks (a forged record), terminal escapes, bidi controls or bytes that are not UTF-8."""
    log.log(level, escape(redact(message)))
