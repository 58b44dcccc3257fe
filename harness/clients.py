"""Probe clients: connect to a target, record everything they observe into a History, misbehave on cue.

``ProbeClient`` is a well-behaved aiohttp client that reconnects and resumes; on cue it stops reading,
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
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import WSMsgType
from yarl import URL

from harness.errors import HarnessError
from harness.history import History
from harness.wsframes import (
    OP_PONG,
    peer_end,
    read_http_head,
    set_linger_zero,
    unread_bytes,
    ws_frame,
    ws_key,
)

_END_TYPES = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR})


@dataclass(frozen=True)
class MessageShape:
    """How to read a target's messages: which types and fields carry the init, batches and notices."""

    init_type: str = "init"
    batch_type: str = "log_entry_batch"
    seq: str = "seq"
    events: str | None = "events"  # None: a batch message is itself one event
    event_id: str = "piece_id"
    sent_at: str = "sent_at"
    epoch: str = "epoch"
    notice_types: tuple[str, ...] = ("resumed", "resync_required", "error")
    resume_query: bool = True  # reconnect with ?epoch=E&since=S
    type_key: str = "type"


def _rcvbuf_factory(rcvbuf: int) -> Any:
    def factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _, _ = addr_info
        sock = socket.socket(family=family, type=type_, proto=proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        return sock

    return factory


def probe_session(rcvbuf: int | None = None) -> aiohttp.ClientSession:
    """A session for probe clients: no connection limit (aiohttp's default of 100 would queue the
    101st WebSocket); with ``rcvbuf``, SO_RCVBUF is set on every socket before it connects."""
    factory = None if rcvbuf is None else _rcvbuf_factory(rcvbuf)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, socket_factory=factory))


