"""Errors the harness raises: each says what went wrong and, where it can, what to do about it."""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness raises on purpose.

    ``hint`` says what the user should do next (None when there is nothing useful to say).
    """

    default_hint: str | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint


class ToxiproxyError(HarnessError):
    """A Toxiproxy server could not be started, reached, or did not do what was asked.

    ``status`` is the HTTP status of the API's answer, or None when there was no answer.
    """

    def __init__(self, message: str, hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


class ToxiproxyNotFound(ToxiproxyError):
    """No toxiproxy-server binary could be found."""

    default_hint = "run scripts/bootstrap (installs it with go install) or set TOXIPROXY_SERVER"
