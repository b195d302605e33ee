"""The one exception every layer of the emulator raises to answer a request with an HTTP error."""

from __future__ import annotations


class HubError(Exception):
    """An error answer: HTTP status, message, and the ``X-Error-Code`` the client classifies errors by.

    ``huggingface_hub`` decides between ``RepositoryNotFoundError``, ``RevisionNotFoundError`` and
    ``RemoteEntryNotFoundError`` from the ``X-Error-Code`` header alone (``utils/_http.py::hf_raise_for_status``),
    so every not-found answer must carry the right code, not just a 404.
    """

    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})


def repo_not_found(repo_id: str) -> HubError:
    """404 classified by the client as ``RepositoryNotFoundError``."""
    return HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")


def revision_not_found(rev: str) -> HubError:
    """404 classified by the client as ``RevisionNotFoundError``."""
    return HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")


def entry_not_found(path: str, detail: str = "Entry not found") -> HubError:
    """404 classified by the client as ``RemoteEntryNotFoundError``."""
    return HubError(404, f"{detail}: {path}", "EntryNotFound")


def bad_request(message: str) -> HubError:
    """400, which the client turns into ``BadRequestError``."""
    return HubError(400, message)
