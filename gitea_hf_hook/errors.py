"""The exceptions a person can meet. Each carries a one-line message and a hint on how to fix it."""

from __future__ import annotations


class HookError(Exception):
    """Root of every user-facing failure of gitea-hf-hook, hooks, worker and commands alike: what happened, and
    how to fix or override it. The command line prints ``str(error)`` as one line and exits 1."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(HookError):
    """The configuration file is missing, unreadable or invalid."""


class GitError(HookError):
    """A git subprocess failed or answered something we cannot read."""


class SpoolError(HookError):
    """The spool cannot take or hand out a job."""


class JobError(SpoolError):
    """A job or state file that does not parse: the message names the file and the field."""


class PublishError(HookError):
    """Publishing a job to the Hub failed; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, hint: str = "", *, retryable: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(message, hint)
        self.retryable = retryable
        self.retry_after = retry_after
