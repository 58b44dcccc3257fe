"""What the hub needs of one client's connection; ``monitor.app`` adapts aiohttp's WebSocket to it."""

from __future__ import annotations

from typing import Protocol


class Sink(Protocol):
    @property
    def high_water(self) -> int:
        """Bytes the sink may hold buffered and still take a direct ``write``; -1: never write directly."""
        ...

    def buffered(self) -> int:
        """Bytes written and not yet handed to the socket."""
        ...

    def is_closing(self) -> bool:
        """True once the connection is closed or on its way down: nothing written now will arrive."""
        ...

    def write(self, frame: bytes) -> None:
        """Write one ready WebSocket frame now, never waiting. A connection that fails during the write
        drops the data and reports ``is_closing()`` afterwards; it may also raise RuntimeError."""
        ...

    async def send(self, data: str) -> None:
        """Send ``data`` as one text message, waiting as long as the socket makes it wait. Raises
        ConnectionError or RuntimeError (or CancelledError) when the connection is gone."""
        ...

    async def close(self, code: int, message: bytes) -> None:
        """Send a close frame and wait for the closing handshake."""
        ...

    def abort(self) -> None:
        """Drop the connection at once, discarding anything still buffered."""
        ...
