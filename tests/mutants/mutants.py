"""The mutants: each function patches the monitor's modules to break one guarantee.

Every mutant's docstring says what it breaks; ``wschaos mutants`` runs the scenarios against each
one and expects the checker its ``@mutant`` entry names to catch it in the scenario it names.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from monitor import app, hub, ingest, store, stream
from monitor.hub import Client, Hub, dumps, safe_send_json
from monitor.stream import Batch, Stream
from tests.mutants.registry import mutant

log = logging.getLogger("monitor.hub")


def _await_flushes() -> None:
    """Make the stream's flusher and stop await ``Stream.flush``, for a mutant whose flush (and
    broadcast) is a coroutine that waits on clients or yields mid-broadcast."""

    async def run(self: Stream) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()  # type: ignore[misc]

    async def stop(self: Stream) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()  # type: ignore[misc]

    Stream._run = run  # type: ignore[method-assign]
    Stream.stop = stop  # type: ignore[method-assign]


def _fan_out_without_queues(send: Callable[[Client, str], Any], sequential: bool) -> None:
    """Replace the hub's queued, timed fan-out with direct awaited sends to every client."""

    async def deliver(clients: list[Client], data_for: Callable[[Client], str]) -> None:
        if sequential:
            for client in clients:
                await send(client, data_for(client))
        else:
            await asyncio.gather(*(send(c, data_for(c)) for c in clients))

    async def broadcast(self: Stream, events: list[dict[str, Any]]) -> Any:
        self.seq += 1
        batch = Batch(self.seq, time.time(), events)
        self.replay.append(batch)
        await deliver(list(self.hub.clients.values()), lambda c: dumps(batch.message(c.view)))
        return hub.BroadcastResult()

    async def flush(self: Stream) -> None:
        while self.pending:
            count = min(self.max_batch, len(self.pending))
            await self.broadcast([self.pending.popleft() for _ in range(count)])  # type: ignore[misc]

    def broadcast_text(self: Hub, data: str, recipients: Any) -> Any:
        task = asyncio.get_running_loop().create_task(deliver(list(recipients), lambda c: data))
        _background.add(task)
        task.add_done_callback(_background.discard)
        return hub.BroadcastResult()

    original_init = Hub.__init__

    def init(self: Hub, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.send_timeout = None  # type: ignore[assignment]
        self.queue_size = 10**12

    Stream.broadcast = broadcast  # type: ignore[method-assign]
    Stream.flush = flush  # type: ignore[method-assign]
    _await_flushes()
    Hub.broadcast_text = broadcast_text  # type: ignore[method-assign]
    Hub.__init__ = init  # type: ignore[method-assign]


_background: set[asyncio.Task[None]] = set()


@mutant("stuck_reader", "no_error_logs")
def send_json_direct() -> None:
    """Sends with ``ws.send_str`` to each client in turn, no protection, and logs what escapes (the
    original problem): a vanished client's send raises and is logged with a traceback, and one stuck
    client holds up everyone behind it."""

    async def send(client: Client, data: str) -> None:
        try:
            await client.sink.send(data)
        except Exception:
            log.exception("error sending to client %d", client.id)

    _fan_out_without_queues(send, sequential=True)


@mutant("stuck_reader", "delivery")
def gather_no_timeout() -> None:
    """Keeps the safe send but broadcasts with a plain ``asyncio.gather`` and no timeout (the seed
    fix's design): every broadcast waits for the slowest client."""

    async def send(client: Client, data: str) -> None:
        await safe_send_json(client.sink, json.loads(data))

    _fan_out_without_queues(send, sequential=False)


@mutant("stuck_reader", "delivery")
def gather_uncapped() -> None:
    """Broadcasts with a plain ``asyncio.gather`` of safe sends, no timeout, on the kernel's default
    send buffer (no SO_SNDBUF cap) and aiohttp's default writer limit: one client that stops reading
    stalls the stream for everyone, but only once its megabytes of kernel buffers have filled.

    The bundled stuck_reader scenario catches it only because its faults run until the send path to
    the stuck clients is full, however long that takes on this server."""
    gather_no_timeout()
    app.limit_send_buffer = lambda request, size: None  # type: ignore[assignment]
    app.WRITER_LIMIT = inspect.signature(app.web.WebSocketResponse).parameters["writer_limit"].default


@mutant("stuck_reader", "eviction")
def no_eviction() -> None:
    """Never evicts: a full queue drops the message, a failed or timed-out send just ends the
    client's writer, and the client stays in the registry until its handler notices."""

    def evict(self: Hub, client: Client, reason: str, code: int) -> None:
        if reason == "shutdown":
            return original_evict(self, client, reason, code)
        client.queue.clear()

    original_evict = Hub.evict
    Hub.evict = evict  # type: ignore[method-assign]


@mutant("graceful_shutdown", "no_error_logs")
def swallow_cancel() -> None:
    """The client writer swallows ``CancelledError`` and keeps going, so eviction and shutdown cannot
    stop it: the writer outlives its client, and asyncio reports it destroyed while pending.

    asyncio reports a leaked task only when a garbage collection finds it, and whether one runs
    during a short scenario depends on how much the monitor happens to allocate; so the mutant runs
    a collection soon after each cancel it swallows, when the writer waits on nothing but itself.

    Only a client that has fallen behind has a writer; so that every client of the scenario has one,
    the mutant also sends every message through the queue and writer (no direct writes)."""
    original = Hub._write_loop

    def write_now(self: Hub, client: Client, data: str, frame: bytes | None) -> None:
        return None

    Hub._write_now = write_now  # type: ignore[method-assign]

    async def write_loop(self: Hub, client: Client) -> None:
        while True:
            try:
                await original(self, client)
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                asyncio.get_running_loop().call_later(0.2, gc.collect)
                await asyncio.sleep(0.05)

    Hub._write_loop = write_loop  # type: ignore[method-assign]


@mutant("stuck_reader", "eviction")
def unbounded_queue() -> None:
    """The outbound queue has no bound and the writer no send timeout: memory grows behind a stuck
    client, which is never evicted."""
    original_init = Hub.__init__

    def init(self: Hub, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.queue_size = 10**12
        self.send_timeout = None  # type: ignore[assignment]

    Hub.__init__ = init  # type: ignore[method-assign]


@mutant("mass_drop", "no_error_logs")
def error_log_on_disconnect() -> None:
    """Logs a normal client disconnect at ERROR."""
    original = Hub.unregister

    def unregister(self: Hub, client: Client) -> None:
        if client.id in self.clients:
            log.error("client %d disconnected unexpectedly", client.id)
        original(self, client)

    Hub.unregister = unregister  # type: ignore[method-assign]


@mutant("ingest_burst", "persistence")
def drop_when_ingest_full() -> None:
    """Drops lines silently when the (small) ingest queue is full, instead of making the tailer wait."""
    original_init = ingest.Ingest.__init__

    def init(self: ingest.Ingest, *args: Any, **kwargs: Any) -> None:
        kwargs["queue_size"] = 20
        original_init(self, *args, **kwargs)

    async def put(self: ingest.Ingest, item: Any) -> None:
        if self._queue.full():
            return
        self._queue.put_nowait(item)

    ingest.Ingest.__init__ = init  # type: ignore[method-assign]
    ingest.Ingest._put = put  # type: ignore[method-assign]


@mutant("server_restart", "persistence")
def forget_offsets() -> None:
    """Forgets the stored tail offset on restart and tails from the end: lines written while the
    monitor was down are lost."""

    async def load_offsets(self: store.Store) -> dict[str, Any]:
        return {}

    store.Store.load_offsets = load_offsets  # type: ignore[method-assign]
    original_start = ingest.Ingest.start

    async def start(self: ingest.Ingest) -> None:
        # Only the very first start reads from the beginning; a restart starts at the end.
        self._from_start = await self._store.count_events() == 0
        await original_start(self)

    ingest.Ingest.start = start  # type: ignore[method-assign]


@mutant("ingest_burst", "delivery")
def racy_broadcast() -> None:
    """Two flushers share the stream without a lock, and the seq is taken before an await: batches
    repeat a seq or go out of order under concurrency."""

    async def broadcast(self: Stream, events: list[dict[str, Any]]) -> Any:
        seq = self.seq + 1
        await asyncio.sleep(0)
        self.seq = seq
        batch = Batch(seq, time.time(), events)
        self.replay.append(batch)
        result = hub.BroadcastResult()
        for view, clients in self.hub.by_view().items():
            result.add(self.hub.broadcast_text(dumps(batch.message(view)), clients))
        return result

    async def flush(self: Stream) -> Any:
        while self.pending:
            count = min(self.max_batch // 4 or 1, len(self.pending))
            events = [self.pending.popleft() for _ in range(count)]
            await self.broadcast(events)

    original_start = Stream.start

    async def start(self: Stream) -> None:
        await original_start(self)
        self._second = asyncio.create_task(self._run())  # type: ignore[attr-defined]

    Stream.broadcast = broadcast  # type: ignore[method-assign]
    Stream.flush = flush  # type: ignore[method-assign]
    _await_flushes()
    Stream.start = start  # type: ignore[method-assign]


@mutant("network_cut", "eviction")
def heartbeat_off() -> None:
    """Never pings clients, so a half-open client is never timed out."""
    original = app.web.WebSocketResponse

    class NoHeartbeat(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["heartbeat"] = None
            super().__init__(*args, **kwargs)

    app.web.WebSocketResponse = NoHeartbeat  # type: ignore[misc]


@mutant("network_cut", "recovery")
def resume_silent_gap() -> None:
    """Answers every resume with ``resumed`` but replays nothing: the client has a silent gap."""

    def plan_resume(self: Stream, epoch: Any, since: Any, upto: int) -> stream.ResumePlan:
        notice = {"type": "resumed", "epoch": self.epoch, "from_seq": upto + 1, "to_seq": upto}
        return stream.ResumePlan(notice, [])

    Stream.plan_resume = plan_resume  # type: ignore[method-assign]


RETRY_LINE = 'setTimer("retry", connect, delay);'


@mutant("browser_network_cut", "browser")
def dashboard_no_reconnect() -> None:
    """Serves a dashboard page that never reconnects: ``/static/app.js`` is a copy of the real one
    without the line that schedules the next connection attempt, so a page that lost its connection
    shows "reconnecting" for ever and its live feed stops."""
    script = (app.STATIC / "app.js").read_text(encoding="utf-8")
    if script.count(RETRY_LINE) != 1:
        raise RuntimeError(f"dashboard_no_reconnect: app.js no longer has exactly one {RETRY_LINE!r}")
    patched = script.replace(RETRY_LINE, "/* mutant: no retry */")
    original = app.web.UrlDispatcher.add_static

    async def serve(request: app.web.Request) -> app.web.Response:
        return app.web.Response(text=patched, content_type="application/javascript")

    def add_static(self: app.web.UrlDispatcher, prefix: str, path: Any, **kwargs: Any) -> Any:
        if prefix == "/static":
            self.add_get("/static/app.js", serve)  # registered first, so it wins over the static files
        return original(self, prefix, path, **kwargs)

    app.web.UrlDispatcher.add_static = add_static  # type: ignore[method-assign]
