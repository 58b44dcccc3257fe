"""The stuck client: a raw socket that completes the WebSocket handshake and never reads again.

It speaks just enough of the target's dialect to be a subscribed client (the opening messages) and,
when asked, keeps its connection alive the dialect's way: an unsolicited WebSocket pong, or the
dialect's own heartbeat text (Engine.IO's ``3``, Centrifugo's ``{}``) as a masked text frame.
"""

from __future__ import annotations

import asyncio
import socket

from harness.dialects import Dialect, MonitorDialect
from harness.errors import HarnessError
from harness.history import History
from harness.wsframes import (
    OP_PONG,
    describe,
    peer_end,
    read_http_head,
    set_linger_zero,
    unread_bytes,
    ws_frame,
    ws_key,
)


class StuckClient:
    """A raw socket that completes the handshake, reads only the HTTP response, and never reads again.

    After the handshake it sends the dialect's opening messages (subscribe), unread answers and all.
    With ``answer_heartbeats`` it sends a heartbeat every ``pong_interval`` seconds (or once per ping
    period of the dialect, when its server wants exactly one answer to each ping): a
    masked pong for the monitor (aiohttp resets its heartbeat timer on any data received, so this
    defeats heartbeat eviction), the dialect's heartbeat text for others. A failed write, or the kernel
    reporting the connection gone, is recorded as a close by ``error`` with ``how`` the kernel saw it
    end: "reset" (an RST), "fin" (the server closed its side).
    """

    def __init__(
        self,
        name: str,
        cohort: str,
        host: str,
        port: int,
        path: str,
        history: History,
        *,
        answer_heartbeats: bool,
        rcvbuf: int | None = 4096,
        pong_interval: float = 0.5,
        connect_timeout: float = 5.0,
        dialect: Dialect | None = None,
    ) -> None:
        self.name = name
        self.cohort = cohort
        self.host = host
        self.port = port
        self.path = path
        self.history = history
        self.answer_heartbeats = answer_heartbeats
        self.rcvbuf = rcvbuf
        self.pong_interval = pong_interval
        self.connect_timeout = connect_timeout
        self.dialect = dialect or MonitorDialect()
        self.connected = False
        self.pongs_sent = 0
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"StuckClient({self.name!r}, cohort={self.cohort!r}, connected={self.connected})"

    async def start(self) -> None:
        """Connect and complete the handshake (a failure is recorded as ``connect_error``)."""
        if self._sock is not None:
            return
        sock = self._new_socket()
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self._handshake(sock)
        except (OSError, TimeoutError, HarnessError) as exc:
            sock.close()
            self.history.record("connect_error", client=self.name, cohort=self.cohort, error=describe(exc))
            return
        except BaseException:  # cancelled mid-handshake: the socket is not ours to keep
            sock.close()
            raise
        self._sock, self.connected = sock, True
        self.history.record("connect", client=self.name, cohort=self.cohort, attempt=1, since=None)
        self._task = asyncio.create_task(self._watch(), name=f"stuck-{self.name}")

    def _new_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.setblocking(False)
        return sock

    async def _handshake(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (self.host, self.port))
        key = ws_key()
        path = self.dialect.connect_url(self.path, None)
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        head = await read_http_head(loop, sock)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise HarnessError(f"handshake refused: {head[:200]!r}")
        opening = b"".join(ws_frame(text.encode()) for text in self.dialect.opening(None))
        if opening:
            await loop.sock_sendall(sock, opening)

    async def _watch(self) -> None:
        text = self.dialect.heartbeat_text
        pong = ws_frame(b"", OP_PONG) if text is None else ws_frame(text.encode())
        period = self.dialect.heartbeat_period or self.pong_interval
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + period
        if self.answer_heartbeats and self.dialect.heartbeat_period:
            # The server wants one answer per ping and its first ping comes at a random moment: read
            # up to that ping, then answer each one blind, a moment after it is due.
            try:
                next_beat = await self._first_ping() + period + self.dialect.heartbeat_delay
            except (OSError, TimeoutError) as exc:
                self._gone(describe(exc), self._how(exc))
                return
            if self._sock is None or not await self._send(self._sock, pong):
                return
        while self.connected:
            await asyncio.sleep(max(0.0, min(next_beat, loop.time() + self.pong_interval) - loop.time()))
            sock = self._sock
            if sock is None:
                return
            if loop.time() >= next_beat:
                next_beat += period
                if self.answer_heartbeats and not await self._send(sock, pong):
                    return
            how = peer_end(sock)
            if how is not None:
                self._gone("connection no longer established", how)
                return

    async def _first_ping(self) -> float:
        """Read until the server's first ping (the dialect's heartbeat text as a frame); when it came."""
        loop = asyncio.get_running_loop()
        text = (self.dialect.heartbeat_text or "").encode()
        frame, seen = bytes([0x81, len(text)]) + text, b""
        async with asyncio.timeout(2 * (self.dialect.heartbeat_period or 0.0)):
            while frame not in seen:
                chunk = await loop.sock_recv(self._sock, 65536) if self._sock is not None else b""
                if not chunk:
                    raise ConnectionError("closed before the server's first ping")
                seen = seen[-len(frame):] + chunk
        return loop.time()

    async def _send(self, sock: socket.socket, data: bytes) -> bool:
        try:
            async with asyncio.timeout(self.pong_interval * 4):
                await asyncio.get_running_loop().sock_sendall(sock, data)
        except (OSError, TimeoutError) as exc:
            self._gone(describe(exc), self._how(exc))
            return False
        self.pongs_sent += 1
        return True

    def _how(self, exc: BaseException) -> str | None:
        if isinstance(exc, ConnectionResetError):
            return "reset"
        return peer_end(self._sock) if self._sock is not None else None

    def _gone(self, reason: str | None, how: str | None) -> None:
        """``how``: what the kernel saw end the connection ("reset", "fin", ...), when it knows."""
        if not self.connected:
            return
        self.connected = False
        self.history.record("close", client=self.name, cohort=self.cohort, code=None, by="error", reason=reason,
                            how=how)  # fmt: skip

    async def stop(self) -> None:
        """Vanish with an RST."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self.connected:
            self.connected = False
            self.history.record("close", client=self.name, cohort=self.cohort, code=None, by="client", reason="rst")
        try:
            set_linger_zero(sock)
        except OSError:
            pass
        sock.close()

    def backlog(self) -> int:
        return unread_bytes(self._sock) if self._sock is not None else 0

    @property
    def sock(self) -> socket.socket | None:
        """The raw socket while the client holds it (its queues show whether a fault bit)."""
        return self._sock
