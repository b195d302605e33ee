"""Redaction of anything shaped like a credential, applied to every log line and stored error."""

from __future__ import annotations

import re

# Hub tokens (user and org), and the other high-signal formats the secret scanner knows.
_TOKEN = re.compile(
    r"\b(?:hf_[A-Za-z0-9]{6,}|api_org_[A-Za-z0-9]{6,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|glpat-[A-Za-z0-9_-]{10,}|xox[abposr]-[A-Za-z0-9-]{10,})"
    r"|(?i:(?<=authorization: )(?:bearer |basic )?\S+)"
)


def redact(text: str) -> str:
    """``text`` with every token-shaped string replaced by ``[REDACTED]``."""
    return _TOKEN.sub("[REDACTED]", text)
