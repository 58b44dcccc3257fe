"""A bare WebSocket client on a plain socket, for the disconnects no client library will do for you:
never reading, a FIN without a close frame, an RST, a frame cut in half."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from typing import Any


class RawWebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int, path: str = "/ws", rcvbuf: int | None = None) -> RawWebSocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"handshake refused: {head[:200]!r}")
        return cls(reader, writer)

    @staticmethod
    def frame(payload: bytes, opcode: int = 0x1, fin: bool = True) -> bytes:
        mask = os.urandom(4)
        head = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return head + mask + masked

    async def send_json(self, payload: Any) -> None:
        self.writer.write(self.frame(json.dumps(payload).encode()))
        await self.writer.drain()

    async def recv(self) -> tuple[int, bytes]:
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return b0 & 0x0F, await self.reader.readexactly(n)

    async def recv_json(self) -> dict[str, Any]:
        while True:
            opcode, data = await self.recv()
            if opcode == 0x1:
                return json.loads(data)
            if opcode == 0x9:
                self.writer.write(self.frame(data, opcode=0xA))
            if opcode == 0x8:
                raise ConnectionError("closed by server")

    def fin(self) -> None:
        """Close the TCP connection without a WebSocket close frame."""
        self.writer.transport.close()

    def rst(self) -> None:
        if self.writer.transport.is_closing():
            return
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def half_frame_then_rst(self) -> None:
        """Send the first half of a frame, then vanish with an RST: a cut in the middle of a frame."""
        data = self.frame(json.dumps({"type": "ping", "t": "x" * 200}).encode())
        self.writer.write(data[: len(data) // 2])
        await self.writer.drain()
        self.rst()
