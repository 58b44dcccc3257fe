"""Locust users for a WebSocket broadcast stream, in the target's protocol dialect (``harness.dialects``).

Locust runs this file in its own process (``python -m locust -f harness/locustfile.py``; see
``harness/load.py``). Nothing in the harness or the test process may import it: ``import locust``
monkey-patches the whole process with gevent. ``websocket-client`` uses plain sockets, which that
patching makes cooperative, so thousands of users share one process.

Each user connects to ``--host`` (``http://`` or ``ws://``; the path comes from the environment),
sends the dialect's opening messages (subscribe), answers its application-level pings, reads every
broadcast and fires one Locust request event per received batch, with the delivery
latency (now minus the batch's ``sent_at``) as the response time and the message size as the
response length. It counts gaps in ``seq``: a gap fires a failure "seq gap" whose response length
is the number of batches missed, so the sum of lengths is the total missed. A connection that drops
is reconnected with backoff, resuming the dialect's way (the monitor: ``?epoch=E&since=S``) so the
server can replay what was missed (or say ``resync_required``, which is not a gap: the server said so
plainly). The request name of a batch is the dialect's ``batch_name`` (the monitor: ``log_entry_batch``).

Behaviours, one User class each, with weights from ``WSCHAOS_LOAD_MIX``:

- ``steady``: connects and reads until the run ends.
- ``switcher``: reads, and every few seconds switches its view between "all" and one node.
- ``reconnector``: closes its connection every ``WSCHAOS_LOAD_RECONNECT_S`` seconds and resumes a
  moment later (0.2 to 0.6 s, a page reload), so the server has batches to replay.
- ``churner``: short fresh connections (a fraction of a second to a second and a half).

The environment (set by the harness; set it on every worker when running distributed):

- ``WSCHAOS_LOAD_PATH``: the WebSocket path (default ``/ws``); ``WSCHAOS_LOAD_URL`` a whole URL.
- ``WSCHAOS_LOAD_MIX``: ``steady=6,switcher=2,reconnector=1,churner=1`` (0 leaves one out).
- ``WSCHAOS_LOAD_RECONNECT_S``: the reconnector's period (default 5).
- ``WSCHAOS_LOAD_MAX_S``: no user lives longer than this (default 3600), whatever Locust says.
- ``WSCHAOS_LOAD_DIALECT``: JSON, a target file's ``dialect`` (``{"name": ..., <options>}``; null:
  the monitor's).
- ``WSCHAOS_LOAD_SHAPE``: JSON overriding the monitor dialect's message names, as a target file's
  ``messages``.
- ``WSCHAOS_LOAD_CONTROL``: a JSON file ``{"users": N, "spawn_rate": R}`` the harness rewrites to
  change the number of users while the run goes (a scenario's ``load`` step).
- ``WSCHAOS_LOAD_EVENTS``: a directory; each process appends every connect and close of its users to
  ``connections-<pid>.jsonl`` there, which the harness folds into its History (so checkers that count
  the server's registry know these connections).

Every loop here is bounded: a connection's read loop by its session's deadline, a user by
``WSCHAOS_LOAD_MAX_S``, the run by Locust's ``-t``.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import struct
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import gevent
import locust.runners
import locust.stats
import websocket
from locust import LoadTestShape, User, constant, events, task
from locust.exception import StopUser

from harness.dialects import RESYNC, Batch, Info, Notice, Position, Ready, Reply, make_dialect

ENV_URL = "WSCHAOS_LOAD_URL"
ENV_PATH = "WSCHAOS_LOAD_PATH"
ENV_MIX = "WSCHAOS_LOAD_MIX"
ENV_RECONNECT_S = "WSCHAOS_LOAD_RECONNECT_S"
ENV_MAX_S = "WSCHAOS_LOAD_MAX_S"
ENV_SHAPE = "WSCHAOS_LOAD_SHAPE"
ENV_DIALECT = "WSCHAOS_LOAD_DIALECT"
ENV_CONTROL = "WSCHAOS_LOAD_CONTROL"
ENV_EVENTS = "WSCHAOS_LOAD_EVENTS"

DEFAULT_MIX = "steady=6,switcher=2,reconnector=1,churner=1"
REQUEST_TYPE = "WS"
CONNECT_TIMEOUT = 5.0
CLOSE_WAIT = 1.0  # for the server's close frame after ours
READ_WAKEUP = 1.0  # a blocked read wakes up this often to look at its deadline
BACKOFF = (0.1, 5.0)  # first and largest reconnect delay, seconds
MAX_MESSAGES_BEFORE_INIT = 100
SWITCH_EVERY = (1.0, 3.0)
CHURN_SESSION = (0.2, 1.5)
CHURN_PAUSE = (0.1, 0.5)
RELOAD_PAUSE = (0.2, 0.6)

# The harness follows the stats while the run goes: write and flush the CSV files every second, and
# let workers report every second (Locust's defaults: flush every 10 s, report every 3 s).
locust.stats.CSV_STATS_FLUSH_INTERVAL_SEC = 1
locust.runners.WORKER_REPORT_INTERVAL = 1.0


# ---------------------------------------------------------------------------------------------
# Configuration from the environment


def parse_mix(text: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        mix[name.strip()] = float(weight)
    return mix


def float_env(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


DIALECT = make_dialect(json.loads(os.environ.get(ENV_DIALECT) or "null"),
                       json.loads(os.environ.get(ENV_SHAPE) or "{}"))  # fmt: skip
RECONNECT_S = float_env(ENV_RECONNECT_S, 5.0)
MAX_S = float_env(ENV_MAX_S, 3600.0)


# ---------------------------------------------------------------------------------------------
# What a user knows of the stream


class SeqGap(Exception):
    """Batches that never arrived: seq jumped."""


class SeqRepeat(Exception):
    """A batch with a seq at or below one already received."""


class Disconnected(Exception):
    """The connection ended without this user closing it."""


class StreamState:
    """The epoch and the highest seq received in it, across the connections of one user."""

    def __init__(self) -> None:
        self.epoch: Any = None
        self.last: int | None = None
        self.conn_seq: int | None = None  # the seq the current connection's init announced

    def position(self) -> Position | None:
        if not DIALECT.resumes or self.epoch is None or self.last is None:
            return None
        return Position(self.epoch, self.last)

    def on_init(self, epoch: Any, seq: Any, resuming: bool) -> None:
        self.conn_seq = seq if isinstance(seq, int) else None
        if not resuming or epoch != self.epoch:
            self.epoch, self.last = epoch, self.conn_seq

    def on_resync(self) -> None:
        """The server cannot replay: start again from what this connection's init announced."""
        self.last = self.conn_seq

    def on_seq(self, seq: int) -> int:
        """How many batches were skipped before ``seq`` (-1: ``seq`` was not new)."""
        if self.last is None:
            self.last = seq
            return 0
        if seq <= self.last:
            return -1
        missed, self.last = seq - self.last - 1, seq
        return missed


