"""The client registry: safe send, per-client outbound queues, broadcast and eviction.

aiohttp's ``send_*`` has no timeout and blocks behind a client that stops reading, so the hub never
awaits a client on the broadcast path: each client has a bounded queue drained by its own writer
task, and a full queue, a send timeout or a failed send evicts that client and aborts its transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from monitor.metrics import Metrics
from monitor.views import View

log = logging.getLogger("monitor.hub")


class CloseCode(enum.IntEnum):
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    SLOW_CONSUMER = 4008
    SEND_TIMEOUT = 4009


class SendOutcome(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"


def dumps(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"))


async def send_text(ws: web.WebSocketResponse, data: str, timeout: float | None = None) -> SendOutcome:
    """Send one text frame; a vanished client is an outcome, never an exception."""
    if ws.closed:
        return SendOutcome.FAILED
    try:
        async with asyncio.timeout(timeout):
            await ws.send_str(data)
    except TimeoutError:
        return SendOutcome.TIMEOUT
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        # aiohttp raises CancelledError on a connection whose earlier send was cancelled.
        log.debug("send on a broken connection raised CancelledError")
        return SendOutcome.FAILED
    except (ConnectionError, RuntimeError) as exc:
        log.debug("send failed: %r", exc)
        return SendOutcome.FAILED
    return SendOutcome.OK


async def safe_send_json(
    ws: web.WebSocketResponse,
    payload: Any,
    *,
    timeout: float | None = None,
    metrics: Metrics | None = None,
) -> bool:
    """Send ``payload`` as JSON. Returns False (and counts it) when the client is gone or too slow."""
    outcome = await send_text(ws, dumps(payload), timeout)
    if outcome is not SendOutcome.OK and metrics is not None:
        metrics.send_failures[outcome.value] += 1
    return outcome is SendOutcome.OK


@dataclass
class BroadcastResult:
    queued: int = 0
    skipped: int = 0
    evicted: int = 0

    def add(self, other: BroadcastResult) -> None:
        self.queued += other.queued
        self.skipped += other.skipped
        self.evicted += other.evicted


@dataclass(eq=False)
class Client:
    id: int
    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    remote: str
    view: View
    queue: deque[str] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    writer: asyncio.Task[None] | None = None
    evicted: str | None = None
    connected_at: float = field(default_factory=time.time)
    sent: int = 0


class Hub:
    def __init__(
        self,
        metrics: Metrics,
        *,
        queue_size: int = 512,
        send_timeout: float = 5.0,
        close_timeout: float = 1.0,
    ) -> None:
        self.metrics = metrics
        self.queue_size = queue_size
        self.send_timeout = send_timeout
        self.close_timeout = close_timeout
        self.clients: dict[int, Client] = {}
        self._ids = itertools.count(1)
        self._closers: set[asyncio.Task[None]] = set()

    def register(self, ws: web.WebSocketResponse, request: web.Request, view: View) -> Client:
        client = Client(next(self._ids), ws, request.transport, request.remote or "?", view)
        client.writer = asyncio.create_task(self._write_loop(client), name=f"ws-writer-{client.id}")
        self.clients[client.id] = client
        self.metrics.connections_total += 1
        self.metrics.clients_connected = len(self.clients)
        return client

    def unregister(self, client: Client) -> None:
        """The client's handler ended (it closed or vanished): forget it quietly."""
        if self.clients.pop(client.id, None) is None:
            return
        self.metrics.clients_connected = len(self.clients)
        if client.writer is not None:
            client.writer.cancel()
        log.debug("client %d (%s) disconnected", client.id, client.remote)

    def send(self, client: Client, payload: Any) -> bool:
        return self.enqueue(client, dumps(payload))

    def enqueue(self, client: Client, data: str) -> bool:
        """Queue ``data`` for one client; evicts it and returns False when its queue is full."""
        if client.evicted is not None:
            return False
        if len(client.queue) >= self.queue_size:
            self.evict(client, "queue_full", CloseCode.SLOW_CONSUMER)
            return False
        client.queue.append(data)
        client.wake.set()
        return True

    def broadcast_text(self, data: str, recipients: Iterable[Client]) -> BroadcastResult:
        result = BroadcastResult()
        for client in list(recipients):
            if self.enqueue(client, data):
                result.queued += 1
            else:
                result.evicted += 1
        if result.queued or result.evicted:
            self.metrics.broadcasts += 1
        return result

    async def robust_broadcast(self, payload: Any, node: str | None = None) -> BroadcastResult:
        """Serialize once and queue for every client whose view includes ``node``; awaits no client."""
        data = dumps(payload)
        clients = list(self.clients.values())
        recipients = [c for c in clients if node is None or c.view.includes(node)]
        result = self.broadcast_text(data, recipients)
        result.skipped = len(clients) - len(recipients)
        return result

    def by_view(self) -> dict[View, list[Client]]:
        groups: dict[View, list[Client]] = {}
        for client in self.clients.values():
            groups.setdefault(client.view, []).append(client)
        return groups

    def evict(self, client: Client, reason: str, code: int) -> None:
        """Drop a client from the registry, count why, and close or abort its connection."""
        if client.evicted is not None:
            return
        client.evicted = reason
        client.queue.clear()
        if self.clients.pop(client.id, None) is not None:
            self.metrics.clients_connected = len(self.clients)
        self.metrics.evictions[reason] += 1
        level = logging.DEBUG if reason == "send_failed" else logging.INFO
        log.log(level, "evicted client %d (%s): %s", client.id, client.remote, reason)
        if client.writer is not None and client.writer is not asyncio.current_task():
            client.writer.cancel()
        closer = asyncio.create_task(self._close(client, code, reason), name=f"ws-close-{client.id}")
        self._closers.add(closer)
        closer.add_done_callback(self._closers.discard)

    async def _close(self, client: Client, code: int, reason: str) -> None:
        """Try a close frame within ``close_timeout``; abort the transport whatever happens."""
        try:
            async with asyncio.timeout(self.close_timeout):
                await client.ws.close(code=code, message=reason.encode())
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        finally:
            if client.transport is not None:
                client.transport.abort()

    async def _write_loop(self, client: Client) -> None:
        while True:
            while not client.queue:
                client.wake.clear()
                await client.wake.wait()
            data = client.queue.popleft()
            outcome = await send_text(client.ws, data, self.send_timeout)
            if outcome is SendOutcome.OK:
                client.sent += 1
                self.metrics.messages_sent += 1
                self.metrics.bytes_sent += len(data)
                continue
            self.metrics.send_failures[outcome.value] += 1
            if outcome is SendOutcome.TIMEOUT:
                self.evict(client, "send_timeout", CloseCode.SEND_TIMEOUT)
            else:
                self.evict(client, "send_failed", CloseCode.GOING_AWAY)
            return

    async def close_all(self, code: int = CloseCode.GOING_AWAY) -> None:
        """Close every client concurrently, each bounded by ``close_timeout``, aborting laggards."""
        clients = list(self.clients.values())
        for client in clients:
            self.evict(client, "shutdown", code)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        if self._closers:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*self._closers, return_exceptions=True)