def describe(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def backoff_delay(failures: int, backoff: tuple[float, float], rng: random.Random) -> float:
    """Exponential backoff, capped, with jitter: a random delay in [d/2, d]."""
    base, cap = backoff
    delay = min(cap, base * 2 ** min(failures, 30))
    return rng.uniform(delay / 2, delay)


def _transport(ws: aiohttp.ClientWebSocketResponse) -> asyncio.Transport | None:
    # aiohttp offers no public accessor for a client WebSocket's transport.
    connection = getattr(ws, "_response", None) and ws._response.connection
    return None if connection is None else connection.transport


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
    owns one and closes it on ``stop``.
    """

    def __init__(
        self,
        name: str,
        cohort: str,
        url: str,
        history: History,
        shape: MessageShape | None = None,
        *,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.1, 2.0),
        rcvbuf: int | None = None,
        session: aiohttp.ClientSession | None = None,
        rng: random.Random | None = None,
        connect_timeout: float = 5.0,
        close_timeout: float = 2.0,
    ) -> None:
        self.name = name
        self.cohort = cohort
        self.url = url
        self.history = history
        self.shape = shape or MessageShape()
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

    def _connect_url(self) -> URL:
        url = URL(self.url)
        self._resuming = self.shape.resume_query and self.epoch is not None and self.last_seq is not None
        if self._resuming:
            url = url.update_query(epoch=str(self.epoch), since=str(self.last_seq))
        return url

    async def _connect(self) -> aiohttp.ClientWebSocketResponse | None:
        self._attempts += 1
        url = self._connect_url()
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
        self.history.record("connect", client=self.name, cohort=self.cohort, attempt=self._attempts, since=since)
        return ws

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            end = await self._read(ws)
        finally:
            self.connected = False
        if self._closed_by_us:
            return
        if end.type is WSMsgType.CLOSE:
            self._record_close(end.data, "server", end.extra)
        else:
            cause = describe(end.data if isinstance(end.data, BaseException) else ws.exception())
            self._record_close(None, "error", f"{end.type.name.lower()}: {cause}" if cause else end.type.name.lower())

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
        reading = self._reading
        while True:
            if not reading.is_set():
                await reading.wait()
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                self._on_text(msg.data)
            elif msg.type in _END_TYPES:
                return msg

    def _record_close(self, code: int | None, by: str, reason: Any) -> None:
        self.history.record("close", client=self.name, cohort=self.cohort, code=code, by=by, reason=reason)

    # messages

    def _on_text(self, data: str) -> None:
        self.received += 1
        try:
            msg = json.loads(data)
        except ValueError:
            self.history.record("notice", client=self.name, type="unparsable", body=data[:200])
            return
        if not isinstance(msg, dict):
            return
        shape = self.shape
        kind = msg.get(shape.type_key)
        if kind == shape.batch_type:
            self._on_batch(msg)
        elif kind == shape.init_type:
            self._on_init(msg)
        elif kind in shape.notice_types:
            self._on_notice(kind, msg)

    def _on_batch(self, msg: dict[str, Any]) -> None:
        shape = self.shape
        seq = msg.get(shape.seq)
        events = msg.get(shape.events) if shape.events is not None else [msg]
        key = shape.event_id
        ids = [e.get(key) for e in events if isinstance(e, dict)] if isinstance(events, list) else []
        self.history.record(
            "batch", client=self.name, seq=seq, ids=ids, sent_at=msg.get(shape.sent_at), recv_at=time.time()
        )
        self.batches += 1
        self.events += len(ids)
        if isinstance(seq, int):
            if self.last_seq is None or seq > self.last_seq:
                self.last_seq = seq
            if self._conn_seq is None or seq > self._conn_seq:
                self._conn_seq = seq

    def _on_init(self, msg: dict[str, Any]) -> None:
        epoch, seq = msg.get(self.shape.epoch), msg.get(self.shape.seq)
        self.history.record("init", client=self.name, epoch=epoch, seq=seq)
        self._conn_seq = seq if isinstance(seq, int) else None
        self._conn_inited = True
        if epoch != self.epoch or not self._resuming:
            self.epoch, self.last_seq = epoch, self._conn_seq
        self.init_event.set()

    def _on_notice(self, kind: str, msg: dict[str, Any]) -> None:
        self.history.record("notice", client=self.name, type=kind, body=msg)
        if kind == "resync_required":
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

    def stop_reading(self) -> None:
        """Stop calling receive(): aiohttp queues about 128 KiB, then pauses the socket, and the
        kernel buffers fill until the server's sends block."""
        self._fault("stop_reading")
        self._reading.clear()

    def resume_reading(self) -> None:
        self._fault("resume_reading")
        self._reading.set()


# --- the stuck client ---------------------------------------------------------------------------


class StuckClient:
    """A raw socket that completes the handshake, reads only the HTTP response, and never reads again.

    With ``answer_heartbeats`` it sends an unsolicited masked pong every ``pong_interval`` seconds:
    aiohttp resets its heartbeat timer on any data received, so this defeats heartbeat eviction. A
    failed write, or the kernel reporting the connection gone, is recorded as a close by ``error``
    with ``how`` the kernel saw it end: "reset" (an RST), "fin" (the server closed its side).
    """

    def __init__(
        self,
        name: str,
        cohort: str,
        host: str,
        port: int,
        path: str,
        history: History,
        *,
        answer_heartbeats: bool,
        rcvbuf: int | None = 4096,
        pong_interval: float = 0.5,
        connect_timeout: float = 5.0,
    ) -> None:
        self.name = name
        self.cohort = cohort
        self.host = host
        self.port = port
        self.path = path
        self.history = history
        self.answer_heartbeats = answer_heartbeats
        self.rcvbuf = rcvbuf
        self.pong_interval = pong_interval
        self.connect_timeout = connect_timeout
        self.connected = False
        self.pongs_sent = 0
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"StuckClient({self.name!r}, cohort={self.cohort!r}, connected={self.connected})"

    async def start(self) -> None:
        """Connect and complete the handshake (a failure is recorded as ``connect_error``)."""
        if self._sock is not None:
            return
        sock = self._new_socket()
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self._handshake(sock)
        except (OSError, TimeoutError, HarnessError) as exc:
            sock.close()
            self.history.record("connect_error", client=self.name, cohort=self.cohort, error=describe(exc))
            return
        except BaseException:  # cancelled mid-handshake: the socket is not ours to keep
            sock.close()
            raise
        self._sock, self.connected = sock, True
        self.history.record("connect", client=self.name, cohort=self.cohort, attempt=1, since=None)
        self._task = asyncio.create_task(self._watch(), name=f"stuck-{self.name}")

    def _new_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.setblocking(False)
        return sock

    async def _handshake(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (self.host, self.port))
        key = ws_key()
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        head = await read_http_head(loop, sock)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise HarnessError(f"handshake refused: {head[:200]!r}")

    async def _watch(self) -> None:
        pong = ws_frame(b"", OP_PONG)
        while self.connected:
            await asyncio.sleep(self.pong_interval)
            sock = self._sock
            if sock is None:
                return
            if self.answer_heartbeats and not await self._send(sock, pong):
                return
            how = peer_end(sock)
            if how is not None:
                self._gone("connection no longer established", how)
                return

    async def _send(self, sock: socket.socket, data: bytes) -> bool:
        try:
            async with asyncio.timeout(self.pong_interval * 4):
                await asyncio.get_running_loop().sock_sendall(sock, data)
        except (OSError, TimeoutError) as exc:
            self._gone(describe(exc), "reset" if isinstance(exc, ConnectionResetError) else peer_end(sock))
            return False
        self.pongs_sent += 1
        return True

    def _gone(self, reason: str | None, how: str | None) -> None:
        """``how``: what the kernel saw end the connection ("reset", "fin", ...), when it knows."""
        if not self.connected:
            return
        self.connected = False
        self.history.record("close", client=self.name, cohort=self.cohort, code=None, by="error", reason=reason,
                            how=how)  # fmt: skip

    async def stop(self) -> None:
        """Vanish with an RST."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self.connected:
            self.connected = False
            self.history.record("close", client=self.name, cohort=self.cohort, code=None, by="client", reason="rst")
        try:
            set_linger_zero(sock)
        except OSError:
            pass
        sock.close()

    def backlog(self) -> int:
        return unread_bytes(self._sock) if self._sock is not None else 0

    @property
    def sock(self) -> socket.socket | None:
        """The raw socket while the client holds it (its queues show whether a fault bit)."""
        return self._sock


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