class ConnectionLog:
    """Each connect and close of this process's users as a JSON line (one file per process: with
    ``--processes`` the workers are forked after this module is imported, so the file opens lazily)."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self.pid: int | None = None
        self.fh: Any = None
        self.count = 0

    def user_name(self, behaviour: str) -> str:
        self.count += 1
        return f"{behaviour}-{os.getpid()}-{self.count}"

    def write(self, user: str, event: str, **fields: Any) -> None:
        if not self.directory:
            return
        if self.pid != os.getpid():
            self.pid = os.getpid()
            path = os.path.join(self.directory, f"connections-{self.pid}.jsonl")
            self.fh = open(path, "a", encoding="utf-8", buffering=1)  # open for the process's life
        self.fh.write(json.dumps({"user": user, "event": event, "w": time.time(), **fields}) + "\n")


CONNECTIONS = ConnectionLog(os.environ.get(ENV_EVENTS))


def fire(name: str, response_time: float, length: int = 0, exception: BaseException | None = None) -> None:
    events.request.fire(
        request_type=REQUEST_TYPE, name=name, response_time=response_time,
        response_length=length, exception=exception, context={},
    )  # fmt: skip


def ws_url(host: str) -> str:
    explicit = os.environ.get(ENV_URL)
    if explicit:
        return explicit
    parts = urlsplit(host)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = os.environ.get(ENV_PATH, "/ws")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, parts.query, ""))


def close_socket(ws: websocket.WebSocket) -> None:
    """A close frame, a short wait for the server's, then the socket closed.

    Not ``WebSocket.close()``: it swallows every exception, gevent's GreenletExit too, and a user that
    Locust kills while it closes would then live on and hold up the end of the run."""
    try:
        ws.settimeout(CLOSE_WAIT)
        if ws.connected:
            ws.send_close()
            deadline = time.monotonic() + CLOSE_WAIT
            while time.monotonic() < deadline and ws.recv_frame().opcode != websocket.ABNF.OPCODE_CLOSE:
                pass
    except (websocket.WebSocketException, OSError, struct.error):
        pass  # the server went first, or does not answer: the socket is closed all the same
    finally:
        ws.shutdown()


def close_code(data: bytes) -> int | None:
    return struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None


# ---------------------------------------------------------------------------------------------
# The users


class StreamReader(User):
    """Base of the behaviours: one session (a connection, read until its deadline) per task run."""

    abstract = True
    wait_time = constant(0)
    resume = True  # reconnect where the last connection left off
    behaviour = "reader"

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.user_name = CONNECTIONS.user_name(self.behaviour)
        self.rng = random.Random()
        self.stream = StreamState()
        self.ws: websocket.WebSocket | None = None
        self.failures = 0
        self.nodes: list[str] = []
        self.view_sent_at: float | None = None
        self.ends_at = time.monotonic() + MAX_S

    # -- hooks for the behaviours --

    def session_length(self) -> float:
        """How long one connection is kept open."""
        return math.inf

    def pause(self) -> None:
        """Between two sessions that ended as planned."""

    def tick_every(self) -> float:
        """Seconds between two calls of ``tick`` while reading."""
        return math.inf

    def tick(self, ws: websocket.WebSocket) -> None:
        """Something to do now and then while reading."""

    def on_connected(self) -> None:
        """A new connection got its init (the server's view of this client starts afresh)."""

    # -- the session --

    def on_stop(self) -> None:
        self.close("stop")

    @task
    def session(self) -> None:
        if time.monotonic() >= self.ends_at:
            raise StopUser()
        if not self.resume:
            self.stream = StreamState()
        ws = self.connect()
        if ws is None:
            self.backoff()
            return
        until = min(self.ends_at, time.monotonic() + self.session_length())
        try:
            planned = self.read(ws, until)
        finally:
            self.close()
        if planned:
            self.pause()
        else:
            self.backoff()

    def connect(self) -> websocket.WebSocket | None:
        position = self.stream.position() if self.resume else None
        url = DIALECT.connect_url(ws_url(self.host or ""), position)
        started = time.perf_counter()
        try:
            ws = websocket.create_connection(
                url, timeout=CONNECT_TIMEOUT, enable_multithread=False, skip_utf8_validation=True
            )
        except (websocket.WebSocketException, OSError) as exc:
            fire("connect", (time.perf_counter() - started) * 1000, exception=exc)
            return None
        self.ws = ws
        CONNECTIONS.write(self.user_name, "connect", resume=position is not None)
        if not self.await_init(ws, position):
            fire("connect", (time.perf_counter() - started) * 1000, exception=Disconnected("no init"))
            self.close("no init")
            return None
        fire("connect", (time.perf_counter() - started) * 1000)
        self.failures = 0
        self.view_sent_at = None
        self.on_connected()
        return ws

    def await_init(self, ws: websocket.WebSocket, position: Position | None) -> bool:
        """Send the dialect's opening messages, then read until the stream is ready."""
        try:
            for text in DIALECT.opening(position):
                ws.send(text)
        except (websocket.WebSocketException, OSError):
            return False
        if DIALECT.ready_on_open:
            self.on_ready(Ready(), position is not None)
            return True
        for _ in range(MAX_MESSAGES_BEFORE_INIT):
            try:
                opcode, data = ws.recv_data()
            except (websocket.WebSocketException, OSError):
                return False
            if opcode != websocket.ABNF.OPCODE_TEXT:
                return False
            if self.on_text(data, position is not None):
                return True
        return False

    def on_ready(self, ready: Ready, resuming: bool) -> None:
        self.stream.on_init(ready.epoch, ready.seq, resuming)
        self.nodes = list(ready.nodes)

    def read(self, ws: websocket.WebSocket, until: float) -> bool:
        """Read until ``until``; True when the session ran its course, False when the connection broke."""
        next_tick = time.monotonic() + self.tick_every()
        while (now := time.monotonic()) < until:
            if now >= next_tick:
                self.tick(ws)
                next_tick = now + self.tick_every()
            ws.settimeout(max(0.01, min(until, next_tick, now + READ_WAKEUP) - now))
            try:
                opcode, data = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketException, OSError) as exc:
                return self.lost(f"connection lost: {type(exc).__name__}", None, "error")
            if opcode == websocket.ABNF.OPCODE_TEXT:
                self.on_text(data)
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                code = close_code(data)
                return self.lost(f"closed by the server (code {code})", code, "server")
        return True

    def lost(self, why: str, code: int | None, by: str) -> bool:
        fire("disconnect", 0, exception=Disconnected(why))
        self.close(why, code, by)
        return False

    def close(self, reason: str = "session end", code: int | None = 1000, by: str = "client") -> None:
        ws, self.ws = self.ws, None
        if ws is None:
            return
        CONNECTIONS.write(self.user_name, "close", code=code, by=by, reason=reason)
        close_socket(ws)

    def backoff(self) -> None:
        self.failures += 1
        base, cap = BACKOFF
        delay = min(cap, base * 2 ** min(self.failures, 20))
        remaining = self.ends_at - time.monotonic()
        gevent.sleep(max(0.0, min(remaining, self.rng.uniform(delay / 2, delay))))

    # -- messages --

    def on_text(self, data: bytes, resuming: bool = False) -> bool:
        """Handle one text frame; True when it made the stream ready."""
        fast = DIALECT.quick_batch(data)
        if fast is not None:
            self.on_batch(fast[0], fast[1], len(data))
            return False
        ready = False
        for record in DIALECT.parse(data.decode("utf-8", errors="replace")):
            if type(record) is Batch:
                sent_at = record.sent_at if isinstance(record.sent_at, int | float) else None
                self.on_batch(record.seq if isinstance(record.seq, int) else None, sent_at, len(data))
            elif type(record) is Ready:
                self.on_ready(record, resuming)
                ready = True
            elif type(record) is Reply:
                self.answer(record.text)
            elif type(record) is Notice and record.type == RESYNC:
                self.stream.on_resync()
                fire(RESYNC, 0)
            elif type(record) is Info and record.type == "view_changed" and self.view_sent_at is not None:
                fire("set_view", (time.monotonic() - self.view_sent_at) * 1000)
                self.view_sent_at = None
        return ready

    def answer(self, text: str) -> None:
        ws = self.ws
        try:
            if ws is not None:
                ws.send(text)
        except (websocket.WebSocketException, OSError):
            pass  # the read that follows sees the broken connection

    def on_batch(self, seq: int | None, sent_at: float | None, size: int) -> None:
        # Raw, never clamped: a negative latency is a clock or unit error the load checker must see.
        latency = (time.time() - sent_at) * 1000 if sent_at is not None else 0.0
        fire(DIALECT.batch_name, latency, size)
        if seq is None:
            return  # the stream has no positions: nothing to count gaps by
        missed = self.stream.on_seq(seq)
        if missed > 0:
            fire("seq gap", 0, missed, SeqGap("batches missing from the stream"))
        elif missed < 0:
            fire("seq repeat", 0, 0, SeqRepeat("a batch arrived again or out of order"))


