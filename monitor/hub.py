"""The client registry: safe send, per-client outbound queues, broadcast and eviction.

A send that waits for the socket has no timeout and blocks behind a client that stops reading, so the
hub never awaits a client on the broadcast path. A message to a client that is keeping up is written
straight to its ``Sink`` (a broadcast is serialized and framed once for every client); a client that has
fallen behind gets a bounded queue drained by its own writer task, with a send timeout. A full
queue, a send timeout or a failed send evicts that client and aborts its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import json
import logging
import struct
import time
import weakref
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from monitor.metrics import Metrics
from monitor.sink import Sink
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


def text_frame(data: str) -> bytes:
    """``data`` as one unmasked, uncompressed WebSocket text frame (RFC 6455 5.2), FIN set: what a
    server writes to any client, so one frame serves every recipient of a broadcast."""
    payload = data.encode()
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


async def send_text(sink: Sink, data: str, timeout: float | None = None) -> SendOutcome:
    """Send one text frame; a vanished client is an outcome, never an exception."""
    if sink.is_closing():
        return SendOutcome.FAILED
    try:
        async with asyncio.timeout(timeout):
            await sink.send(data)
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
    sink: Sink,
    payload: Any,
    *,
    timeout: float | None = None,
    metrics: Metrics | None = None,
) -> bool:
    """Send ``payload`` as JSON. Returns False (and counts it) when the client is gone or too slow."""
    outcome = await send_text(sink, dumps(payload), timeout)
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


@dataclass(eq=False, slots=True, weakref_slot=True)
class Client:
    id: int
    sink: Sink
    remote: str
    view: View
    queue: deque[str] = field(default_factory=deque)
    wake: asyncio.Event | None = None  # with the writer: only a client that has fallen behind has them
    writer: asyncio.Task[None] | None = None
    evicted: str | None = None
    connected_at: float = field(default_factory=time.time)
    sent: int = 0
    sending: bool = False  # the writer is in the middle of a send (possibly waiting for the socket)
    direct_limit: int = -1  # write straight to the sink while it buffers at most this much; -1 never


# Every Client object still alive (registered or not): a client the hub forgot but something still
# holds shows here, as the monitor_client_objects gauge.
LIVE_CLIENTS: weakref.WeakSet[Client] = weakref.WeakSet()


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
        self.direct_writes = 0  # messages written straight to a sink
        self.queued_writes = 0  # messages that went through a client's queue and writer

    def register(self, sink: Sink, remote: str, view: View) -> Client:
        client = Client(next(self._ids), sink, remote, view, direct_limit=sink.high_water)
        self.clients[client.id] = client
        LIVE_CLIENTS.add(client)
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

    def enqueue(self, client: Client, data: str, frame: bytes | None = None) -> bool:
        """Send ``data`` to one client without waiting: straight to its socket when it is keeping up,
        else through its queue. Evicts it and returns False when its queue is full or a write fails.
        ``frame`` is ``data`` already framed by ``text_frame`` (a broadcast frames once for all)."""
        if client.evicted is not None:
            return False
        if not client.sending and not client.queue:
            written = self._write_now(client, data, frame)
            if written is not None:
                return written
        if len(client.queue) >= self.queue_size:
            self.evict(client, "queue_full", CloseCode.SLOW_CONSUMER)
            return False
        client.queue.append(data)
        self.queued_writes += 1
        if client.wake is None:
            client.wake = asyncio.Event()
        client.wake.set()
        if client.writer is None:
            client.writer = asyncio.create_task(self._write_loop(client), name=f"ws-writer-{client.id}")
        return True

    def _write_now(self, client: Client, data: str, frame: bytes | None) -> bool | None:
        """Write one message straight to the client's sink if nothing of it is waiting anywhere.

        Only called when the client's queue is empty and its writer is not mid-send, so order holds.
        A sink's ``send`` is (with aiohttp and compression off) this same synchronous write of one
        frame, then a wait for the socket only if the buffer went past the sink's high-water mark. So
        the fast path writes only while the buffer is at or below that mark, and the first message
        that would have to wait goes to the queue, where the writer's send timeout applies. Writing a
        ready frame serializes and frames a broadcast once for every client and never leaves a
        half-run send behind.

        Returns True when written, False when the write failed (the client is evicted), None when the
        client cannot take a direct write now (the caller queues the message).
        """
        sink = client.sink
        if client.direct_limit < 0 or sink.is_closing() or sink.buffered() > client.direct_limit:
            return None
        try:
            sink.write(text_frame(data) if frame is None else frame)
            failed = sink.is_closing()  # the write hit a socket error, dropped the data, and closes
        except RuntimeError as exc:  # e.g. a write after write_eof
            log.debug("direct write failed: %r", exc)
            failed = True
        if failed:
            self.metrics.send_failures[SendOutcome.FAILED.value] += 1
            self.evict(client, "send_failed", CloseCode.GOING_AWAY)
            return False
        client.sent += 1
        self.direct_writes += 1
        self.metrics.messages_sent += 1
        self.metrics.bytes_sent += len(data)
        return True

    def broadcast_text(self, data: str, recipients: Iterable[Client]) -> BroadcastResult:
        result = BroadcastResult()
        frame = text_frame(data)
        for client in list(recipients):
            if self.enqueue(client, data, frame):
                result.queued += 1
            else:
                result.evicted += 1
        if result.queued or result.evicted:
            self.metrics.broadcasts += 1
        return result

    def robust_broadcast(self, payload: Any, node: str | None = None) -> BroadcastResult:
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
        """Try a close frame within ``close_timeout``; abort the connection whatever happens."""
        try:
            async with asyncio.timeout(self.close_timeout):
                await client.sink.close(code, reason.encode())
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        finally:
            client.sink.abort()

    async def _write_loop(self, client: Client) -> None:
        """Drain the client's queue with a send timeout. Started by the first message that had to
        queue; while it sends, new messages queue behind it (``sending`` keeps them in order)."""
        wake = client.wake
        if wake is None:
            wake = client.wake = asyncio.Event()
        try:
            while True:
                while not client.queue:
                    wake.clear()
                    await wake.wait()
                data = client.queue.popleft()
                client.sending = True
                try:
                    outcome = await send_text(client.sink, data, self.send_timeout)
                finally:
                    client.sending = False
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
        except asyncio.CancelledError:
            # The cancelled task keeps this frame in its exception's traceback and the client keeps the
            # task: without this, an evicted client lives on in that cycle until the cycle collector runs.
            del client
            raise

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
