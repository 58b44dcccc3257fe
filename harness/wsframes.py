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