class SteadyReader(StreamReader):
    """Connects and reads until the run ends (reconnecting and resuming if the connection breaks)."""

    behaviour = "steady"


class ViewSwitcher(StreamReader):
    """Reads, and every 1 to 3 s switches its view between "all" and one of the nodes."""

    behaviour = "switcher"

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.on_all = True

    def on_connected(self) -> None:
        self.on_all = True

    def tick_every(self) -> float:
        return self.rng.uniform(*SWITCH_EVERY)

    def tick(self, ws: websocket.WebSocket) -> None:
        if not self.nodes or self.view_sent_at is not None:
            return  # nothing to switch to, or still waiting for the last answer
        view = "all" if not self.on_all else self.rng.choice(self.nodes)
        request = DIALECT.set_view(view)
        if request is None:
            return
        try:
            ws.send(request)
        except (websocket.WebSocketException, OSError):
            return  # the read that follows sees the broken connection
        self.on_all = view == "all"
        self.view_sent_at = time.monotonic()


class Reconnector(StreamReader):
    """Closes its connection every RECONNECT_S seconds and comes back a moment later (a page reload),
    resuming: the server must replay what it missed meanwhile."""

    behaviour = "reconnector"

    def session_length(self) -> float:
        return RECONNECT_S * self.rng.uniform(0.8, 1.2)

    def pause(self) -> None:
        gevent.sleep(self.rng.uniform(*RELOAD_PAUSE))


