"""Raw-socket helpers for hostile-client tests: hand-made HTTP requests and WebSocket frames."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def frame(payload: bytes, opcode: int = 0x1, masked: bool = True) -> bytes:
    bit = 0x80 if masked else 0
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def request(
    port: int, path: str = "/ws", headers: dict[str, str] | None = None, upgrade: bool = True
) -> tuple[int, bytes, Conn]:
    """Send one GET; returns the status, the response head, and the open connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    fields = {"Host": f"127.0.0.1:{port}"}
    if upgrade:
        fields |= {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        }
    fields |= headers or {}
    head = "".join(f"{k}: {v}\r\n" for k, v in fields.items() if v is not None)
    writer.write(f"GET {path} HTTP/1.1\r\n{head}\r\n".encode())
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    return int(answer.split(b" ", 2)[1]), answer, (reader, writer)


async def read_for(reader: asyncio.StreamReader, seconds: float) -> tuple[bytes, bool]:
    """What arrives within ``seconds``, and whether the connection ended (EOF or reset)."""
    data = b""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), left)
        except TimeoutError:
            return data, False
        except ConnectionError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split unmasked server frames; a trailing partial frame is left out."""
    out, pos = [], 0
    while pos + 2 <= len(data):
        n, at = data[pos + 1] & 0x7F, pos + 2
        if n == 126:
            n, at = struct.unpack("!H", data[at : at + 2])[0], at + 2
        elif n == 127:
            n, at = struct.unpack("!Q", data[at : at + 8])[0], at + 8
        if at + n > len(data):
            break
        out.append((data[pos] & 0x0F, data[at : at + n]))
        pos = at + n
    return out


def close_code(data: bytes) -> int | None:
    for opcode, payload in frames(data):
        if opcode == 0x8 and len(payload) >= 2:
            return struct.unpack("!H", payload[:2])[0]
    return None
