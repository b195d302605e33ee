"""Credential detection for pushed files: a few high-signal token formats, matched on raw bytes in one pass.

Only formats with a distinctive prefix and length are reported, because every false positive blocks someone's
push. Findings name the kind of secret and the line, never any part of the secret: push output is shown to the
pusher and may be logged.
"""

from __future__ import annotations

import re

from . import Finding, Findings

TEXT_SNIFF_BYTES = 8 * 1024

# A PEM/armor line break, raw or JSON-escaped: keys are most often leaked inside service-account JSON files.
_NL = rb"(?:\r?\n|\\r\\n|\\n)"

# One alternation with a named group per kind, so a 10 MB file costs one C-level regex pass. Every branch
# starts with a bare literal byte and the group opens after it: that shape lets the engine skip between
# candidate first bytes (h, a, A, g, x, -) in C instead of trying every branch at every offset (~10x faster
# than groups wrapping whole branches). Leading word boundaries are checked in Python on the few hits, since a
# look-behind would defeat that skip too.
# Compiled on first use: most pushes hold no file that passes the prefilter below, and compiling this costs a
# push about 2 ms.
_SECRET_PATTERN = (
    rb"h(?P<huggingface>f_[A-Za-z0-9]{34,})"
    rb"|a(?P<huggingface_org>pi_org_[A-Za-z0-9]{34,})"
    rb"|A(?P<aws>(?:KIA|SIA)[A-Z0-9]{16}(?![A-Za-z0-9]))"
    rb"|g(?P<github>h[pousr]_[A-Za-z0-9]{36,}|ithub_pat_[A-Za-z0-9_]{82,})"
    rb"|g(?P<gitlab>lpat-[A-Za-z0-9_-]{20,})"
    # Slack tokens carry a numeric team/user id after the prefix; requiring it skips "xoxb-your-bot-token".
    rb"|x(?P<slack>ox[abposr]-(?=[A-Za-z0-9-]{20})[0-9]+-[A-Za-z0-9-]+)"
    rb"|h(?P<slack_webhook>ttps://hooks\.slack\.com/(?:services/T[A-Z0-9]{8,}/B[A-Z0-9]{8,}/[A-Za-z0-9]{20,}"
    rb"|(?:workflows|triggers)/T[A-Z0-9]{8,}/[A-Z0-9]{8,}/[0-9]+/[A-Za-z0-9]{20,}))"
    # A private key counts only with a base64 body after the header (after optional armor headers such as
    # "Proc-Type:" or "Version:" and a blank line): code that merely looks for "-----BEGIN RSA PRIVATE KEY-----"
    # (parsers, docs, tests of key loaders) is not a leak.
    rb"|-(?P<private_key>----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----[ \t]*" + _NL + rb"?"
    rb"(?:[A-Za-z][A-Za-z0-9-]{0,40}:[^\r\n\\]{0,200}" + _NL + rb"){0,8}"
    rb"(?:[ \t]*" + _NL + rb")?[ \t]*[A-Za-z0-9+/]{40})"
)
_compiled: list[re.Pattern[bytes]] = []


def _secret() -> re.Pattern[bytes]:
    if not _compiled:
        _compiled.append(re.compile(_SECRET_PATTERN))
    return _compiled[0]

# Cheap prefilter: bytes.__contains__ is a fast C search; most files contain none of these and skip the regex.
# Each is a literal every match of its kind contains, so a file with none of them cannot match at all.
_PREFIXES = (
    b"hf_", b"api_org_", b"AKIA", b"ASIA", b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"github_pat_", b"glpat-",
    b"xox", b"hooks.slack.com", b"PRIVATE KEY",
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


def is_text(data: bytes) -> bool:
    """Whether ``data`` looks like text: no NUL byte in its first 8 KiB (git's own binary heuristic)."""
    return b"\x00" not in data[:TEXT_SNIFF_BYTES]


def scan_secrets(data: bytes) -> list[Finding]:
    """Report credentials in ``data`` (any encoding) as one Finding per hit, with its 1-based line.

    Hits past the cap of :class:`Findings` are counted in one final finding.
    Placeholders (see ``_is_placeholder``) are not reported.
    """
    if not any(prefix in data for prefix in _PREFIXES):
        return []
    findings = Findings("possible secrets", "remove them all, rewrite the commits, and revoke every credential",
                        unique=False)
    line, counted_to = 1, 0
    for match in _secret().finditer(data):
        kind = match.lastgroup
        if kind is None or not _is_secret(kind, match, data):
            continue
        if findings.full:
            findings.add("")  # counted, not itemised: no need to find its line
            continue
        # Line numbers incrementally: each byte is counted once however many hits there are.
        line += data.count(b"\n", counted_to, match.start())
        counted_to = match.start()
        problem, hint = _DESCRIPTIONS[kind]
        findings.add(problem, hint, line)
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