class Churner(StreamReader):
    """Short fresh connections: a browser tab opened and closed."""

    resume = False
    behaviour = "churner"

    def session_length(self) -> float:
        return self.rng.uniform(*CHURN_SESSION)

    def pause(self) -> None:
        gevent.sleep(self.rng.uniform(*CHURN_PAUSE))


BEHAVIOURS: dict[str, type[StreamReader]] = {
    "steady": SteadyReader,
    "switcher": ViewSwitcher,
    "reconnector": Reconnector,
    "churner": Churner,
}


def apply_mix(text: str) -> None:
    """Weights from the mix; a behaviour with weight 0 (or left out) is not run at all."""
    mix = parse_mix(text)
    unknown = sorted(set(mix) - set(BEHAVIOURS))
    if unknown or not any(w > 0 for w in mix.values()):
        raise ValueError(f"{ENV_MIX}={text!r}: give weights for {', '.join(BEHAVIOURS)}, at least one above 0")
    for name, cls in BEHAVIOURS.items():
        weight = mix.get(name, 0)
        cls.weight = weight
        cls.abstract = weight <= 0


apply_mix(os.environ.get(ENV_MIX) or DEFAULT_MIX)


# ---------------------------------------------------------------------------------------------
# Users changed while the run goes, and the HTML report on SIGTERM


