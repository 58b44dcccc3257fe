"""WebSocket frames and raw sockets as the harness's raw clients need them: masked client frames, the
handshake key and response head, and what the kernel says about a socket (unread bytes, gone peer)."""

from __future__ import annotations

import asyncio
import base64
import errno
import fcntl
import os
import socket
import struct
import termios
from typing import Any

from harness.errors import HarnessError

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_TCP_ESTABLISHED = 1
_TCP_CLOSE = 7  # what an RST leaves
_TCP_CLOSE_WAIT = 8  # the peer sent a FIN


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def ws_frame(payload: bytes, opcode: int = OP_TEXT, *, fin: bool = True) -> bytes:
    """One client-to-server WebSocket frame, masked as RFC 6455 requires of clients."""
    key = os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += struct.pack("!BH", 0x80 | 126, n)
    else:
        head += struct.pack("!BQ", 0x80 | 127, n)
    return head + key + _mask(payload, key)


def set_linger_zero(sock: Any) -> None:
    """Make the next close of ``sock`` send an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def unread_bytes(sock: Any) -> int:
    """Bytes waiting in the socket's kernel receive buffer (FIONREAD), or 0 when unknown."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return int(struct.unpack("i", raw)[0])


def peer_gone(sock: socket.socket) -> bool:
    """True when the kernel says the connection is no longer established (without reading from it)."""
    return peer_end(sock) is not None


def peer_end(sock: socket.socket) -> str | None:
    """How the kernel says the connection ended, without reading from it: "reset" (an RST came),
    "fin" (the peer closed its side), "closed" (another state), or None while it is established."""
    try:
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            return "reset" if error == errno.ECONNRESET else f"error {errno.errorcode.get(error, error)}"
        if not hasattr(socket, "TCP_INFO"):
            return None
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except OSError as exc:
        return f"error {errno.errorcode.get(exc.errno or 0, exc.errno)}"
    if state == _TCP_ESTABLISHED:
        return None
    return {_TCP_CLOSE_WAIT: "fin", _TCP_CLOSE: "reset"}.get(state, "closed")


def describe(exc: BaseException | None) -> str | None:
    """An exception as ``Type: message`` for the history (None for no exception)."""
    if exc is None:
        return None
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def ws_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


async def read_http_head(loop: asyncio.AbstractEventLoop, sock: socket.socket, limit: int = 16384) -> bytes:
    """Read exactly the HTTP response head, one byte at a time, so nothing after it is consumed."""
    head = bytearray()
    while not head.endswith(b"\r\n\r\n"):
        chunk = await loop.sock_recv(sock, 1)
        if not chunk:
            raise ConnectionError(f"connection closed during the handshake after {len(head)} bytes")
        head += chunk
        if len(head) > limit:
            raise HarnessError(f"HTTP response head longer than {limit} bytes")
    return bytes(head)


class FrameTracker:
    """Follows frame boundaries in the bytes a server sends (header and payload length only, no
    decoding), so that when a connection ends the harness can tell whether it ended between two
    frames or inside one, and how far inside."""

    def __init__(self) -> None:
        self._head = bytearray()
        self._need = 2  # header bytes still needed before the payload length is known
        self._left = 0  # payload bytes of the current frame not yet seen
        self._frame = 0  # the current frame's total length (header and payload)
        self.frames = 0  # complete frames seen
        self.bytes = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        self.bytes += len(view)
        i = 0
        while i < len(view):
            if self._left:
                step = min(self._left, len(view) - i)
                self._left -= step
                i += step
                if not self._left:
                    self._end_frame()
                continue
            take = min(self._need - len(self._head), len(view) - i)
            self._head += view[i : i + take]
            i += take
            if len(self._head) == self._need:
                self._header_grew()

    def _header_grew(self) -> None:
        head = self._head
        flag = head[1] & 0x7F
        size = 2 + {126: 2, 127: 8}.get(flag, 0) + (4 if head[1] & 0x80 else 0)
        if self._need < size:
            self._need = size
            return
        length = flag if flag < 126 else int.from_bytes(head[2 : 4 if flag == 126 else 10], "big")
        self._frame, self._left = size + length, length
        if not length:
            self._end_frame()

    def _end_frame(self) -> None:
        self.frames += 1
        self._head.clear()
        self._need, self._frame = 2, 0

    def inside(self) -> tuple[int, int | None] | None:
        """None at a frame boundary; else (bytes of the current frame received, its length, or None
        while even its header is incomplete)."""
        if self._left:
            return self._frame - self._left, self._frame
        if self._head:
            return len(self._head), None
        return None


class TrackingReader:
    """Wraps aiohttp's WebSocket reader: every byte it is fed goes through a ``FrameTracker`` first."""

    def __init__(self, inner: Any, tracker: FrameTracker) -> None:
        self.inner, self.tracker = inner, tracker

    def feed_data(self, data: Any) -> Any:
        self.tracker.feed(data)
        return self.inner.feed_data(data)

    def feed_eof(self) -> None:
        self.inner.feed_eof()
