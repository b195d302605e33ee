"""The worker's log: one line per event, with anything token-shaped redacted and anything unprintable escaped.

Two formats, chosen with the worker command's ``--log-format``:

- ``text``: ``<time> gitea-hf-hook worker[<pid>]: <message>``, the message escaped (:func:`..redact.escape`).
- ``json``: one JSON object per line, in ASCII, with ``time``, ``level``, ``pid`` and ``message``; a job event
  adds ``job_id``, ``target``, ``commit``, ``outcome`` and ``duration`` (seconds, null while it is not known).
  The message is redacted, not escaped: JSON escapes every control and non-ASCII character itself, so a parser
  gets the text back unchanged and a terminal sees nothing it would act on.

The format travels in ``$GITEA_HF_HOOK_LOG_FORMAT``, so that the processes ``--workers`` starts log alike.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, NamedTuple

from ..redact import escape, redact

log = logging.getLogger("gitea_hf_hook.worker")

FORMATS = ("text", "json")
FORMAT_ENV = "GITEA_HF_HOOK_LOG_FORMAT"


class Event(NamedTuple):
    """What a log line says about a job: ``outcome`` is ``started``, ``published``, ``superseded``,
    ``retrying``, ``requeued`` or ``failed``; ``duration`` the seconds its publish took, when one ran."""

    job_id: str
    target: str | None  # None for a job file that could not be read
    commit: str | None
    outcome: str
    duration: float | None = None


def say(message: str, level: int = logging.INFO, event: Event | None = None) -> None:
    """Log one line, redacted and escaped: a message quotes names Gitea's user chose and words the Hub said, which
    may hold line breaks (a forged record), terminal escapes, bidi controls or bytes that are not UTF-8."""
    plain = redact(message)
    log.log(level, escape(plain), extra={"plain": plain, "event": event})


class JsonFormatter(logging.Formatter):
    """Each record as one line of JSON (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        plain = getattr(record, "plain", None)
        data: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z", "level": record.levelname.lower(), "pid": record.process,
            "message": plain if isinstance(plain, str) else redact(record.getMessage())}
        event = getattr(record, "event", None)
        if isinstance(event, Event):
            # Redacted too: a target is named by the job file, which Gitea's user writes.
            data.update(job_id=redact(event.job_id), target=None if event.target is None else redact(event.target),
                        commit=event.commit, outcome=event.outcome,
                        duration=None if event.duration is None else round(event.duration, 3))
        if record.exc_info:
            data["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=True)


def setup(log_format: str | None = None) -> None:
    """Send the worker's log to standard error in ``log_format`` (default: ``$GITEA_HF_HOOK_LOG_FORMAT``, else
    text); once per process, the first call wins."""
    if log.handlers:
        return
    chosen = log_format or os.environ.get(FORMAT_ENV) or "text"
    handler = logging.StreamHandler(sys.stderr)
    if chosen == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s gitea-hf-hook worker[%(process)d]: %(message)s",
                                      "%Y-%m-%dT%H:%M:%SZ")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
