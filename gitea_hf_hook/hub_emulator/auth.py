"""Access tokens accepted by the emulator, and redaction of anything that looks like one."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass, replace
from typing import Any

#: User name a bare ``--token hf_xxx`` maps to.
DEFAULT_USER = "emulator"

_TOKEN_SHAPE = re.compile(r"hf_[A-Za-z0-9]+")
_AUTH_HEADER = re.compile(r"(?i)(authorization\s*[:=]\s*)(bearer\s+)?\S+")


def redact(text: str) -> str:
    """Replace every ``hf_...`` token and the value of any Authorization header in ``text``."""
    return _TOKEN_SHAPE.sub("hf_***", _AUTH_HEADER.sub(r"\1***", text))


ROLES = ("read", "write", "fineGrained")  # as whoami-v2 names them in auth.accessToken.role
# Entities a fine-grained token's permissions are scoped to: a user or an organisation (its whole namespace), or
# one repository, named namespace/name.
ENTITY_TYPES = ("user", "org", "model", "dataset", "space")


def iso_time(seconds: float) -> str:
    """``2025-03-18T10:40:56.186Z``: how whoami-v2 writes ``createdAt``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}Z"


@dataclass(frozen=True)
class Scope:
    """One ``fineGrained.scoped`` entry of a token: its permissions (``repo.write``...) on one entity."""

    entity_type: str  # one of ENTITY_TYPES
    name: str  # the user or organisation, or namespace/name for a repository
    permissions: tuple[str, ...]


@dataclass(frozen=True)
class Principal:
    """Who a valid token belongs to, and what it may do: a classic ``read`` or ``write`` token, or a
    ``fineGrained`` one whose ``scoped`` entries say where it may write."""

    user: str
    role: str  # one of ROLES
    scoped: tuple[Scope, ...] = ()
    global_permissions: tuple[str, ...] = ()
    created_at: str = ""  # as whoami-v2 reports createdAt; empty: not reported, as for some older tokens
    display_name: str = "hub-emulator"

    def can_write(self, repo_type: str, namespace: str, name: str) -> bool:
        """Whether the token may write the repository (a classic write token may write anywhere here)."""
        if self.role != "fineGrained":
            return self.role == "write"
        return any("repo.write" in scope.permissions
                   and ((scope.entity_type in ("user", "org") and scope.name == namespace)
                        or (scope.entity_type == repo_type and scope.name == f"{namespace}/{name}"))
                   for scope in self.scoped)

    def access_token(self) -> dict[str, Any]:
        """``auth.accessToken`` of whoami-v2, as the Hub answers it."""
        answer: dict[str, Any] = {"displayName": self.display_name, "role": self.role}
        if self.created_at:
            answer["createdAt"] = self.created_at
        if self.role == "fineGrained":
            answer["fineGrained"] = {
                "canReadGatedRepos": False, "global": list(self.global_permissions),
                "scoped": [{"entity": {"_id": hashlib.sha1(s.name.encode()).hexdigest()[:24], "type": s.entity_type,
                                       "name": s.name}, "permissions": list(s.permissions)} for s in self.scoped]}
        return answer


def _strings(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        return None
    return tuple(value)


def _scope(entry: Any) -> Scope | None:
    entity = entry.get("entity") if isinstance(entry, dict) else None
    if not isinstance(entity, dict) or entity.get("type") not in ENTITY_TYPES:
        return None
    if not isinstance(entity.get("name"), str):
        return None
    permissions = _strings(entry.get("permissions"))
    return None if permissions is None else Scope(entity["type"], entity["name"], permissions)


def principal_from_json(payload: Any, now: float) -> tuple[str, Principal]:
    """A token and its principal from ``POST /_emulator/tokens``: ``{"token", "user", "role", "scoped": [{"entity":
    {"type", "name"}, "permissions": [...]}], "global": [...], "createdAt": ISO or null, "displayName"}``. A missing
    ``createdAt`` is ``now``; null reports none. The error message never repeats the token."""
    data = payload if isinstance(payload, dict) else {}
    token, user, role = data.get("token"), data.get("user", DEFAULT_USER), data.get("role", "write")
    created, name = data.get("createdAt", iso_time(now)), data.get("displayName", "hub-emulator")
    entries = data.get("scoped", [])
    scoped = [_scope(entry) for entry in entries] if isinstance(entries, list) else [None]
    permissions = _strings(data.get("global", []))
    if (not isinstance(token, str) or not token or not isinstance(user, str)
            or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", user) or role not in ROLES or None in scoped
            or permissions is None or not isinstance(created, (str, type(None))) or not isinstance(name, str)):
        raise ValueError("expected {token, user, role: read|write|fineGrained, scoped: [{entity: {type, name}, "
                         "permissions: [...]}], global: [...], createdAt: an ISO time or null, displayName}")
    return token, Principal(user, role, tuple(s for s in scoped if s is not None), permissions, created or "", name)


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

    def __init__(self, specs: list[str], now: float | None = None) -> None:
        self._entries: list[tuple[bytes, Principal]] = []
        created = iso_time(time.time() if now is None else now)  # made for this run
        for spec in specs:
            token, principal = parse_token_spec(spec)
            self._entries.append((token.encode(), replace(principal, created_at=created)))

    def add(self, token: str, principal: Principal) -> None:
        """Accept one more token (or give a known one a new principal)."""
        # A new list, not an append: a request thread may be looking tokens up meanwhile.
        self._entries = [(k, p) for k, p in self._entries if k != token.encode()] + [(token.encode(), principal)]

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
