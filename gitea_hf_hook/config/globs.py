"""Glob patterns of the configuration, compiled once to regular expressions.

Path patterns follow .gitignore's rules, which ML engineers already know: a pattern without a slash matches a
file's name at any depth (``*.env``), one with a slash matches from the top (``training/**``), ``**`` spans
folders and ``*`` stays within one. Name patterns (branches, tags, repositories) are matched whole, and their
``*`` does not cross a slash either, so ``release/*`` does not match ``release/a/b``.
"""

from __future__ import annotations

import functools
import re

# The character classes of .gitignore brackets (``[[:digit:]]``), as Python class ranges.
_POSIX = {
    "alnum": "a-zA-Z0-9", "alpha": "a-zA-Z", "blank": " \\t", "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9",
    "graph": "!-~", "lower": "a-z", "print": " -~", "punct": "!-/:-@\\[-`{-~", "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z", "xdigit": "0-9A-Fa-f",
}


def _bracket(pattern: str, i: int) -> tuple[str, int] | None:
    """The bracket expression opening at ``pattern[i]`` as a regex, and the index after it; None when unclosed.

    As in .gitignore: ``!`` or ``^`` negates, a ``]`` first is a literal, a backslash escapes, ``[:name:]`` is a
    character class, and no bracket ever matches ``/``.
    """
    n = len(pattern)
    j = i + 1
    negate = j < n and pattern[j] in "!^"
    if negate:
        j += 1
    items: list[str] = []
    first = True
    while j < n:
        c = pattern[j]
        if c == "]" and not first:
            body = "".join(items)
            return ("[^/" + body + "]" if negate else "(?!/)[" + body + "]"), j + 1
        first = False
        if pattern.startswith("[:", j):
            close = pattern.find(":]", j + 2)
            if close >= 0 and pattern[j + 2:close] in _POSIX:
                items.append(_POSIX[pattern[j + 2:close]])
                j = close + 2
                continue
        if c == "\\" and j + 1 < n:
            j += 1
            c = pattern[j]
        j += 1
        if j + 1 < n and pattern[j] == "-" and pattern[j + 1] != "]":
            high, j = pattern[j + 1], j + 2
            if high == "\\" and j < n:
                high, j = pattern[j], j + 1
            items.append(re.escape(c) + "-" + re.escape(high))
        else:
            items.append(re.escape(c))
    return None


def _translate(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            stars = i
            while i < n and pattern[i] == "*":
                i += 1
            # Only a "**" that is a whole path segment spans folders; any other run of stars is one "*".
            whole = i - stars >= 2 and (stars == 0 or pattern[stars - 1] == "/") and (i == n or pattern[i] == "/")
            if whole and i < n:
                # "**/**/" means what one "**/" means; kept twice, the regex would backtrack between them.
                if not out or out[-1] != "(?:.*/)?":
                    out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*" if whole else "[^/]*")
            continue
        if c == "?":
            out.append("[^/]")
        elif c == "[" and (bracket := _bracket(pattern, i)) is not None:
            regex, i = bracket
            out.append(regex)
            continue
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


# Cached: the checks match every file of a push against every pattern; re imports functools already.
@functools.lru_cache(maxsize=512)
def compile_path_glob(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """Compile one .gitignore-style path pattern."""
    anchored = "/" in pattern.rstrip("/")
    body = pattern.strip("/")
    if pattern.endswith("/"):
        body += "/**"
    regex = _translate(body)
    if not anchored:
        regex = "(?:.*/)?" + regex
    # A pattern that matches a folder covers every file inside it.
    return re.compile(regex + r"(?:/.*)?\Z", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


@functools.lru_cache(maxsize=512)
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

