"""The listening socket's defences: a header deadline, a connection cap, and a quiet EMFILE.

Every accepted connection is one file descriptor. ``ConnectionGuard`` wraps aiohttp's protocol for
each connection: a connection over the cap is answered 503 and closed at once (before aiohttp sees
it), and one that has not finished its request headers within ``header_timeout`` is aborted (a
slowloris holds descriptors by sending headers a byte at a time). If accept() still fails for want
of descriptors, asyncio pauses that listener for a second and retries; ``quiet_accept_errors``
makes that one WARNING a minute instead of an ERROR per attempt.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("monitor.listener")

END_OF_HEAD = b"\r\n\r\n"
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n"
    b"Connection: close\r\n\r\ntoo many connections"
)
HEADROOM_FDS = 64  # beyond those open at start: log files reopened on rotation, the database's journal
MAX_DEFAULT_CLIENTS = 10_000
ACCEPT_ERROR = "socket.accept() out of system resource"


def descriptor_limit() -> int:
    """The soft limit on open descriptors, raised to the hard limit (capped) where allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    wanted = min(wanted, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return int(min(soft, 1 << 20))


def descriptors_in_use() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return HEADROOM_FDS


def connection_cap(fd_limit: int) -> int:
    """How many connections may be open at once, leaving room for the monitor's own files."""
    return max(1, fd_limit - descriptors_in_use() - min(HEADROOM_FDS, fd_limit // 4))


def default_max_clients(fd_limit: int) -> int:
    """WebSocket clients by default: half the connection cap, so plain HTTP still gets through."""
    return max(1, min(MAX_DEFAULT_CLIENTS, connection_cap(fd_limit) // 2))


class ConnectionCounts:
    """Shared by every connection of one listener."""

    def __init__(self, cap: int, header_timeout: float) -> None:
        self.cap = cap
        self.header_timeout = header_timeout
        self.open = 0
        self.refused = 0
        self.header_timeouts = 0


class ConnectionGuard(asyncio.Protocol):
    """Delegates to aiohttp's protocol for one connection, after the cap and until the deadline."""

    def __init__(self, inner: asyncio.Protocol, counts: ConnectionCounts) -> None:
        self.inner = inner
        self.counts = counts
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.tail = b""
        self.admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.counts.open >= self.counts.cap:
            self.counts.refused += 1
            log.debug("refused a connection: %d open (cap %d)", self.counts.open, self.counts.cap)
            transport.write(REFUSAL)
            transport.close()
            return
        self.admitted = True
        self.counts.open += 1
        if self.counts.header_timeout > 0:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(self.counts.header_timeout, self._headers_late)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return
        if self.timer is not None:
            if END_OF_HEAD in self.tail + data:  # tail: the end of the last read, for a split marker
                self.timer.cancel()
                self.timer = None
            else:
                self.tail = data[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.admitted:
            return
        self.admitted = False
        self.counts.open -= 1
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()

    def _headers_late(self) -> None:
        self.timer = None
        self.counts.header_timeouts += 1
        log.debug("closed a connection that sent no complete request headers in %gs", self.counts.header_timeout)
        if self.transport is not None:
            self.transport.abort()


class GuardedSite(web.TCPSite):
    """A ``TCPSite`` whose connections go through ``ConnectionGuard``."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, counts: ConnectionCounts, **kw: Any) -> None:
        super().__init__(runner, host, port, **kw)
        self.counts = counts

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        factory: Callable[[], asyncio.Protocol] = lambda: ConnectionGuard(server(), self.counts)  # noqa: E731
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            factory, self._host, self._port, backlog=self._backlog, reuse_address=self._reuse_address
        )
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port


class AcceptErrors:
    """An event-loop exception handler: accept() failures for want of descriptors are counted and
    reported once a minute; anything else goes to asyncio's default handler."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self.count = 0
        self.unreported = 0
        self.reported_at: float | None = None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != ACCEPT_ERROR:
            loop.default_exception_handler(context)
            return
        self.count += 1
        self.unreported += 1
        now = time.monotonic()
        if self.reported_at is None or now - self.reported_at >= self.every:
            exc = context.get("exception")
            log.warning(
                "accept() failed %d time(s) (%s): out of descriptors, the listener pauses and retries",
                self.unreported,
                getattr(exc, "strerror", None) or exc,
            )
            self.reported_at = now
            self.unreported = 0
