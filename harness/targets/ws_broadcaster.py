"""A small WebSocket broadcast server on the ``websockets`` library: the harness's second target.

``python -m harness.targets.ws_broadcaster --host H --port P --log [NAME:]FILE ...`` tails storagenode
log files (polling; a partial last line waits for its end) and every 25 ms, when there are new lines,
sends every connected client ``{"type": "log_entry_batch", "seq": n, "sent_at": t, "events":
[{"piece_id": ..., "node": ...}]}`` with ``websockets.broadcast()``, which never waits for a slow
client (it buffers for it instead, without bound). A new client first gets ``{"type": "init",
"epoch": ..., "seq": ...}``. There is no resume: ``?epoch=&since=`` is ignored. With ``--no-seq``
neither batches nor the init carry a seq (as many broadcast servers do). ``/healthz`` answers
JSON, ``/metrics`` Prometheus text. Logs are JSON lines on stderr. ``--max-rate N`` makes it a slow
server: it sends at most N events a second, and the rest wait their turn, in order, without bound.

It is deliberately independent of the monitor: it shares no code with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import os
import re
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

log = logging.getLogger("ws_broadcaster")

WS_PATH = "/ws"
INTERVAL = 0.025
MAX_BATCH = 500
CHUNK = 256 * 1024
MAX_PARTIAL = 1024 * 1024  # a "line" longer than this is dropped, not buffered without bound
_NAMED = re.compile(r"^([A-Za-z0-9_.-]+):(.+)$")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class LogTail:
    """Follows one log file by polling; starts at its beginning, restarts on truncation or rotation."""

    def __init__(self, node: str, path: Path) -> None:
        self.node = node
        self.path = path
        self.offset = 0
        self.inode: int | None = None
        self.partial = b""

    def read_lines(self) -> list[str]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []
        if st.st_ino != self.inode or st.st_size < self.offset:
            self.inode, self.offset, self.partial = st.st_ino, 0, b""
        if st.st_size == self.offset:
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read(CHUNK)
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        if len(self.partial) > MAX_PARTIAL:
            log.warning("%s: dropped a line longer than %d bytes", self.path, MAX_PARTIAL)
            self.partial = b""
        return [line.decode("utf-8", errors="replace") for line in lines]

    def events(self) -> list[dict[str, Any]]:
        return [ev for ev in (event_of(line, self.node) for line in self.read_lines()) if ev is not None]


def event_of(line: str, node: str) -> dict[str, Any] | None:
    """The event of a storagenode line ``ts<TAB>LEVEL<TAB>component<TAB>message<TAB>{json}``, if any."""
    parts = line.rstrip("\r").split("\t")
    if len(parts) != 5:
        return None
    try:
        fields = json.loads(parts[4])
    except (ValueError, RecursionError):
        return None
    piece = fields.get("Piece ID") if isinstance(fields, dict) else None
    return {"piece_id": piece, "node": node} if isinstance(piece, str) else None


class Broadcaster:
    def __init__(self, tails: list[LogTail], interval: float = INTERVAL, max_rate: float = 0.0, *,
                 with_seq: bool = True) -> None:
        self.tails = tails
        self.with_seq = with_seq
        self.interval = interval
        self.limit = RateLimit(max_rate) if max_rate > 0 else None
        self.waiting: list[dict[str, Any]] = []
        self.epoch = f"{int(time.time())}-{uuid.uuid4().hex[:8]}"
        self.seq = 0
        self.clients: set[ServerConnection] = set()
        self.connections = 0
        self.broadcasts = 0
        self.events = 0
        self.started = time.time()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                events = [ev for tail in self.tails for ev in tail.events()]
            except OSError as exc:
                log.warning("cannot read a log file: %s", exc)
                continue
            if self.limit is not None:
                self.waiting += events
                events, self.waiting = self.limit.take(self.waiting)
            for start in range(0, len(events), MAX_BATCH):
                self.broadcast(events[start : start + MAX_BATCH])

    def broadcast(self, events: list[dict[str, Any]]) -> None:
        self.seq += 1
        message = {"type": "log_entry_batch", "seq": self.seq, "sent_at": time.time(), "events": events}
        if not self.with_seq:
            del message["seq"]
        broadcast(self.clients, json.dumps(message))
        self.broadcasts += 1
        self.events += len(events)

    async def handler(self, connection: ServerConnection) -> None:
        init = {"type": "init", "epoch": self.epoch, "seq": self.seq, "server_time": time.time()}
        if not self.with_seq:
            del init["seq"]
        # broadcast() writes at once: no batch can come between the init and joining the set.
        broadcast([connection], json.dumps(init))
        self.clients.add(connection)
        self.connections += 1
        log.debug("client %s connected (%d clients)", connection.remote_address, len(self.clients))
        try:
            async for _ in connection:
                pass  # clients have nothing to say to this server
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(connection)
            log.debug("client %s left (%d clients)", connection.remote_address, len(self.clients))

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/healthz":
            return self._respond(connection, 200, json.dumps(self.health()), "application/json")
        if path == "/metrics":
            return self._respond(connection, 200, self.metrics(), "text/plain; version=0.0.4; charset=utf-8")
        if path != WS_PATH:
            return self._respond(connection, 404, "not found\n", "text/plain; charset=utf-8")
        return None

    @staticmethod
    def _respond(connection: ServerConnection, status: int, body: str, content_type: str) -> Response:
        response = connection.respond(status, body)
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = content_type
        return response

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "epoch": self.epoch,
            "seq": self.seq,
            "clients": len(self.clients),
            "uptime_s": round(time.time() - self.started, 3),
        }

    def metrics(self) -> str:
        rows = [
            ("broadcaster_clients", "gauge", "WebSocket clients connected", len(self.clients)),
            ("broadcaster_connections_total", "counter", "WebSocket connections accepted", self.connections),
            ("broadcaster_broadcasts_total", "counter", "Batches broadcast", self.broadcasts),
            ("broadcaster_events_total", "counter", "Events broadcast", self.events),
            ("broadcaster_seq", "gauge", "Sequence number of the latest batch", self.seq),
        ]
        lines = []
        for name, kind, doc, value in rows:
            family = name.removesuffix("_total") if kind == "counter" else name
            lines += [f"# HELP {family} {doc}", f"# TYPE {family} {kind}", f"{name} {value}"]
        return "\n".join(lines) + "\n"


class RateLimit:
    """At most ``rate`` events a second, the fraction carried over; an idle spell saves up at most two ticks' worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.allowance = 0.0
        self.last = time.monotonic()

    def take(self, events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        now = time.monotonic()
        self.allowance = min(self.allowance + self.rate * (now - self.last), max(1.0, self.rate * INTERVAL * 2))
        self.last = now
        count = min(len(events), int(self.allowance))
        self.allowance -= count
        return events[:count], events[count:]


def log_source(text: str) -> LogTail:
    """``NAME:PATH``, or a bare path whose file name without extension is the node's name."""
    match = _NAMED.match(text)
    if match:
        return LogTail(match[1], Path(match[2]))
    return LogTail(Path(text).stem, Path(text))


async def serve_forever(args: argparse.Namespace) -> None:
    state = Broadcaster(args.log, max_rate=args.max_rate, with_seq=not args.no_seq)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ticker = asyncio.create_task(state.run(), name="broadcaster")
    try:
        async with serve(
            state.handler, args.host, args.port, process_request=state.process_request,
            ping_interval=args.heartbeat, ping_timeout=args.heartbeat, close_timeout=1.0,
        ):  # fmt: skip
            log.info("ws_broadcaster listening on ws://%s:%d%s", args.host, args.port, WS_PATH)
            await stop.wait()
            log.info("shutting down (%d clients)", len(state.clients))
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
    log.info("stopped")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m harness.targets.ws_broadcaster", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", nargs="+", action="extend", type=log_source, required=True, metavar="[NAME:]FILE",
                   help="storagenode log file(s) to tail")  # fmt: skip
    p.add_argument("--heartbeat", type=float, default=20.0, help="ping interval and timeout in seconds")
    p.add_argument("--max-rate", type=float, default=0.0, help="send at most this many events a second (0: no limit)")
    p.add_argument("--no-seq", action="store_true", help="batches and the init carry no seq")
    return p.parse_args(argv)


def setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # websockets logs every HTTP answer (each /healthz and /metrics) at INFO: noise here.
    logging.getLogger("websockets").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        asyncio.run(serve_forever(args))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(f"ws_broadcaster: port {args.port} on {args.host} is already in use", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
