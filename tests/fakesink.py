"""An in-memory ``Sink`` for unit tests of the hub and the stream, and a guard that no socket opens."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest


class SocketOpened(AssertionError):
    pass


class _NoSocket(socket.socket):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise SocketOpened(f"a unit test of the hub opened a socket: socket.socket{args}")


def forbid_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on every ``socket.socket()`` (and so every asyncio connection or server) raises.
    Call it once the event loop is running: the loop's own wake-up socket pair exists by then."""
    monkeypatch.setattr(socket, "socket", _NoSocket)


def unframe(frame: bytes) -> str:
    """The text of one unmasked WebSocket text frame, FIN set (what the hub writes directly)."""
    assert frame[0] == 0x81, f"not a final text frame: {frame[:2]!r}"
    size, offset = frame[1], 2
    if size == 126:
        (size,), offset = struct.unpack("!H", frame[2:4]), 4
    elif size == 127:
        (size,), offset = struct.unpack("!Q", frame[2:10]), 10
    assert len(frame) == offset + size, "frame length does not match its header"
    return frame[offset:].decode()


class FakeSink:
    """A client connection in memory. ``backlog`` is what it reports buffered; ``stalled`` makes
    ``send`` and ``close`` wait until ``unstall()`` (a client that stopped reading); ``closing`` is a
    connection on its way down; ``fail_next_write`` drops the next direct write as a socket error does."""

    def __init__(self, high_water: int = 1024) -> None:
        self.high_water = high_water
        self.backlog = 0
        self.closing = False
        self.stalled = False
        self.fail_next_write = False
        self.frames: list[bytes] = []  # direct writes, as written
        self.received: list[tuple[str, Any]] = []  # ("direct" or "sent", decoded message), in order
        self.closed_with: tuple[int, bytes] | None = None
        self.aborted = False
        self._unstalled = asyncio.Event()

    def buffered(self) -> int:
        return self.backlog

    def is_closing(self) -> bool:
        return self.closing or self.aborted

    def write(self, frame: bytes) -> None:
        if self.fail_next_write:
            self.fail_next_write = False
            self.closing = True
            return
        self.frames.append(frame)
        self.received.append(("direct", json.loads(unframe(frame))))

    async def send(self, data: str) -> None:
        await self._wait_unstalled()
        await asyncio.sleep(0)  # a send always gives the loop a turn, as a socket wait would
        self.received.append(("sent", json.loads(data)))

    async def close(self, code: int, message: bytes) -> None:
        self.closed_with = (code, message)
        await self._wait_unstalled()

    def abort(self) -> None:
        self.aborted = True

    def unstall(self) -> None:
        self.stalled = False
        self._unstalled.set()

    def messages(self) -> list[Any]:
        return [message for _, message in self.received]

    async def _wait_unstalled(self) -> None:
        if self.stalled:
            await self._unstalled.wait()


async def until(condition: Callable[[], bool], what: str, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)
