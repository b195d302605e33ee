"""Credential detection for pushed files: a few high-signal token formats, matched on raw bytes in one pass.

Only formats with a distinctive prefix and a fixed shape are reported, because every false positive blocks
someone's push. Findings name the kind of secret and the line, never any part of the secret: push output is
shown to the pusher and may be logged.

Every file is scanned, text or not: a NUL in a file's first bytes says nothing about what follows, and a key
pasted into a notebook's output or a binary's string table is as leaked as one in a config file.

The pattern is linear in the input, whatever the input: a pusher chooses every byte of it. Two rules keep it so.
Every repeat is possessive (``*+``, ``{m,n}+``), or is followed by something it cannot match, so no run of
characters is ever split between two parts in more than one way (the private-key header followed by a megabyte
of blanks was the case that once took hours). And every repeat is bounded, so no match is longer than
``MAX_MATCH`` bytes: a file is scanned in windows that overlap by more than that, with the same findings as one
pass over the whole file, in memory bounded by the window.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from . import Finding, Findings

# A PEM/armor line break, raw or JSON-escaped: keys are most often leaked inside service-account JSON files.
_NL = rb"(?:\r?\n|\\r\\n|\\n)"

# One alternation with a named group per kind, so a 10 MB file costs one C-level regex pass. Every branch
# starts with a bare literal byte (or a class of two) and the group opens after it: that shape lets the engine
# skip between candidate first bytes (h, H, a, A, g, x, -) in C instead of trying every branch at every offset
# (~10x faster than groups wrapping whole branches). Leading word boundaries are checked in Python on the few
# hits, since a look-behind would defeat that skip too.
# Compiled on first use: most pushes hold no file that passes the prefilter below, and compiling this costs a
# push about 2 ms.
_SECRET_PATTERN = (
    # Hugging Face: exactly 34 letters or digits after the prefix.
    rb"h(?P<huggingface>f_[A-Za-z0-9]{34})(?![A-Za-z0-9_])"
    rb"|a(?P<huggingface_org>pi_org_[A-Za-z0-9]{34})(?![A-Za-z0-9_])"
    # AWS access key ids: a four-letter kind and 16 base-32 characters.
    rb"|A(?P<aws>(?:KIA|SIA|BIA|CCA|3T[A-Z0-9])[A-Z0-9]{16})(?![A-Za-z0-9])"
    # GitHub: classic tokens have exactly 36 characters after the prefix; fine-grained ones 22, "_", 59.
    rb"|g(?P<github>h[pousr]_[A-Za-z0-9]{36}|ithub_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})(?![A-Za-z0-9_])"
    # GitLab personal access tokens: 20 characters, or the routable form with its dot and checksum.
    rb"|g(?P<gitlab>lpat-(?:[A-Za-z0-9_-]{27,300}+\.[0-9a-z]{9}(?![A-Za-z0-9])"
    rb"|[A-Za-z0-9_-]{20}(?![A-Za-z0-9_-])))"
    # Slack tokens carry numeric workspace and user ids in fixed places: "xoxb-your-bot-token", or a number
    # where an id should be and "#" where the secret should be, are not tokens.
    rb"|x(?P<slack>ox(?:b-[0-9]{8,14}+-(?:[0-9]{10,13}+-)?+[A-Za-z0-9]{18,64}+"  # bot
    rb"|[pe]-(?:[0-9]{10,13}+-){3}[A-Za-z0-9]{28,34}+(?![A-Za-z0-9])"  # user
    rb"|[os]-[0-9]{1,16}+-[0-9]{1,16}+-[0-9]{1,16}+-[A-Fa-f0-9]{10,64}+"  # legacy
    rb"|[ar]-[0-9]{1,2}+-[A-Za-z0-9-]{8,64}+"  # legacy workspace
    rb"|e-[0-9]-[A-Za-z0-9]{146}(?![A-Za-z0-9])"  # configuration refresh
    rb"|e\.xox[bp]-[0-9]-[A-Za-z0-9]{163,166}+)"  # configuration access
    rb"|app-[0-9]-[A-Z0-9]{9,16}+-[0-9]{10,16}+-[a-f0-9]{32,64}+)"  # app-level
    # Webhooks, with any scheme or none, the host in lower or upper case.
    rb"|[hH](?P<slack_webhook>(?:ooks\.slack\.com|OOKS\.SLACK\.COM)/(?:"
    rb"services/T[A-Z0-9]{6,12}+/B[A-Z0-9]{6,12}+/[A-Za-z0-9]{20,64}+"
    rb"|(?:workflows|triggers)/T[A-Z0-9]{6,12}+/(?:[A-Z0-9]{8,16}+/)?[0-9]{6,24}+/[A-Za-z0-9]{20,64}+))"
    # A private key counts only with a base64 body after the header (after optional armor headers such as
    # "Proc-Type:" or "Version:" and a blank line): code that merely looks for "-----BEGIN RSA PRIVATE KEY-----"
    # (parsers, docs, tests of key loaders) is not a leak. The label's words are not possessive as a group,
    # since "RSA PRIVATE " must give "PRIVATE" back; each word is.
    rb"|-(?P<private_key>----BEGIN (?:[A-Z0-9]{1,16}+ ){0,3}PRIVATE KEY(?: BLOCK)?+-----[ \t]{0,256}+" + _NL + rb"?+"
    rb"(?:[A-Za-z][A-Za-z0-9-]{0,40}+:[^\r\n\\]{0,200}+" + _NL + rb"){0,8}+"
    rb"(?:[ \t]{0,256}+" + _NL + rb")?+[ \t]{0,256}+[A-Za-z0-9+/]{40})"
)
# The longest match: the key's header, 8 armor lines and the blank one; a window's overlap must exceed it.
MAX_MATCH = 4 * 1024
WINDOW = 1 << 20
_compiled: list[re.Pattern[bytes]] = []


def _secret() -> re.Pattern[bytes]:
    if not _compiled:
        _compiled.append(re.compile(_SECRET_PATTERN))
    return _compiled[0]

# Cheap prefilter: bytes.__contains__ is a fast C search; most files contain none of these and skip the regex.
# Each is a literal every match of its kind contains, so a window with none of them cannot match at all.
_PREFIXES = (
    b"hf_", b"api_org_", b"AKIA", b"ASIA", b"ABIA", b"ACCA", b"A3T", b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_",
    b"github_pat_", b"glpat-", b"xox", b"xapp-", b"ooks.slack.com", b"OOKS.SLACK.COM", b"PRIVATE KEY",
)

# Kinds whose first character must not continue a longer word ("xhf_..." or "myghp_..." are not tokens).
_WORD_START = {"huggingface", "huggingface_org", "aws", "github", "gitlab", "slack"}
# Kinds issued as random mixed-case base62: an all-lowercase "hf_" + 34 letters is a long snake_case identifier
# (hf_loadpretrainedweights...), not a token. A random body lacks one case with probability
# about 2**-34 for Hugging Face's 34 letters and at worst ~3e-5 for GitLab's 20 characters: a negligible miss.
_MIXED_CASE = {"huggingface", "huggingface_org", "github", "gitlab"}
_TOKEN_PREFIXES = (b"hf_", b"api_org_", b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"github_pat_", b"glpat-")
_WORD_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_ALNUM = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")

_DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "huggingface": ("looks like a Hugging Face token", "remove it, rewrite the commit, and revoke the token"),
    "huggingface_org": ("looks like a Hugging Face token", "remove it, rewrite the commit, and revoke the token"),
    "aws": ("looks like an AWS access key id", "remove it, rewrite the commit, and deactivate the key in AWS IAM"),
    "github": ("looks like a GitHub token", "remove it, rewrite the commit, and revoke the token"),
    "gitlab": ("looks like a GitLab token", "remove it, rewrite the commit, and revoke the token"),
    "slack": ("looks like a Slack token", "remove it, rewrite the commit, and revoke the token"),
    "slack_webhook": ("looks like a Slack webhook URL", "remove it, rewrite the commit, and regenerate the webhook"),
    "private_key": ("looks like a private key", "remove it, rewrite the commit, and replace the key pair"),
}


def scan_secrets(data: bytes) -> list[Finding]:
    """Report credentials in ``data`` (any encoding) as one Finding per hit, with its 1-based line.

    Hits past the cap of :class:`Findings` are counted in one final finding.
    Placeholders (see ``_is_placeholder``) are not reported.
    """
    return _report(iter([_Window(0, data, 0, True)]))


def scan_secrets_file(f: BinaryIO, size: int, window: int = WINDOW) -> list[Finding]:
    """:func:`scan_secrets` of the first ``size`` bytes of ``f``, read ``window`` bytes at a time."""
    return _report(_windows(f, size, max(window, 2 * _KEEP)))


class _Window(NamedTuple):
    offset: int  # of data[0] in the file
    data: bytes
    first: int  # the first index a match may start at: the byte before it is context, for word starts
    last: bool


# What a window carries into the next: the bytes where matches may still start, and the one before them.
_KEEP = MAX_MATCH + 1


def _windows(f: BinaryIO, size: int, window: int) -> Iterator[_Window]:
    offset, carry, left, first = 0, b"", size, 0
    while True:
        want = min(window, left)
        chunk = f.read(want)
        left -= len(chunk)
        data = carry + chunk
        last = left <= 0 or len(chunk) < want  # a short read: the file ends early
        yield _Window(offset, data, first, last)
        if last:
            return
        offset += len(data) - _KEEP
        carry, first = data[-_KEEP:], 1


def _report(windows: Iterator[_Window]) -> list[Finding]:
    """The findings of every hit in ``windows``. A window's matches are taken while they start before its last
    ``MAX_MATCH`` bytes, which the next window holds again, and the next window's search resumes where the last
    match ended: so each match is found once, and exactly as one search of the whole file finds it."""
    findings = Findings("possible secrets", "remove them all, rewrite the commits, and revoke every credential",
                        unique=False)
    line, counted_to, resume = 1, 0, 0  # counted_to and resume are file offsets
    for offset, data, first, last in windows:
        limit = len(data) if last else len(data) - MAX_MATCH
        if any(prefix in data for prefix in _PREFIXES):
            search = _secret().search
            while (match := search(data, max(resume - offset, first))) is not None and match.start() < limit:
                kind = match.lastgroup
                if kind is None or not _is_secret(kind, match, data):
                    # Not a token, but what it spans may hold one ("Xxoxa-1-" then an access key id): look again
                    # from its next byte, at a cost of at most its length. Not inside a key: armor lines may hold
                    # headers of their own, and looking again inside each would cost a pusher's hostile file
                    # tenfold, while a placeholder key around a real token is not a leak anyone makes.
                    resume = offset + (match.end() if kind == "private_key" else match.start() + 1)
                    continue
                resume = offset + match.end()
                if findings.full:
                    findings.add("")  # counted, not itemised: no need to find its line
                    continue
                # Line numbers incrementally: each byte is counted once however many hits there are.
                line += data.count(b"\n", counted_to - offset, match.start())
                counted_to = offset + match.start()
                problem, hint = _DESCRIPTIONS[kind]
                findings.add(problem, hint, line)
        line += data.count(b"\n", counted_to - offset, limit)
        counted_to = offset + limit
    return findings.result()


def _is_secret(kind: str, match: re.Match[bytes], data: bytes) -> bool:
    start = match.start()
    if kind in _WORD_START and start > 0 and data[start - 1] in _WORD_BYTES:
        return False
    token = match.group()
    if kind in _MIXED_CASE:
        prefix = next((p for p in _TOKEN_PREFIXES if token.startswith(p)), b"")
        body = token[len(prefix):]
        if body.upper() == body or body.lower() == body:
            return False
    return not _is_placeholder(token)


def _is_placeholder(token: bytes) -> bool:
    """Documentation and config templates use stand-ins such as "hf_xxxx...", "AKIA" + "X" * 16, or AWS's
    documented sample key id (which ends in "EXAMPLE"). We treat a token as a placeholder when its last 16 bytes
    (always inside the random part, whatever the prefix or armor headers) use at most two distinct letters or
    digits, or spell "example". Real random bodies essentially never do either, and reporting templates would
    train people to ignore the check.
    """
    tail = token[-16:]
    return len({byte for byte in tail if byte in _ALNUM}) <= 2 or b"example" in tail.lower()
