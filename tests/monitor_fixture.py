"""A real monitor on a real loopback socket, fed through real log files."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from monitor.app import STATE, MonitorState, create_app
from monitor.config import Config
from monitor.ingest import NodeSource
from monitor.logparse import format_line

_ids = itertools.count(1)


@dataclass
class RunningMonitor:
    host: str
    port: int
    state: MonitorState
    logs: dict[str, Path]

    @property
    def ws_url(self) -> str:
        return f"http://{self.host}:{self.port}/ws"

    @property
    def hub(self) -> Any:
        return self.state.hub

    def feed(self, count: int, node: str | None = None) -> list[str]:
        """Append ``count`` transfer lines to a node's log; returns their piece ids."""
        node = node or next(iter(self.logs))
        ids = [f"P{next(_ids):010d}" for _ in range(count)]
        ts = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        lines = [
            format_line(ts, "INFO", "piecestore", "downloaded",
                        {"Piece ID": pid, "Satellite ID": "S1", "Action": "GET", "Size": 1024,
                         "Remote Address": "203.0.113.7:28967"})
            for pid in ids
        ]  # fmt: skip
        with self.logs[node].open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        return ids

    async def wait_clients(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.hub.clients) != count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} clients in the registry, have {len(self.hub.clients)}")
            await asyncio.sleep(0.02)


@asynccontextmanager
async def running_monitor(tmp_path: Path, nodes: tuple[str, ...] = ("n1", "n2"), **overrides: Any
                          ) -> AsyncIterator[RunningMonitor]:
    logs = {name: tmp_path / f"{name}.log" for name in nodes}
    for path in logs.values():
        path.touch()
    config = Config(nodes=[NodeSource(n, p) for n, p in logs.items()], port=0, db=tmp_path / "monitor.db")
    config = replace(config, **overrides)
    app = create_app(config)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=3.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield RunningMonitor(host, port, app[STATE], logs)
    finally:
        await runner.cleanup()


class Recorder:
    """An aiohttp client that keeps every message it receives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.messages.append(msg.json())

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    def piece_ids(self) -> list[str]:
        return [e["piece_id"] for b in self.of_type("log_entry_batch") for e in b["events"]]

    def seqs(self) -> list[int]:
        return [b["seq"] for b in self.of_type("log_entry_batch")]

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline or self.task.done():
                raise AssertionError(f"condition not met; received {len(self.messages)} messages")
            await asyncio.sleep(0.02)