class ControlledShape(LoadTestShape):
    """``-u``, ``-r`` and ``-t`` as given, except that the control file may change users and spawn rate.

    Headless Locust installs its SIGTERM handler only once a shape has finished, so a SIGTERM during
    a shaped run would kill it without its reports: here SIGTERM ends the shape, and Locust then
    stops as at the end of ``-t`` (writing the JSON, CSV and HTML reports)."""

    use_common_options = True
    abstract = not os.environ.get(ENV_CONTROL)
    stop_requested = False

    @classmethod
    def request_stop(cls) -> None:
        cls.stop_requested = True

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        options = self.runner.environment.parsed_options
        if self.stop_requested or (options.run_time and self.get_run_time() > options.run_time):
            return None
        users, rate = int(options.num_users or 1), float(options.spawn_rate or 1)
        try:
            with open(os.environ[ENV_CONTROL], encoding="utf-8") as fh:
                control = json.load(fh)
            users = int(control.get("users", users))
            rate = float(control.get("spawn_rate", rate))
        except (OSError, ValueError, TypeError, AttributeError):
            pass  # not written yet, or being replaced: keep the command line's
        return users, rate


@events.init.add_listener
def stop_shape_on_sigterm(environment: Any, **_: Any) -> None:
    if environment.shape_class is not None and not isinstance(environment.runner, locust.runners.WorkerRunner):
        gevent.signal_handler(signal.SIGTERM, ControlledShape.request_stop)


@events.quitting.add_listener
def write_html_on_sigterm(environment: Any, **_: Any) -> None:
    """Locust writes ``--html`` only when a run ends by itself; a run the harness stops gets one too."""
    options = environment.parsed_options
    html = getattr(options, "html_file", None)
    if not html or os.path.exists(html) or isinstance(environment.runner, locust.runners.WorkerRunner):
        return
    from locust.html import get_html_report

    with open(html, "w", encoding="utf-8") as fh:
        fh.write(get_html_report(environment, show_download_link=False))
