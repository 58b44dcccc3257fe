"""``/healthz`` and the storage's health.

A store that cannot be written (read-only, corrupt, full) is reported, not hidden: ``/healthz``
answers 503 with the reason, and the log gets one ERROR a minute with how many writes failed, not
one per retry. Paths and raw exception text stay out of ``/healthz`` unless ``--verbose-health``.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

log = logging.getLogger("monitor.health")

REPORT_EVERY = 60.0


def storage_reason(exc: BaseException) -> str:
    """A short, path-free reason for a failed write."""
    text = str(exc).lower()
    if "readonly" in text or "read-only" in text or "read only" in text:
        return "database is read-only"
    if "full" in text or "no space" in text:
        return "disk is full"
    corrupt = isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)
    if corrupt or "malformed" in text or "not a database" in text:
        return "database is corrupt"
    if "locked" in text or "busy" in text:
        return "database is locked"
    return f"storage error ({type(exc).__name__})"


class StorageHealth:
    def __init__(self, every: float = REPORT_EVERY) -> None:
        self.every = every
        self.failing_since: float | None = None
        self.reason: str | None = None
        self.detail: str | None = None
        self.failures = 0  # since the last report
        self.total_failures = 0
        self.reported_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.failing_since is None

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        self.reason, self.detail = storage_reason(exc), f"{type(exc).__name__}: {exc}"
        self.failures += 1
        self.total_failures += 1
        if self.reported_at is None or now - self.reported_at >= self.every:
            log.error(
                "storage: %s; %d write(s) failed since the last report, retrying (%s)",
                self.reason, self.failures, self.detail,
            )  # fmt: skip
            self.reported_at = now
            self.failures = 0

    def succeeded(self) -> None:
        if self.failing_since is None:
            return
        log.info(
            "storage: writes succeed again after %.1fs (%d failed in all)",
            time.monotonic() - self.failing_since, self.total_failures,
        )  # fmt: skip
        self.failing_since = self.reason = self.detail = self.reported_at = None
        self.failures = 0


def public_nodes(nodes: dict[str, dict[str, Any]], verbose: bool) -> dict[str, dict[str, Any]]:
    """Node status without file paths or raw error text unless ``verbose``."""
    if verbose:
        return nodes
    shown = {}
    for name, status in nodes.items():
        entry = {k: v for k, v in status.items() if k not in ("path", "error")}
        entry["error"] = error_kind(status.get("error"))
        shown[name] = entry
    return shown


def error_kind(error: Any) -> str | None:
    if not error:
        return None
    text = str(error)
    for kind in ("No such file", "Permission denied", "Is a directory", "Too many open files"):
        if kind in text:
            return kind.lower()
    return "read error"


def storage_status(storage: StorageHealth | None, verbose: bool) -> dict[str, Any]:
    if storage is None or storage.ok:
        return {"ok": True}
    status: dict[str, Any] = {"ok": False, "reason": storage.reason, "failures": storage.total_failures}
    if verbose:
        status["detail"] = storage.detail
    return status
