"""Mutants whose figures lie: a batch's sent_at in the wrong unit or clock, the server's own counters
wrong, a handler that crashes on malformed input, normal disconnects logged as warnings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from monitor import app, hub, protocol, store, stream
from monitor.views import View
from tests.mutants.registry import mutant


def _stamp_sent_at(change: Callable[[float], float]) -> None:
    """Every batch message carries ``change(sent_at)`` instead of its sent_at."""
    original = stream.Batch.message

    def message(self: stream.Batch, view: View) -> dict[str, Any]:
        out = original(self, view)
        out["sent_at"] = change(self.sent_at)
        return out

    stream.Batch.message = message  # type: ignore[method-assign]


@mutant("baseline", "delivery")
def sent_at_millis() -> None:
    """Batches carry sent_at in milliseconds instead of seconds: every latency is hugely negative."""
    _stamp_sent_at(lambda t: t * 1000.0)


@mutant("baseline", "delivery")
def sent_at_future() -> None:
    """Batches carry a sent_at 2 s ahead (a skewed clock): every latency is negative."""
    _stamp_sent_at(lambda t: t + 2.0)


@mutant("baseline", "delivery")
def sent_at_past() -> None:
    """Batches carry a sent_at 0.3 s behind (a skewed clock): each seems sent before its events were
    fed, though the latency stays under the scenario's bound."""
    _stamp_sent_at(lambda t: t - 0.3)


@mutant("baseline", "stats")
def node_counts_overwritten() -> None:
    """Each stored batch overwrites its nodes' counters instead of adding to them: a node's counts
    show only its last batch."""
    store._UPSERT_STATS = store._UPSERT_STATS.replace(" + excluded.", " * 0 + excluded.")


@mutant("baseline", "stats")
def stats_total_stale() -> None:
    """The totals of a view's stats_update are computed once and then sent again unchanged (the
    per-node counts stay right)."""
    original = app.MonitorState.stats_message
    first: dict[View, dict[str, Any]] = {}

    async def stats_message(self: app.MonitorState, view: View, all_stats: Any = None) -> dict[str, Any]:
        message = await original(self, view, all_stats)
        message["totals"] = first.setdefault(view, message["totals"])
        return message

    app.MonitorState.stats_message = stats_message  # type: ignore[method-assign]


def _raise_on_reject(code: str) -> None:
    """A request the session would answer with error ``code`` raises instead, out of the handler."""
    original = protocol.Session.reject

    def reject(self: protocol.Session, got: str, message: str) -> None:
        if got == code:
            raise ValueError(f"cannot handle request: {message}")
        original(self, got, message)

    protocol.Session.reject = reject  # type: ignore[method-assign]


@mutant("malformed_input", "no_error_logs")
def crash_on_unknown_type() -> None:
    """A request of an unknown type raises in the WebSocket handler (an ERROR with a traceback, and
    the client's connection dies) instead of getting an error answer."""
    _raise_on_reject("unknown_type")


@mutant("malformed_input", "no_error_logs")
def crash_on_bad_json() -> None:
    """Text that is not JSON raises in the WebSocket handler instead of getting an error answer."""
    _raise_on_reject("bad_json")


@mutant("mass_drop", "no_error_logs")
def disconnect_warning() -> None:
    """Logs every normal client disconnect at WARNING."""
    original = hub.Hub.unregister

    def unregister(self: hub.Hub, client: hub.Client) -> None:
        if client.id in self.clients:
            logging.getLogger("monitor.hub").warning("client %d (%s) disconnected", client.id, client.remote)
        original(self, client)

    hub.Hub.unregister = unregister  # type: ignore[method-assign]
