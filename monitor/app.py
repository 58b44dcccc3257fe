"""The aiohttp application: routes, the WebSocket handler, and the start and stop of every part."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from monitor import __version__
from monitor.access import make_access_middleware
from monitor.config import Config
from monitor.guard import check_masks, parse_since
from monitor.health import public_nodes, storage_status
from monitor.hub import CloseCode, Hub, dumps
from monitor.ingest import Ingest
from monitor.metrics import Metrics
from monitor.prometheus import make_registry, render
from monitor.protocol import RateLimit, Session
from monitor.replay import ReplayBudget, deliver
from monitor.store import Store
from monitor.stream import Stream
from monitor.views import InvalidView, View

log = logging.getLogger("monitor.app")

STATIC = Path(__file__).parent / "static"
WRITER_LIMIT = 16 * 1024
STATE: web.AppKey[MonitorState] = web.AppKey("state")
STAT_KEYS = (
    "uploads", "upload_failed", "upload_canceled", "downloads", "download_failed", "download_canceled",
    "audits", "audit_failed", "repairs", "repair_failed", "bytes_in", "bytes_out", "events",
)  # fmt: skip


class MonitorState:
    """Every long-lived part of a running monitor."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.hub = Hub(
            self.metrics,
            queue_size=config.queue_size,
            send_timeout=config.send_timeout,
            close_timeout=config.close_timeout,
        )
        self.stream = Stream(
            self.hub,
            interval=config.batch_interval,
            max_batch=config.max_batch,
            replay_size=config.replay_size,
        )
        self.node_names = [n.name for n in config.nodes]
        self.store: Store | None = None
        self.ingest: Ingest | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.started_at = time.time()
        self.registry = make_registry(self.metrics, self.hub, lambda: len(self.stream.pending))
        self.last_status: dict[str, Any] | None = None
        self.closing = False
        self.replay_budget = ReplayBudget(config.replay_budget)

    async def start(self) -> None:
        self.store = await Store.open(self.config.db)
        self.ingest = Ingest(
            self.config.nodes,
            self.store,
            self.stream.add_events,
            self.metrics,
            from_start=self.config.from_start,
        )
        await self.ingest.start()
        await self.stream.start()
        self.spawn(self._every(self.config.stats_interval, self.broadcast_stats), "stats")
        self.spawn(self._every(self.config.status_interval, self.broadcast_status), "status")

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self.tasks.append(asyncio.create_task(coro, name=name))

    async def stop(self) -> None:
        """Stop reading, store and broadcast what was read, then close the database."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()
        if self.ingest is not None:
            await self.ingest.stop()
        await self.stream.stop()
        if self.store is not None:
            await self.store.close()

    async def _every(self, seconds: float, action: Callable[[], Awaitable[None] | None]) -> None:
        while True:
            await asyncio.sleep(seconds)
            pending = action()
            if pending is not None:
                await pending

    async def stats_message(self, view: View, all_stats: dict[str, dict[str, Any]] | None = None) -> dict:
        if all_stats is None:
            all_stats = await self.node_stats(view.select(self.node_names))
        nodes = {name: all_stats.get(name, {}) for name in view.select(self.node_names)}
        totals: dict[str, Any] = {key: sum(s.get(key) or 0 for s in nodes.values()) for key in STAT_KEYS}
        times = [s["last_event_ts"] for s in nodes.values() if s.get("last_event_ts")]
        totals["last_event_ts"] = max(times, default=None)
        return {
            "type": "stats_update",
            "view": view.to_json(),
            "as_of_seq": self.stream.seq,
            "nodes": nodes,
            "totals": totals,
        }

    async def broadcast_stats(self) -> None:
        groups = self.hub.by_view()
        if not groups or self.store is None:
            return
        all_stats = await self.node_stats(None)
        for view, clients in groups.items():
            message = await self.stats_message(view, all_stats)
            self.hub.broadcast_text(dumps(message), clients)

    async def node_stats(self, nodes: list[str] | None) -> dict[str, dict[str, Any]]:
        """Counters from the store; none (and a storage failure reported) when it cannot be read."""
        assert self.store is not None
        try:
            return await self.store.node_stats(nodes)
        except sqlite3.Error as exc:
            if self.ingest is not None:
                self.ingest.storage.failed(exc)
            return {}

    def status_message(self) -> dict[str, Any]:
        nodes = self.ingest.node_status() if self.ingest is not None else {}
        return {"type": "connection_status", "nodes": nodes, "clients": len(self.hub.clients)}

    def broadcast_status(self) -> None:
        message = self.status_message()
        if message != self.last_status:
            self.last_status = message
            self.hub.robust_broadcast(message)

    def init_message(self, view: View) -> dict[str, Any]:
        return {
            "type": "init",
            "epoch": self.stream.epoch,
            "seq": self.stream.seq,
            "nodes": self.node_names,
            "view": view.to_json(),
            "server_time": time.time(),
            "heartbeat": self.config.heartbeat,
            "version": __version__,
        }


class AiohttpSink:
    """The hub's ``Sink`` over an aiohttp WebSocket response and its connection's transport.

    Direct writes go to the public transport, not aiohttp's private frame writer; ``send`` is
    aiohttp's own, which waits for the socket once the transport's buffer is past its high-water mark.
    """

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None) -> None:
        self.ws = ws
        self.transport = transport
        self.high_water = -1
        if transport is not None and not ws.compress:
            # The transport's high-water mark: past it, the transport would pause aiohttp's writer.
            self.high_water = transport.get_write_buffer_limits()[1]

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def is_closing(self) -> bool:
        return self.ws.closed or self.transport is None or self.transport.is_closing()

    def write(self, frame: bytes) -> None:
        if self.transport is None:
            raise RuntimeError("no transport")
        self.transport.write(frame)  # a socket error drops the data and closes the transport

    async def send(self, data: str) -> None:
        await self.ws.send_str(data)

    async def close(self, code: int, message: bytes) -> None:
        await self.ws.close(code=code, message=message)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    config = state.config  # Host, Origin, token and the client cap: checked by monitor.access
    try:
        asked = request.query.getall("view", ["all"])  # ?view=n1&view=n2: several nodes
        view = View.parse(asked[0] if len(asked) == 1 else asked, state.node_names)
    except InvalidView as exc:
        raise web.HTTPBadRequest(text=f"invalid view: {exc}") from None
    # writer_limit: aiohttp's writer checks for backpressure only every writer_limit bytes (256 KiB by
    # default); a small one bounds what a client that has stopped reading holds before a send waits
    # (and its send timeout starts). Clients that keep up never reach aiohttp's writer (see hub.py).
    ws = web.WebSocketResponse(
        heartbeat=config.heartbeat, max_msg_size=config.max_message_bytes, compress=False, writer_limit=WRITER_LIMIT
    )
    check_masks(request, ws)
    try:
        await ws.prepare(request)
    except (ConnectionError, RuntimeError) as exc:
        # The client went away mid-handshake. Returning the half-prepared ``ws`` would make aiohttp
        # finish it and log "Call .prepare() first" at ERROR; a plain response it writes (or drops
        # quietly on the dead transport) instead.
        log.debug("handshake did not complete: %r", exc)
        response = web.Response(status=400, text="handshake did not complete")
        response.force_close()
        return response
    limit_send_buffer(request, config.sndbuf)
    if state.closing:
        # Accepted while shutting down, after every registered client was closed: close this one too.
        await ws.close(code=CloseCode.GOING_AWAY, message=b"server shutdown")
        return ws
    client = state.hub.register(AiohttpSink(ws, request.transport), request.remote or "?", view)
    limit = RateLimit(rate=config.rate_limit, burst=config.rate_burst, tokens=config.rate_burst)
    session = Session(
        client, state.hub, state.stream, state.node_names, state.stats_message, state.metrics, limit,
        state.replay_budget,
    )  # fmt: skip
    state.hub.send(client, state.init_message(view))
    if "epoch" in request.query:
        since = parse_since(request.query.get("since", ""))
        plan = state.stream.plan_resume(request.query["epoch"], since, session.init_seq)
        deliver(state.stream, state.hub, client, plan, state.replay_budget)
    state.hub.send(client, state.status_message())
    try:
        state.hub.send(client, await state.stats_message(view))
        await receive_loop(ws, session)
    finally:
        state.hub.unregister(client)
    return ws


def limit_send_buffer(request: web.Request, size: int) -> None:
    """A bounded kernel buffer per client: without it Linux grows it to megabytes, and a client that
    stops reading is noticed only once all of that has filled."""
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if size > 0 and sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


async def receive_loop(ws: web.WebSocketResponse, session: Session) -> None:
    try:
        await _receive(ws, session)
    except ConnectionError as exc:  # e.g. aiohttp's automatic pong to a client that has vanished
        log.debug("client %d: connection lost: %r", session.client.id, exc)


async def _receive(ws: web.WebSocketResponse, session: Session) -> None:
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            await session.on_text(msg.data)
        elif msg.type is WSMsgType.BINARY:
            session.on_binary()
        elif msg.type is WSMsgType.ERROR:
            exc = ws.exception()
            log.debug("client %d: connection error: %r", session.client.id, exc)
            if isinstance(exc, TimeoutError):
                session.hub.evict(session.client, "heartbeat_timeout", CloseCode.GOING_AWAY)
            break


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    verbose = state.config.verbose_health
    storage = storage_status(state.ingest.storage if state.ingest is not None else None, verbose)
    nodes = state.ingest.node_status() if state.ingest is not None else {}
    body = {
        "status": "ok" if storage["ok"] else "degraded",
        "version": __version__,
        "epoch": state.stream.epoch,
        "seq": state.stream.seq,
        "clients": len(state.hub.clients),
        "uptime_s": round(time.time() - state.started_at, 3),
        "events_persisted": state.metrics.events_persisted,
        "storage": storage,
        "nodes": public_nodes(nodes, verbose),
    }
    return web.json_response(body, status=200 if storage["ok"] else 503)


async def metrics(request: web.Request) -> web.Response:
    body = render(request.app[STATE].registry)
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


async def _on_startup(app: web.Application) -> None:
    await app[STATE].start()


async def _on_shutdown(app: web.Application) -> None:
    app[STATE].closing = True
    await app[STATE].hub.close_all()


async def _on_cleanup(app: web.Application) -> None:
    await app[STATE].stop()


def create_app(config: Config) -> web.Application:
    state = MonitorState(config)
    access = make_access_middleware(config, lambda: len(state.hub.clients))
    app = web.Application(client_max_size=64 * 1024, middlewares=[access])
    app[STATE] = state
    app.router.add_get("/", index)
    app.router.add_get("/ws", websocket_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_static("/static", STATIC)
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app
