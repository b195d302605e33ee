"""Text from outside made safe to keep and to show: credentials redacted, controls escaped or replaced.

Two steps, at two places, for two reasons:

- :func:`clean` when the worker first stores a message it did not write (a Hub answer, an exception's text):
  one line of printable characters, bounded, with no token in it. The spool and ``--json`` keep this value.
- :func:`escape` when anything from outside is printed to a terminal or a log line: job fields (refs, paths,
  pusher and repository names) are written by Gitea's user and are never cleaned, so every printer escapes.
"""

from __future__ import annotations

import re

# Hub tokens (user and org), and the other high-signal formats the secret scanner knows.
_TOKEN = re.compile(
    r"\b(?:hf_[A-Za-z0-9]{6,}|api_org_[A-Za-z0-9]{6,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|glpat-[A-Za-z0-9_-]{10,}|xox[abposr]-[A-Za-z0-9-]{10,})"
    r"|(?i:(?<=authorization: )(?:bearer |basic )?\S+)"
)

MESSAGE_LIMIT = 1000  # characters of a stored error message or reason
HUB_MESSAGE_LIMIT = 300  # characters of what the Hub said, inside such a message
REPLACED = "\ufffd"  # what a control character of a stored message becomes
_CUT = "..."


def redact(text: str) -> str:
    """``text`` with every token-shaped string replaced by ``[REDACTED]``."""
    return _TOKEN.sub("[REDACTED]", text)


def escape(text: str) -> str:
    """``text`` safe to print on a terminal or in a one-line log record.

    Every character Python does not call printable becomes its backslash escape (``\\x1b``, ``\\n``, ``\\x85``,
    ``\\u202e``, ``\\u2028``, ``\\udcff``): C0 and C1 controls, ESC, DEL, bidi controls, line and paragraph
    separators, lone surrogates (a file name that is not UTF-8), unassigned code points. A backslash is doubled,
    so text cannot fake an escape. Time and memory are linear in the text.
    """
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(c if c.isprintable() and c != "\\" else c.encode("unicode_escape").decode("ascii") for c in text)


def clean(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """A message from outside as the worker stores it: one line, printable, no token, at most ``limit`` characters.

    Runs of white space (line breaks and Unicode separators included) become one space, so a message cannot
    start a forged line; any other non-printable character becomes U+FFFD, so a terminal escape, an OSC
    hyperlink or a bidi override is inert wherever the value goes, JSON included.
    """
    scan = limit * 16
    cut = len(text) > scan
    # Only so much is looked at; the last word may be part of a token cut in two, which redaction would miss.
    one_line = " ".join(text[:scan].split())
    if cut:
        one_line = one_line.rpartition(" ")[0]
    if not one_line.isprintable():
        one_line = "".join(c if c.isprintable() else REPLACED for c in one_line)
    text = redact(one_line)
    if cut or len(text) > limit:
        text = text[:limit - len(_CUT)] + _CUT
    return text
