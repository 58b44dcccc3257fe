"""Chatty mutants: the monitor logs too much, so any client can make it fill its disk. Nothing else
breaks (no error line, every event delivered): only the churn scenario's log budget catches them."""

from __future__ import annotations

import logging
from typing import Any

from monitor.hub import BroadcastResult, Client, Hub
from monitor.sink import Sink
from monitor.stream import Stream
from monitor.views import View
from tests.mutants.registry import mutant

log = logging.getLogger("monitor.hub")


@mutant("churn", "log_volume")
def warning_per_connection() -> None:
    """Logs a WARNING line for every client that connects: forty short-lived clients a second make
    forty warnings a second."""
    original = Hub.register

    def register(self: Hub, sink: Sink, remote: str, view: View) -> Client:
        client = original(self, sink, remote, view)
        log.warning("client %d connected from %s (view %s)", client.id, remote, view.to_json())
        return client

    Hub.register = register  # type: ignore[method-assign]


@mutant("churn", "log_volume")
def info_per_broadcast() -> None:
    """Logs an INFO line for every batch it broadcasts: the log grows with the feed, tens of lines a
    second at 200 events a second."""
    original = Stream.broadcast

    def broadcast(self: Stream, events: list[dict[str, Any]]) -> BroadcastResult:
        result = original(self, events)
        logging.getLogger("monitor.stream").info(
            "broadcast batch %d: %d event(s) to %d client(s)", self.seq, len(events), result.queued
        )
        return result

    Stream.broadcast = broadcast  # type: ignore[method-assign]
