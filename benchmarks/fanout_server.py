"""One of three broadcast servers, driven over stdin, for ``fanout.py`` to compare side by side.

- ``monitor``: the real monitor (``monitor.app.create_app`` with one node, its real WebSocket handler,
  ``Hub`` and ``Stream``); a broadcast is ``state.stream.broadcast(events)``, exactly what the
  monitor's flusher calls for each batch.
- ``websockets``: a ``websockets`` (asyncio API) server; a broadcast is ``websockets.broadcast()``.
- ``gather``: an aiohttp server whose broadcast is ``asyncio.gather`` of ``send_json`` per client,
  each send guarded by a try/except (the storj_monitor design). No timeout, no heartbeat.

Every broadcast is the same ~1 KiB ``log_entry_batch`` JSON message with ``seq`` and ``sent_at``,
so the lean clients can count it and sample its delivery latency. All three set the same kernel
send buffer per client (``--sndbuf``, the monitor's default 128 KiB), so the difference between them
is the fan-out code.

Protocol (one JSON object a line): the server prints ``{"port": P}`` once listening; then
``{"cmd": "run", "count": B, "rate": R}`` starts B broadcasts (R a second, or back to back with one
event-loop turn between broadcasts when R is 0) and prints ``{"done": ...}`` when they are made (once
per server); ``{"cmd": "stats"}`` answers ``{"stats": ...}`` at any time; ``{"cmd": "stop"}`` or end
of input stops it. It exits on its own after ``--max-seconds`` whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import resource
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PAYLOAD_BYTES = 1024


def make_message(seq: int, sent_at: float, events: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "log_entry_batch", "seq": seq, "sent_at": sent_at, "events": events}


def make_events() -> list[dict[str, Any]]:
    """One storagenode-like event padded so that a whole message is PAYLOAD_BYTES of JSON."""
    event = {
        "node": "node1", "ts": "2026-11-25T12:00:00.123Z", "level": "INFO", "kind": "downloaded",
        "action": "GET", "size": 123456, "satellite": "12EayRS2V1kEsWESU9QMRseFhdxYxKicsiFmxrsLZHeLUtdps3S",
        "piece_id": "Q" * 52, "remote": "203.0.113.7:28967", "pad": "",
    }  # fmt: skip
    probe = compact(make_message(1_000_000, time.time(), [event]))
    event["pad"] = "x" * max(0, PAYLOAD_BYTES - len(probe))
    return [event]


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def set_sndbuf(sock: socket.socket | None, size: int) -> None:
    if sock is not None and size > 0:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


class Server:
    """What fanout.py needs from each kind: start, count clients, broadcast one message, stats."""

    async def start(self, port: int) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def clients(self) -> int:
        raise NotImplementedError

    def broadcaster(self) -> Callable[[int, float], Awaitable[Any] | None]:
        """A callable ``(seq, sent_at)`` that broadcasts one message (a coroutine, or None if synchronous)."""
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        return {}


class MonitorServer(Server):
    def __init__(self, args: argparse.Namespace) -> None:
        from monitor.app import STATE, create_app
        from monitor.config import Config
        from monitor.ingest import NodeSource

        self._tmp = tempfile.TemporaryDirectory(prefix="fanout-monitor-")
        tmp = Path(self._tmp.name)
        (tmp / "node1.log").touch()
        config = Config(
            nodes=[NodeSource("node1", tmp / "node1.log")], host="127.0.0.1", port=0, db=tmp / "monitor.db",
            heartbeat=args.heartbeat, send_timeout=args.send_timeout, queue_size=args.queue_size,
            sndbuf=args.sndbuf,
        )  # fmt: skip
        self.app = create_app(config)
        self.state = self.app[STATE]
        self.runner: Any = None
        self.events = make_events()
        self.peak_queue = 0

    async def start(self, port: int) -> None:
        from aiohttp import web

        self.runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=3.0, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port, reuse_address=True, backlog=1024).start()

    async def stop(self) -> None:
        await self.runner.cleanup()
        self._tmp.cleanup()

    def clients(self) -> int:
        return len(self.state.hub.clients)

    def broadcaster(self) -> Callable[[int, float], Awaitable[Any] | None]:
        stream, events = self.state.stream, self.events
        hub = self.state.hub

        def one(seq: int, sent_at: float) -> None:
            # Stream.broadcast numbers batches itself; seq and sent_at are its own.
            depth = max((len(c.queue) for c in hub.clients.values()), default=0) if seq % 50 == 0 else 0
            self.peak_queue = max(self.peak_queue, depth)
            stream.broadcast(events)

        return one

    def stats(self) -> dict[str, Any]:
        m = self.state.metrics
        hub = self.state.hub
        return {
            "messages_sent": m.messages_sent,
            "evictions": dict(m.evictions),
            "send_failures": dict(m.send_failures),
            "peak_queue": self.peak_queue,
            "writers": sum(1 for c in hub.clients.values() if c.writer is not None),
            "transport_buffered": sum(c.sink.buffered() for c in hub.clients.values()),
            "queued": sum(len(c.queue) for c in hub.clients.values()),
            "direct_writes": getattr(hub, "direct_writes", None),
            "queued_writes": getattr(hub, "queued_writes", None),
        }


class WebsocketsServer(Server):
    def __init__(self, args: argparse.Namespace) -> None:
        self.sndbuf = args.sndbuf
        self.heartbeat = args.heartbeat
        self.conns: set[Any] = set()
        self.server: Any = None
        self.events = make_events()
        self.peak_buffer = 0

    async def start(self, port: int) -> None:
        from websockets.asyncio.server import serve

        async def handler(conn: Any) -> None:
            set_sndbuf(conn.transport.get_extra_info("socket"), self.sndbuf)
            self.conns.add(conn)
            try:
                await conn.wait_closed()
            finally:
                self.conns.discard(conn)

        self.server = await serve(
            handler, "127.0.0.1", port, compression=None, ping_interval=self.heartbeat,
            ping_timeout=self.heartbeat / 2, max_size=2**20, backlog=1024,
        )  # fmt: skip

    async def stop(self) -> None:
        self.server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self.server.wait_closed()

    def clients(self) -> int:
        return len(self.conns)

    def broadcaster(self) -> Callable[[int, float], Awaitable[Any] | None]:
        from websockets.asyncio.server import broadcast

        conns, events = self.conns, self.events

        def one(seq: int, sent_at: float) -> None:
            broadcast(conns, compact(make_message(seq, sent_at, events)))
            if seq % 50 == 0:
                size = max((c.transport.get_write_buffer_size() for c in conns), default=0)
                self.peak_buffer = max(self.peak_buffer, size)

        return one

    def stats(self) -> dict[str, Any]:
        return {"peak_write_buffer": self.peak_buffer}


class GatherServer(Server):
    def __init__(self, args: argparse.Namespace) -> None:
        from aiohttp import web

        self.sndbuf = args.sndbuf
        self.clients_set: dict[Any, Any] = {}  # ws: its transport
        self.app = web.Application()
        self.app.router.add_get("/ws", self.handler)
        self.runner: Any = None
        self.events = make_events()
        self.send_errors = 0

    async def handler(self, request: Any) -> Any:
        from aiohttp import web

        ws = web.WebSocketResponse()
        await ws.prepare(request)
        set_sndbuf(request.transport.get_extra_info("socket") if request.transport else None, self.sndbuf)
        self.clients_set[ws] = request.transport
        try:
            async for _ in ws:
                pass
        finally:
            self.clients_set.pop(ws, None)
        return ws

    async def start(self, port: int) -> None:
        from aiohttp import web

        self.runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=3.0, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port, reuse_address=True, backlog=1024).start()

    async def stop(self) -> None:
        # A stalled client blocks close() too: abort every transport first.
        for transport in list(self.clients_set.values()):
            if transport is not None:
                transport.abort()
        await self.runner.cleanup()

    def clients(self) -> int:
        return len(self.clients_set)

    def broadcaster(self) -> Callable[[int, float], Awaitable[Any] | None]:
        clients, events = self.clients_set, self.events

        async def safe(ws: Any, message: dict[str, Any]) -> None:
            try:
                await ws.send_json(message, dumps=compact)
            except Exception:
                self.send_errors += 1

        def one(seq: int, sent_at: float) -> Awaitable[Any]:
            message = make_message(seq, sent_at, events)
            return asyncio.gather(*(safe(ws, message) for ws in list(clients)))

        return one

    def stats(self) -> dict[str, Any]:
        return {"send_errors": self.send_errors}


KINDS: dict[str, type[Server]] = {"monitor": MonitorServer, "websockets": WebsocketsServer, "gather": GatherServer}


async def run_broadcasts(server: Server, count: int, rate: float, limit: float) -> dict[str, Any]:
    """``count`` broadcasts, paced at ``rate`` a second (0: back to back, one loop turn between),
    for at most ``limit`` seconds (a design that waits on its clients may never finish)."""
    one = server.broadcaster()
    loop = asyncio.get_running_loop()
    cpu0, t0, wall0 = cpu_seconds(), loop.time(), time.time()
    progress = {"sent": 0}

    async def broadcasts() -> None:
        for i in range(count):
            if rate > 0:
                delay = t0 + i / rate - loop.time()
                await asyncio.sleep(delay if delay > 0 else 0)
            else:
                await asyncio.sleep(0)
            pending = one(i + 1, time.time())
            if pending is not None:
                await pending
            progress["sent"] += 1

    timed_out = False
    try:
        async with asyncio.timeout(limit):
            await broadcasts()
    except TimeoutError:
        timed_out = True
    return {
        "sent": progress["sent"],
        "timed_out": timed_out,
        "first_sent_at": wall0,
        "issue_seconds": loop.time() - t0,
        "issue_cpu": cpu_seconds() - cpu0,
        "clients": server.clients(),
    }


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    server = KINDS[args.kind](args)
    await server.start(args.port)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def emit(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    emit({"port": args.port, "pid": os.getpid(), "rss": rss_bytes()})
    deadline = loop.time() + args.max_seconds
    profiler = cProfile.Profile() if args.profile else None
    running: asyncio.Task[dict[str, Any]] | None = None
    try:
        while (remaining := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(remaining):
                    line = await reader.readline()
            except TimeoutError:
                break
            if not line:
                break
            cmd = json.loads(line)
            if cmd["cmd"] == "run" and running is None:
                if profiler is not None:
                    profiler.enable()
                running = asyncio.create_task(
                    run_broadcasts(server, cmd["count"], cmd.get("rate", 0.0), cmd.get("limit", 120.0))
                )

                def finished(task: asyncio.Task[dict[str, Any]]) -> None:
                    if profiler is not None:
                        profiler.disable()
                    if not task.cancelled():
                        emit({"done": task.result()})

                running.add_done_callback(finished)
            elif cmd["cmd"] == "stats":
                emit({"stats": {"clients": server.clients(), "rss": rss_bytes(), "cpu": cpu_seconds(),
                                **server.stats()}})  # fmt: skip
            elif cmd["cmd"] == "stop":
                break
    finally:
        if running is not None and not running.done():
            running.cancel()
        if profiler is not None and args.profile:
            profiler.dump_stats(args.profile)
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="a broadcast server for fanout.py, driven over stdin")
    p.add_argument("--kind", choices=sorted(KINDS), required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sndbuf", type=int, default=128 * 1024, help="SO_SNDBUF per client (0 keeps the system's)")
    p.add_argument("--heartbeat", type=float, default=10.0)
    p.add_argument("--send-timeout", type=float, default=5.0, help="monitor only")
    p.add_argument("--queue-size", type=int, default=512, help="monitor only")
    p.add_argument("--profile", default="", help="write cProfile stats of the broadcasts to this file")
    p.add_argument("--max-seconds", type=float, default=600.0, help="exit after this long whatever happens")
    args = p.parse_args(argv)
    if args.kind == "monitor":
        from monitor.logsetup import setup_logging

        setup_logging("json", "INFO")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
