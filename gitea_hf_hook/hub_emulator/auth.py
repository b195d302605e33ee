"""Access tokens accepted by the emulator, and redaction of anything that looks like one."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

#: User name a bare ``--token hf_xxx`` maps to.
DEFAULT_USER = "emulator"

_TOKEN_SHAPE = re.compile(r"hf_[A-Za-z0-9]+")
_AUTH_HEADER = re.compile(r"(?i)(authorization\s*[:=]\s*)(bearer\s+)?\S+")


def redact(text: str) -> str:
    """Replace every ``hf_...`` token and the value of any Authorization header in ``text``."""
    return _TOKEN_SHAPE.sub("hf_***", _AUTH_HEADER.sub(r"\1***", text))


@dataclass(frozen=True)
class Principal:
    """Who a valid token belongs to, and whether it may write."""

    user: str
    role: str  # "write" or "read"


def parse_token_spec(spec: str) -> tuple[str, Principal]:
    """Parse ``hf_xxx``, ``alice=hf_xxx`` or ``alice=hf_xxx:read`` into ``(token, principal)``.

    The error message never repeats the token, since it is likely to end up in a log.
    """
    user, sep, rest = spec.partition("=")
    if not sep:
        user, rest = DEFAULT_USER, spec
    token, _, role = rest.partition(":")
    role = role or "write"
    if not token or role not in ("read", "write") or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", user):
        raise ValueError("invalid token specification: expected TOKEN, USER=TOKEN or USER=TOKEN:read")
    return token, Principal(user, role)


class TokenTable:
    """The accepted tokens; lookups compare in constant time so response timing does not leak a token."""

    def __init__(self, specs: list[str]) -> None:
        self._entries: list[tuple[bytes, Principal]] = []
        for spec in specs:
            token, principal = parse_token_spec(spec)
            self._entries.append((token.encode(), principal))

    def lookup(self, token: str) -> Principal | None:
        """The principal a token belongs to, or None."""
        found = None
        candidate = token.encode()
        for known, principal in self._entries:
            if hmac.compare_digest(known, candidate):
                found = principal
        return found

    def users(self) -> list[str]:
        """Every user name a token maps to."""
        return sorted({p.user for _, p in self._entries})
