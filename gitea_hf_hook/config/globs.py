"""Glob patterns of the configuration, compiled once to regular expressions.

Path patterns follow .gitignore's rules, which ML engineers already know: a pattern without a slash matches a
file's name at any depth (``*.env``), one with a slash matches from the top (``training/**``), ``**`` spans
folders and ``*`` stays within one. Name patterns (branches, tags, repositories) are matched whole, and their
``*`` does not cross a slash either, so ``release/*`` does not match ``release/a/b``.
"""

from __future__ import annotations

import re


def _translate(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**/", i):
                out.append("(?:.*/)?")
                i += 3
                continue
            if pattern.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("!", "]") else i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def compile_path_glob(pattern: str) -> re.Pattern[str]:
    """Compile one .gitignore-style path pattern."""
    anchored = "/" in pattern.rstrip("/")
    body = pattern.strip("/")
    if pattern.endswith("/"):
        body += "/**"
    regex = _translate(body)
    if not anchored:
        regex = "(?:.*/)?" + regex
    return re.compile(regex + r"\Z", re.DOTALL)


def compile_name_glob(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """Compile a pattern matched against a whole name such as a branch or ``owner/repo``."""
    return re.compile(_translate(pattern) + r"\Z", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def check_glob(pattern: str) -> str | None:
    """Return why ``pattern`` cannot be used, or None when it compiles."""
    if not pattern:
        return "must not be empty"
    try:
        compile_path_glob(pattern)
    except re.error as exc:
        return f"is not a valid glob ({exc})"
    return None

