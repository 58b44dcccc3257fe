"""Probe clients: connect to a target, record everything they observe into a History, misbehave on cue.

``ProbeClient`` is a well-behaved aiohttp client that speaks the target's dialect (``harness.dialects``),
reconnects and resumes; on cue it stops reading,
vanishes with an RST, cuts a frame in half or sends garbage. ``StuckClient`` is a raw socket that
completes the handshake and never reads again. ``Cohort`` starts, stops and samples a group of them.

Recording is the hot path: a received batch costs one ``json.loads`` and one ``history.record``.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from harness.dialects import Batch, Dialect, MessageShape, MonitorDialect, Notice, Position, Ready, Reply
from harness.errors import HarnessError
from harness.history import History
from harness.stuck import StuckClient
from harness.wsframes import FrameTracker, TrackingReader, describe, set_linger_zero, unread_bytes, ws_frame

__all__ = ["AnyClient", "Cohort", "MessageShape", "ProbeClient", "StuckClient", "describe", "probe_session",
           "wait_ready"]  # fmt: skip

_END_TYPES = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR})


def _rcvbuf_factory(rcvbuf: int) -> Any:
    def factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _, _ = addr_info
        sock = socket.socket(family=family, type=type_, proto=proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        return sock

    return factory


class TrackedWebSocket(aiohttp.ClientWebSocketResponse):
    """A client WebSocket whose incoming bytes also go through a ``FrameTracker``, so the end of a
    connection can be placed between frames or inside one. aiohttp sets ``_parser`` once, right
    after the handshake and before it feeds any byte that came after the response head."""

    tracker: FrameTracker | None = None

    @property
    def _parser(self) -> Any:
        return self.__dict__.get("_tracked_parser")

    @_parser.setter
    def _parser(self, parser: Any) -> None:
        if parser is not None and self.tracker is None:
            self.tracker = FrameTracker()
            parser = TrackingReader(parser, self.tracker)
        self.__dict__["_tracked_parser"] = parser


def probe_session(rcvbuf: int | None = None) -> aiohttp.ClientSession:
    """A session for probe clients: no connection limit (aiohttp's default of 100 would queue the
    101st WebSocket); with ``rcvbuf``, SO_RCVBUF is set on every socket before it connects."""
    factory = None if rcvbuf is None else _rcvbuf_factory(rcvbuf)
    connector = aiohttp.TCPConnector(limit=0, socket_factory=factory)
    return aiohttp.ClientSession(connector=connector, ws_response_class=TrackedWebSocket)


def backoff_delay(failures: int, backoff: tuple[float, float], rng: random.Random) -> float:
    """Exponential backoff, capped, with jitter: a random delay in [d/2, d]."""
    base, cap = backoff
    delay = min(cap, base * 2 ** min(failures, 30))
    return rng.uniform(delay / 2, delay)


def _transport(ws: aiohttp.ClientWebSocketResponse) -> asyncio.Transport | None:
    # aiohttp offers no public accessor for a client WebSocket's transport.
    connection = getattr(ws, "_response", None) and ws._response.connection
    return None if connection is None else connection.transport


def _inside_frame(ws: aiohttp.ClientWebSocketResponse) -> list[int | None] | bool | None:
    """Where the server's byte stream ended: [bytes of the last frame received, its length (None if
    even its header was cut)], False between two frames, None when it could not be followed."""
    tracker = getattr(ws, "tracker", None)
    if tracker is None:
        return None
    inside = tracker.inside()
    return False if inside is None else list(inside)


def _abort(transport: asyncio.BaseTransport | None) -> None:
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            set_linger_zero(sock)
        except OSError:
            pass
    transport.abort()


# --- the probe client ---------------------------------------------------------------------------


class ProbeClient:
    """An aiohttp WebSocket client that records connect, init, every batch, notices and closes.

    Attributes for the runner and the checkers: ``connected``, ``epoch``, ``last_seq`` (highest seq
    known in ``epoch``: the init's seq on a fresh start, then each batch's), ``connections`` (successful
    handshakes), ``received`` (text messages), ``batches``, ``init_event`` (set on the first init),
    ``failure`` (an unexpected exception that ended the client, else None).

    Pass a shared ``session`` (see ``probe_session``); with ``rcvbuf`` or without a session the client
    owns one and closes it on ``stop``. ``view`` (a node or a list of nodes): ask for that view on
    every connect, when the dialect has views. ``resume_after``: that many seconds after each init,
    send the dialect's resume message from the init's position (recorded as ``resume_request``).
    """

    def __init__(
        self,
        name: str,
        cohort: str,
        url: str,
        history: History,
        dialect: Dialect | MessageShape | None = None,
        *,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.1, 2.0),
        rcvbuf: int | None = None,
        session: aiohttp.ClientSession | None = None,
        rng: random.Random | None = None,
        connect_timeout: float = 5.0,
        close_timeout: float = 2.0,
        view: Any = None,
        resume_after: float | None = None,
    ) -> None:
        self.name = name
        self.cohort = cohort
        self.history = history
        self.dialect = dialect if isinstance(dialect, Dialect) else MonitorDialect(dialect)
        self.view = view
        viewed = None if view is None else self.dialect.view_url(url, view)
        self.url = url if viewed is None else viewed
        self.view_asked = viewed is not None
        self.resume_after = resume_after
        self._resume_task: asyncio.Task[None] | None = None
        self.reconnect = reconnect
        self.backoff = backoff
        self.rcvbuf = rcvbuf
        self.rng = rng or random.Random(name)
        self.connect_timeout = connect_timeout
        self.close_timeout = close_timeout
        self._session = session if rcvbuf is None else None
        self._owns_session = self._session is None
        self.connected = False
        self.epoch: Any = None
        self.last_seq: int | None = None
        self.connections = 0
        self.received = 0
        self.batches = 0
        self.events = 0
        self.init_event = asyncio.Event()
        self.failure: BaseException | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._reading = asyncio.Event()
        self._reading.set()
        self._stopping = False
        self._hold = False
        self._closed_by_us = False
        self._resuming = False
        self._conn_seq: int | None = None
        self._conn_inited = False
        self._attempts = 0

    def __repr__(self) -> str:
        return f"ProbeClient({self.name!r}, cohort={self.cohort!r}, connected={self.connected})"

    # lifecycle

    async def start(self) -> None:
        if self._task is not None:
            return
        if self._session is None:
            self._session = probe_session(self.rcvbuf)
        self._task = asyncio.create_task(self._run(), name=f"probe-{self.name}")
        self._task.add_done_callback(self._on_task_done)

    async def wait_init(self, timeout: float) -> bool:
        """Wait for the first init; False when it did not come within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self.init_event.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Close cleanly (a close frame, or an RST if that hangs), record it, and end the task."""
        self._stopping = True
        self._reading.set()
        ws = self._ws
        if ws is not None and self.connected and not ws.closed:
            self._closed_by_us = True
            self.connected = False
            await self._close(ws)
            self._record_close(ws.close_code, "client", "stop")
        resuming = self._cancel_resume()
        if resuming is not None:
            await asyncio.wait([resuming])
        await self._end_task()
        if ws is not None and not ws.closed:
            await self._close(ws)  # dropped by a fault: release its connection, nothing left to record
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def _close(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async with asyncio.timeout(self.close_timeout):
                await ws.close()
        except (TimeoutError, ConnectionError, aiohttp.ClientError):
            _abort(_transport(ws))

    async def _end_task(self) -> None:
        task = self._task
        if task is None:
            return
        if not task.done():
            task.cancel()
        await asyncio.wait([task])

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.failure = task.exception()
            self.connected = False

    # the connection loop

    async def _run(self) -> None:
        failures = 0
        while True:
            ws = await self._connect()
            if ws is not None:
                await self._serve(ws)
            # Only a connection that got as far as an init resets the backoff: a target that accepts
            # and drops at once must not be hammered.
            failures = 0 if ws is not None and self._conn_inited else failures + 1
            if not self.reconnect or self._stopping or self._hold:
                return
            await asyncio.sleep(backoff_delay(failures, self.backoff, self.rng))

    def _position(self) -> Position | None:
        """Where to resume from: the epoch and the highest seq seen in it (None for a fresh start)."""
        if not self.dialect.resumes or self.epoch is None or self.last_seq is None:
            return None
        return Position(self.epoch, self.last_seq)

    async def _connect(self) -> aiohttp.ClientWebSocketResponse | None:
        self._attempts += 1
        position = self._position()
        url = self.dialect.connect_url(self.url, position)
        self._resuming = position is not None
        assert self._session is not None
        timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=self.close_timeout)
        try:
            async with asyncio.timeout(self.connect_timeout):
                ws = await self._session.ws_connect(url, autoping=True, heartbeat=None, timeout=timeout)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.history.record("connect_error", client=self.name, cohort=self.cohort, error=describe(exc))
            return None
        self._ws, self.connected, self._closed_by_us, self._conn_inited = ws, True, False, False
        self.connections += 1
        since = self.last_seq if self._resuming else None
        asked = {"view": self.view} if self.view_asked else {}
        self.history.record("connect", client=self.name, cohort=self.cohort, attempt=self._attempts, since=since,
                            **asked)  # fmt: skip
        if not await self._send_all(ws, self.dialect.opening(position)):
            return ws  # the read that follows sees how the connection ended
        if self.dialect.ready_on_open:
            self._on_init(Ready())
        return ws

    async def _send_all(self, ws: aiohttp.ClientWebSocketResponse, texts: list[str]) -> bool:
        try:
            for text in texts:
                await ws.send_str(text)
        except (ConnectionError, aiohttp.ClientError):
            return False
        return True

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            end = await self._read(ws)
        finally:
            self.connected = False
            self._cancel_resume()
        if self._closed_by_us:
            return
        if end.type is WSMsgType.CLOSE:
            self._record_close(end.data, "server", end.extra)
        else:
            cause = describe(end.data if isinstance(end.data, BaseException) else ws.exception())
            reason = f"{end.type.name.lower()}: {cause}" if cause else end.type.name.lower()
            self._record_close(None, "error", reason, inside_frame=_inside_frame(ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
        reading = self._reading
        while True:
            if not reading.is_set():
                await reading.wait()
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                replies = self._on_text(msg.data)
                if replies:
                    await self._send_all(ws, replies)
            elif msg.type in _END_TYPES:
                return msg

    def _record_close(self, code: int | None, by: str, reason: Any, **fields: Any) -> None:
        self.history.record("close", client=self.name, cohort=self.cohort, code=code, by=by, reason=reason, **fields)

    # messages

    def _on_text(self, data: str) -> list[str]:
        """Record what the frame says; return the texts to answer it with (application-level pongs)."""
        self.received += 1
        replies: list[str] = []
        for record in self.dialect.parse(data):
            if type(record) is Batch:
                self._on_batch(record)
            elif type(record) is Ready:
                self._on_init(record)
            elif type(record) is Notice:
                self._on_notice(record)
            elif type(record) is Reply:
                replies.append(record.text)
        return replies

    def _on_batch(self, batch: Batch) -> None:
        seq, ids = batch.seq, batch.ids
        self.history.record(
            "batch", client=self.name, seq=seq, ids=ids, sent_at=batch.sent_at, recv_at=time.time()
        )
        self.batches += 1
        self.events += len(ids)
        if isinstance(seq, int):
            if self.last_seq is None or seq > self.last_seq:
                self.last_seq = seq
            if self._conn_seq is None or seq > self._conn_seq:
                self._conn_seq = seq

    def _on_init(self, ready: Ready) -> None:
        epoch, seq = ready.epoch, ready.seq
        view = {} if ready.view is None else {"view": ready.view}
        self.history.record("init", client=self.name, epoch=epoch, seq=seq, **view)
        self._conn_seq = seq if isinstance(seq, int) else None
        self._conn_inited = True
        if epoch != self.epoch or not self._resuming:
            self.epoch, self.last_seq = epoch, self._conn_seq
        self.init_event.set()
        self._schedule_resume(epoch, self._conn_seq)

    def _schedule_resume(self, epoch: Any, seq: int | None) -> None:
        """With ``resume_after``: the resume message from where this connection started, sent later."""
        ws = self._ws
        if self.resume_after is None or seq is None or ws is None:
            return
        text = self.dialect.resume_message(Position(epoch, seq))
        if text is None:
            return
        self._cancel_resume()
        self._resume_task = asyncio.create_task(self._resume_later(ws, text, epoch, seq), name=f"resume-{self.name}")

    async def _resume_later(self, ws: aiohttp.ClientWebSocketResponse, text: str, epoch: Any, seq: int) -> None:
        await asyncio.sleep(self.resume_after or 0.0)
        if ws is not self._ws or not self.connected:
            return
        self.history.record("resume_request", client=self.name, cohort=self.cohort, epoch=epoch, since=seq)
        await self._send_all(ws, [text])

    def _cancel_resume(self) -> asyncio.Task[None] | None:
        task, self._resume_task = self._resume_task, None
        if task is None or task is asyncio.current_task():
            return None
        task.cancel()
        return task

    def _on_notice(self, notice: Notice) -> None:
        self.history.record("notice", client=self.name, type=notice.type, body=notice.body)
        if notice.type == "resync_required":
            self.last_seq = self._conn_seq

    # observations

    def backlog(self) -> int:
        """Bytes received but not yet processed: unread in the kernel plus queued in aiohttp's reader
        (which holds up to about 128 KiB of messages, then stops reading the socket)."""
        ws = self._ws
        if ws is None or not self.connected:
            return 0
        sock = ws.get_extra_info("socket")
        kernel = unread_bytes(sock) if sock is not None else 0
        return kernel + int(getattr(getattr(ws, "_reader", None), "_size", 0))

    def local_address(self) -> tuple[str, int] | None:
        """This connection's (host, port) on the client side, to find it in the target's logs."""
        ws = self._live_ws()
        return None if ws is None else ws.get_extra_info("sockname")

    # client-side faults

    def _fault(self, action: str, **fields: Any) -> None:
        self.history.record("client_fault", client=self.name, cohort=self.cohort, action=action, **fields)

    def _live_ws(self) -> aiohttp.ClientWebSocketResponse | None:
        ws = self._ws
        return ws if ws is not None and self.connected else None

    async def abort(self, *, resume_after: bool = False) -> None:
        """Vanish with an RST (SO_LINGER 0, then abort). No reconnect afterwards unless ``resume_after``."""
        ws = self._live_ws()
        self._fault("rst", applied=ws is not None)
        self._hold = not resume_after
        if ws is not None:
            self._drop(ws, "rst")

    async def fin(self, *, resume_after: bool = False) -> None:
        """Vanish with a FIN and no close frame. No reconnect afterwards unless ``resume_after``."""
        ws = self._live_ws()
        self._fault("fin", applied=ws is not None)
        self._hold = not resume_after
        if ws is not None:
            self._drop(ws, "fin", rst=False)

    def _drop(self, ws: aiohttp.ClientWebSocketResponse, reason: str, rst: bool = True) -> None:
        self._closed_by_us = True
        self.connected = False
        transport = _transport(ws)
        if rst:
            _abort(transport)
        elif transport is not None:
            transport.close()
        self._record_close(None, "client", reason)

    async def close_mid_frame(self, *, resume_after: bool = False) -> None:
        """Write the first half of a masked frame straight to the socket, then vanish with an RST."""
        ws = self._live_ws()
        transport = None if ws is None else _transport(ws)
        self._fault("mid_frame", applied=transport is not None)
        self._hold = not resume_after
        if ws is None or transport is None:
            return
        frame = ws_frame(json.dumps({"type": "ping", "t": "x" * 200}).encode())
        transport.write(frame[: len(frame) // 2])
        await asyncio.sleep(0.05)  # let the half frame reach the server before the RST
        self._drop(ws, "mid_frame")

    async def send_garbage(self) -> None:
        """Send invalid JSON, a binary frame and an unknown request type; the server should answer
        each with an error notice and keep the connection."""
        ws = self._live_ws()
        self._fault("garbage", applied=ws is not None)
        if ws is None:
            return
        try:
            await ws.send_str("{not json")
            await ws.send_bytes(b"\x00\xffgarbage")
            await ws.send_str(json.dumps({"type": "no_such_request"}))
        except (ConnectionError, aiohttp.ClientError):
            pass  # the reader records how the connection ended

    async def send_request(self, text: str) -> bool:
        """Send one text frame (a request in the target's protocol); False when not connected."""
        ws = self._live_ws()
        if ws is None:
            return False
        try:
            await ws.send_str(text)
        except (ConnectionError, aiohttp.ClientError):
            return False  # the reader records how the connection ended
        return True

    def stop_reading(self) -> None:
        """Stop calling receive(): aiohttp queues about 128 KiB, then pauses the socket, and the
        kernel buffers fill until the server's sends block."""
        self._fault("stop_reading")
        self._reading.clear()

    def resume_reading(self) -> None:
        self._fault("resume_reading")
        self._reading.set()


async def wait_ready(ws: aiohttp.ClientWebSocketResponse, dialect: Dialect) -> None:
    """Send the dialect's opening messages and read until the stream is ready (answering pings); a
    connection that ends first raises ConnectionError."""
    for text in dialect.opening(None):
        await ws.send_str(text)
    if dialect.ready_on_open:
        return
    while True:
        msg = await ws.receive()
        if msg.type is not WSMsgType.TEXT:
            if msg.type in _END_TYPES:
                raise ConnectionError(f"connection ended before the stream was ready ({msg.type.name})")
            continue
        for record in dialect.parse(msg.data):
            if type(record) is Ready:
                return
            if type(record) is Reply:
                await ws.send_str(record.text)


# --- cohorts ------------------------------------------------------------------------------------

AnyClient = ProbeClient | StuckClient


class Cohort:
    """A named group of clients that start, stop and suffer faults together."""

    def __init__(self, name: str, clients: list[AnyClient]) -> None:
        self.name = name
        self.clients = list(clients)

    def __iter__(self) -> Iterator[AnyClient]:
        return iter(self.clients)

    def __len__(self) -> int:
        return len(self.clients)

    @property
    def probes(self) -> list[ProbeClient]:
        return [c for c in self.clients if isinstance(c, ProbeClient)]

    async def start(self, timeout: float = 10.0) -> None:
        """Start every client, then wait until each probe client got its init and each stuck client
        connected. On failure, stop the cohort and raise a HarnessError saying how many made it."""
        deadline = asyncio.get_running_loop().time() + timeout
        await asyncio.gather(*(c.start() for c in self.clients))
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        await asyncio.gather(*(p.wait_init(remaining) for p in self.probes))
        ready = sum(1 for c in self.clients if self._ready(c))
        if ready < len(self.clients):
            await self.stop()
            raise HarnessError(
                f"cohort {self.name!r}: only {ready} of {len(self.clients)} clients connected "
                f"and got an init within {timeout:g} s",
                hint="check that the target is up and reachable; see the connect_error records in the history",
            )

    @staticmethod
    def _ready(client: AnyClient) -> bool:
        if isinstance(client, ProbeClient):
            return client.init_event.is_set()
        return client.connected

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.clients))

    def connected(self) -> list[AnyClient]:
        return [c for c in self.clients if c.connected]

    def sample(self, n: int, rng: random.Random) -> list[AnyClient]:
        """``n`` clients chosen by ``rng`` (all of them when ``n`` is at least the cohort's size)."""
        return rng.sample(self.clients, min(max(n, 0), len(self.clients)))

    def share(self, fraction: float, rng: random.Random) -> list[AnyClient]:
        """A ``fraction`` (0 to 1) of the clients, rounded, at least one when ``fraction`` > 0."""
        n = round(fraction * len(self.clients))
        return self.sample(max(n, 1) if fraction > 0 else 0, rng)

    def backlog(self) -> int:
        """The largest receive backlog (bytes) among the cohort's clients."""
        return max((c.backlog() for c in self.clients), default=0)
