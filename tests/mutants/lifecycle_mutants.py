"""Mutants of a client's lifecycle in the hub: eviction that leaves the connection or what the client
held behind, a queue bound that does not bound, a broadcast that gives up at its first failed
recipient, a rate limit that catches legitimate clients."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from monitor import protocol
from monitor.hub import BroadcastResult, Client, Hub, text_frame
from tests.mutants.registry import mutant

_kept: list[Any] = []  # what a leaking mutant holds on to, for the life of the process
_original_evict = Hub.evict


@mutant("queue_bound", "eviction")
def evict_keeps_socket() -> None:
    """Eviction drops the client from the registry and stops its writer but never closes or aborts
    its connection: the registry count says evicted, the TCP connection stays up."""

    async def close(self: Hub, client: Client, code: int, reason: str) -> None:
        return None

    Hub._close = close  # type: ignore[method-assign]


@mutant("queue_bound", "eviction")
def queue_bound_huge() -> None:
    """The per-client queue bound is 1000 times what it is configured to be: a client that stopped
    reading is evicted only when its send times out, never by the queue bound."""
    original_init = Hub.__init__

    def init(self: Hub, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.queue_size *= 1000

    Hub.__init__ = init  # type: ignore[method-assign]


@mutant("partial_broadcast", "delivery")
def broadcast_stops_at_failure() -> None:
    """A broadcast stops at the first recipient it has to evict: the recipients after it in the
    registry never get that message."""

    def broadcast_text(self: Hub, data: str, recipients: Any) -> BroadcastResult:
        result = BroadcastResult()
        frame = text_frame(data)
        for client in list(recipients):
            if not self.enqueue(client, data, frame):
                result.evicted += 1
                break
            result.queued += 1
        if result.queued or result.evicted:
            self.metrics.broadcasts += 1
        return result

    Hub.broadcast_text = broadcast_text  # type: ignore[method-assign]


@mutant("churn_behind", "leaks")
def leak_socket_on_evict() -> None:
    """Eviction ends the connection (the client sees it end) but keeps a duplicate of its socket's
    descriptor open: one descriptor leaks per evicted client."""

    def evict(self: Hub, client: Client, reason: str, code: int) -> None:
        transport = getattr(client.sink, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if client.evicted is None and sock is not None:
            kept = socket.socket(fileno=os.dup(sock.fileno()))
            try:
                kept.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            _kept.append(kept)
        _original_evict(self, client, reason, code)

    Hub.evict = evict  # type: ignore[method-assign]


@mutant("churn_behind", "leaks")
def leak_writer_task() -> None:
    """Eviction does not cancel the client's writer task, and a writer whose send failed or timed out
    waits forever instead of ending: one task (and the client it holds) leaks per evicted client."""
    original_write_loop = Hub._write_loop

    def evict(self: Hub, client: Client, reason: str, code: int) -> None:
        writer, client.writer = client.writer, None
        try:
            _original_evict(self, client, reason, code)
        finally:
            client.writer = writer

    async def write_loop(self: Hub, client: Client) -> None:
        await original_write_loop(self, client)
        _kept.append(asyncio.current_task())  # the hub's list of writers, never pruned
        await asyncio.Event().wait()

    Hub.evict = evict  # type: ignore[method-assign]
    Hub._write_loop = write_loop  # type: ignore[method-assign]


@mutant("churn_behind", "leaks")
def leak_evicted_queue() -> None:
    """The hub keeps every evicted client with what was queued for it: one Client object and its
    queue leak per evicted client."""

    def evict(self: Hub, client: Client, reason: str, code: int) -> None:
        if client.evicted is None and reason != "shutdown":
            _kept.append((client, list(client.queue)))
        _original_evict(self, client, reason, code)

    Hub.evict = evict  # type: ignore[method-assign]


@mutant("chatty_clients", "rate_limit")
def limiter_refill_too_slow() -> None:
    """The rate limiter's bucket refills at a tenth of the advertised rate: a client that keeps under
    the limit is limited once its burst is spent."""
    original_allow = protocol.RateLimit.allow

    def allow(self: protocol.RateLimit) -> bool:
        rate, self.rate = self.rate, self.rate / 10
        try:
            return original_allow(self)
        finally:
            self.rate = rate

    protocol.RateLimit.allow = allow  # type: ignore[method-assign]
