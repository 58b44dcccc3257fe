"""A raw TCP connection for hostile clients: it sends whatever bytes it is given (a malformed request,
unmasked frames, a flood of pings) and reports how the server answered: the HTTP status, the frames
it sent back, its close code, and how the connection ended (``eof``, ``reset``, ``timeout``, ``open``).
Loopback only; every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.wsframes import OP_CLOSE, peer_end, set_linger_zero, unread_bytes, ws_key

HEAD_LIMIT = 64 * 1024
MAX_FRAME = 1024 * 1024  # a server frame longer than this is counted, not read


@dataclass
class Answer:
    """How the server answered one hostile connection."""

    status: int | None = None  # the HTTP status, None before (or without) a response head
    frames: int = 0
    texts: list[str] = field(default_factory=list)  # the first few text frames, cut short
    close_code: int | None = None
    end: str = "open"  # open, eof, reset, timeout, refused, error

    def label(self) -> str:
        """A few words to count answers by: ``101 close 1002``, ``400 eof``, ``reset``."""
        parts = [str(self.status)] if self.status is not None else []
        if self.close_code is not None:
            parts.append(f"close {self.close_code}")
        elif self.end != "open" or not parts:
            parts.append(self.end)
        return " ".join(parts)


def upgrade_request(host: str, port: int, target: str, headers: list[tuple[str, str]] | None = None) -> bytes:
    """A WebSocket upgrade request for ``target`` (path and query, sent as given)."""
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {ws_key()}", "Sec-WebSocket-Version: 13"]  # fmt: skip
    lines += [f"{name}: {value}" for name, value in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def ending(exc: BaseException) -> str:
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "eof"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    return "error"


class RawConn:
    """One client connection that writes raw bytes; ``sent`` counts what it wrote."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.sent = 0
        self.received = 0
        self.answer = Answer()

    @classmethod
    async def open(cls, host: str, port: int, timeout: float = 3.0, rcvbuf: int | None = None) -> RawConn:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            async with asyncio.timeout(timeout):
                await asyncio.get_running_loop().sock_connect(sock, (host, port))
                reader, writer = await asyncio.open_connection(sock=sock, limit=HEAD_LIMIT)
        except BaseException:
            sock.close()
            raise
        return cls(reader, writer)

    @property
    def closed(self) -> bool:
        return self.writer.transport.is_closing()

    async def send(self, data: bytes, timeout: float = 3.0) -> bool:
        """Write ``data``; False (and the answer's end set) when the server is gone or stopped reading."""
        try:
            self.writer.write(data)
            async with asyncio.timeout(timeout):
                await self.writer.drain()
        except (OSError, TimeoutError) as exc:
            self.answer.end = ending(exc)
            return False
        self.sent += len(data)
        return True

    async def read_head(self, timeout: float) -> int | None:
        """The status of the server's HTTP response head, or None (the answer says how it ended)."""
        try:
            async with asyncio.timeout(timeout):
                head = await self.reader.readuntil(b"\r\n\r\n")
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.answer.end = ending(exc)
            return None
        except asyncio.LimitOverrunError:
            self.answer.end = "error"
            return None
        self.received += len(head)
        parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        self.answer.status = status
        return status

    async def collect(self, timeout: float, max_frames: int = 50, keep_texts: int = 3,
                      until: Callable[[str], bool] | None = None) -> Answer:  # fmt: skip
        """Read the server's frames for up to ``timeout`` s, until a close frame, the end, or a text
        frame ``until`` says is the one awaited."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.answer.frames < max_frames and self.answer.close_code is None:
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    opcode, payload = await self.read_frame()
            except TimeoutError:
                break  # still open
            except (OSError, asyncio.IncompleteReadError) as exc:
                self.answer.end = ending(exc)
                break
            self.answer.frames += 1
            if opcode == OP_CLOSE:
                self.answer.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            elif opcode == 0x1:
                text = payload.decode("utf-8", errors="replace")
                if len(self.answer.texts) < keep_texts:
                    self.answer.texts.append(text[:200])
                if until is not None and until(text):
                    break
        return self.answer

    async def read_frame(self) -> tuple[int, bytes]:
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        mask = await self.reader.readexactly(4) if b1 & 0x80 else b""
        if n > MAX_FRAME:
            raise asyncio.IncompleteReadError(b"", n)
        payload = await self.reader.readexactly(n)
        self.received += 2 + n + len(mask)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return b0 & 0x0F, payload

    def stop_reading(self) -> None:
        """Read nothing more from the socket: what the server sends stays in the kernel's buffers."""
        self.writer.transport.pause_reading()  # type: ignore[attr-defined]

    def peer_end(self) -> str | None:
        """How the kernel says the server ended the connection (reset, fin, ...), None while established."""
        sock = self.writer.get_extra_info("socket")
        return peer_end(sock) if sock is not None and not self.closed else None

    def unread(self) -> int:
        sock = self.writer.get_extra_info("socket")
        return unread_bytes(sock) if sock is not None else 0

    async def close(self, rst: bool = False) -> None:
        """Close (an RST when ``rst``); safe to call twice."""
        transport = self.writer.transport
        if transport.is_closing():
            return
        if rst:
            sock = self.writer.get_extra_info("socket")
            with contextlib.suppress(OSError):
                set_linger_zero(sock)
            transport.abort()
            return
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                await self.writer.wait_closed()
