"""Hostile clients: faults that attack the target's protocol and HTTP layers from the client side.

They connect straight to the target's address (no proxy, no cohort) and send what no well-behaved
client would: JSON nested a thousand deep, nonsense in the resume parameters, oversized request
heads, a flood of pings never read, unmasked frames, half-sent requests held open, sockets until the
server refuses, and resumes of the whole replay buffer over and over. Each runs in the background
from its start for at most ``duration`` seconds (and within its own count bounds), closes what it
opened when it ends, and on heal records a ``fault_bite`` with what it sent and how the server
answered (``answers``: counts of "status, close code or end", see ``harness.hostileconn.Answer``).
A fault that cannot apply to the target's protocol records why in its bite (``bit`` false, ``how``
"skipped: ...").
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import Counter
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from harness.bite import Subject
from harness.dialects import RESUMED, RESYNC, Dialect, Notice, Position, Ready
from harness.faultbase import Fault, FaultContext, FaultSpec, cancel_all
from harness.hostileconn import Answer, RawConn, ending, upgrade_request
from harness.wsframes import OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT, ws_frame

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 2.0
FD_MARGIN = 256  # file descriptors the harness keeps for itself when it opens sockets by the hundred
# Resume values no server should choke on: a superscript two (str.isdigit() says yes, int() says no),
# Arabic-Indic digits, a 5,000-digit number (past Python's int() limit of 4,300 digits), overflows,
# signs, exponents, and bytes that are not UTF-8. Sent as written (already percent-encoded).
BAD_SINCE = ("%C2%B2", "%D9%A1%D9%A2", "9" * 5000, "99999999999999999999999", "-1", "1e309", "NaN", "0x10",
             "%20%201", "", "%00", "%FF%FE")  # fmt: skip
BAD_EPOCH = ("%FF%FE", "e" * 5000, "%00")
EPOCH_MARK, SINCE_MARK = "wschaos-epoch-mark", 987654321


class HostileFault(Fault):
    """Base: the attack runs as the fault's task, bounded by ``duration``; ``answers`` counts how the
    server answered, ``counts`` what was sent. ``bounds`` gives each numeric param's allowed range."""

    needs_cohort = False
    bounds: ClassVar[dict[str, tuple[float, float]]] = {}

    def __init__(self, spec: FaultSpec) -> None:
        super().__init__(spec)
        self.conns: set[RawConn] = set()
        self.answers: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.extra: dict[str, Any] = {}
        self.skipped: str | None = None
        self.stopped_by: str | None = None  # what ended the attack, when not its count

    @classmethod
    def problems(cls, spec: FaultSpec) -> list[tuple[str, str]]:
        problems = super().problems(spec)
        for name, (low, high) in cls.bounds.items():
            value = spec.params.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) and not low <= value <= high:
                problems.append((f"params.{name}", f"must be between {low:g} and {high:g}, got {value!r}"))
        return problems

    async def apply(self, ctx: FaultContext) -> None:
        self.spawn(self._run(ctx), "attack")

    async def _run(self, ctx: FaultContext) -> None:
        try:
            async with asyncio.timeout(self.params["duration"]):
                await self.attack(ctx)
        except TimeoutError:
            bound = f"its time bound ({self.params['duration']:g} s)"
            self.stopped_by = f"{self.stopped_by}, then {bound}" if self.stopped_by else bound
        finally:
            self.summarize()
            await self.release(ctx)

    async def attack(self, ctx: FaultContext) -> None:
        raise NotImplementedError

    def summarize(self) -> None:
        """While its connections are still open: note what they show (before ``release`` closes them)."""

    async def settle(self, ctx: FaultContext) -> None:
        for task in list(self.tasks):
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                log.warning("hostile fault %s ended with %r", self.spec.name, task.exception())

    async def undo(self, ctx: FaultContext) -> None:
        await cancel_all(self.tasks)
        await self.release(ctx)

    async def release(self, ctx: FaultContext) -> None:
        for conn in list(self.conns):
            await self.drop(conn, rst=True)

    def record_bite(self, ctx: FaultContext) -> None:
        tail = self.more()
        figures = {**self.counts, **self.extra, "answers": dict(self.answers.most_common(12))}
        subject = Subject(self.spec.name, self.type, None)
        if self.skipped is not None:
            subject.record(ctx.history, False, f"skipped: {self.skipped}", **figures)
            return
        sent = self.counts["requests"]
        answers = ", ".join(f"{label} x{n}" for label, n in self.answers.most_common(4)) or "none"
        until = self.stopped_by or "its count"
        how = f"{sent} request(s), {self.counts['bytes_sent']} bytes sent until {until}; answers: {answers}"
        subject.record(ctx.history, sent > 0, how + tail, **figures)

    def more(self) -> str:
        return ""

    # -- helpers for the attacks ------------------------------------------------------------------

    async def connect(self, ctx: FaultContext, rcvbuf: int | None = None) -> RawConn | None:
        try:
            conn = await RawConn.open(ctx.target.host, ctx.target.port, rcvbuf=rcvbuf)
        except (OSError, TimeoutError) as exc:
            self.answers[f"connect {ending(exc)}"] += 1
            return None
        self.conns.add(conn)
        return conn

    async def drop(self, conn: RawConn, rst: bool = False) -> None:
        self.counts["bytes_sent"] += conn.sent
        conn.sent = 0
        await conn.close(rst=rst)
        self.conns.discard(conn)

    async def request(self, conn: RawConn, data: bytes) -> int | None:
        """Send one request head and read the status of the answer."""
        self.counts["requests"] += 1
        if not await conn.send(data):
            return None
        return await conn.read_head(HEAD_TIMEOUT)

    async def upgrade(self, ctx: FaultContext, conn: RawConn, target: str | None = None,
                      resume: Position | None = None) -> bool:  # fmt: skip
        """The WebSocket handshake (to ``target``, else the dialect's URL) and the dialect's opening."""
        dialect = ctx.dialect
        path = target or dialect.connect_url(ctx.target.spec.ws_path, resume)
        if await self.request(conn, upgrade_request(ctx.target.host, ctx.target.port, path)) != 101:
            return False
        opening = b"".join(ws_frame(text.encode()) for text in dialect.opening(resume))
        return not opening or await conn.send(opening)

    def answered(self, answer: Answer, prefix: str = "") -> None:
        self.answers[prefix + answer.label()] += 1


def with_query(path: str, query: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}{query}"


def resume_params(dialect: Dialect, path: str) -> tuple[str | None, str | None]:
    """The URL query parameters the dialect resumes with: (epoch's name, since's name), or Nones."""
    if not dialect.resumes:
        return None, None
    query = parse_qsl(urlsplit(dialect.connect_url(path, Position(EPOCH_MARK, SINCE_MARK))).query)
    epoch = next((k for k, v in query if v == EPOCH_MARK), None)
    since = next((k for k, v in query if v == str(SINCE_MARK)), None)
    return epoch, since


async def stream_position(fault: HostileFault, ctx: FaultContext) -> Ready | None:
    """Connect as a well-behaved client and read where the stream is (the dialect's ready frame)."""
    conn = await fault.connect(ctx)
    if conn is None:
        return None
    try:
        if not await fault.upgrade(ctx, conn):
            return None
        found: list[Ready] = []

        def is_ready(text: str) -> bool:
            found.extend(r for r in ctx.dialect.parse(text) if isinstance(r, Ready))
            return bool(found)

        await conn.collect(2.0, max_frames=50, keep_texts=0, until=is_ready)
        return found[0] if found else None
    finally:
        await fault.drop(conn)


def notice(dialect: Dialect, text: str) -> str | None:
    """The type of the resume notice (resumed, resync_required, error) ``text`` holds, if any."""
    return next((r.type for r in dialect.parse(text) if isinstance(r, Notice)), None)


class DeepJson(HostileFault):
    """Text frames holding JSON nested ``depth`` deep (a bare array, and one inside a ping request)."""

    type = "deep_json"
    defaults: ClassVar[dict[str, Any]] = {"depth": 1000, "messages": 6, "connections": 2, "interval": 0.05,
                                          "duration": 5.0}  # fmt: skip
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"depth": (1, 100_000), "messages": (1, 1000),
        "connections": (1, 100), "interval": (0, 10), "duration": (0.1, 120)}  # fmt: skip

    async def attack(self, ctx: FaultContext) -> None:
        depth = self.params["depth"]
        nested = "[" * depth + "]" * depth
        bodies = [nested, '{"type":"ping","t":' + nested + "}"]
        for _ in range(self.params["connections"]):
            conn = await self.connect(ctx)
            if conn is None:
                continue
            if await self.upgrade(ctx, conn):
                for i in range(self.params["messages"]):
                    if not await conn.send(ws_frame(bodies[i % 2].encode())):
                        break
                    self.counts["messages"] += 1
                    await asyncio.sleep(self.params["interval"])
                await conn.collect(1.0)
            self.answered(conn.answer)
            await self.drop(conn)


class BadQuery(HostileFault):
    """Upgrade requests whose resume parameters hold nonsense (``values``, else ``BAD_SINCE``; and
    ``BAD_EPOCH`` for the epoch), with the stream's real epoch so the server reads the position."""

    type = "bad_query"
    defaults: ClassVar[dict[str, Any]] = {"rounds": 2, "values": [], "interval": 0.02, "duration": 8.0}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"rounds": (1, 100), "interval": (0, 10),
                                                        "duration": (0.1, 120)}  # fmt: skip

    @classmethod
    def problems(cls, spec: FaultSpec) -> list[tuple[str, str]]:
        problems = super().problems(spec)
        values = spec.params.get("values")
        if isinstance(values, list) and not all(isinstance(v, str) for v in values):
            problems.append(("params.values", f"must be a list of strings (sent as written), got {values!r}"))
        return problems

    async def attack(self, ctx: FaultContext) -> None:
        epoch_key, since_key = resume_params(ctx.dialect, ctx.target.spec.ws_path)
        if since_key is None:
            how = "does not resume" if not ctx.dialect.resumes else "resumes without URL query parameters"
            self.skipped = f"the target's dialect ({ctx.dialect.name}) {how}: no resume parameter to attack"
            return
        ready = await stream_position(self, ctx)
        epoch = str(ready.epoch) if ready is not None and ready.epoch is not None else "0"
        queries = [f"{since_key}={v}" for v in (self.params["values"] or BAD_SINCE)]
        if epoch_key is not None:
            queries = [f"{epoch_key}={epoch}&{q}" for q in queries]
            queries += [f"{epoch_key}={bad}&{since_key}=1" for bad in BAD_EPOCH]
        outcomes: dict[str, str] = {}
        for _ in range(self.params["rounds"]):
            for query in queries:
                answer = await self.attempt(ctx, query)
                outcomes.setdefault(query[:60], answer)
                await asyncio.sleep(self.params["interval"])
        self.extra["outcomes"] = outcomes

    async def attempt(self, ctx: FaultContext, query: str) -> str:
        conn = await self.connect(ctx)
        if conn is None:
            return "refused"
        path = with_query(ctx.dialect.connect_url(ctx.target.spec.ws_path, None), query)
        seen: list[str] = []

        def noticed(text: str) -> bool:
            seen.extend(n for n in [notice(ctx.dialect, text)] if n is not None)
            return bool(seen)

        if await self.upgrade(ctx, conn, target=path):
            await conn.collect(0.5, until=noticed)
        label = " ".join([conn.answer.label(), *seen[:1]])
        self.answers[label] += 1
        await self.drop(conn)
        return label


class OversizedHeaders(HostileFault):
    """Upgrade requests with a request line, one header, or a crowd of headers past ``size`` bytes,
    ``rate`` a second (each on a new connection), at most ``requests`` of them."""

    type = "oversized_headers"
    defaults: ClassVar[dict[str, Any]] = {"size": 9000, "rate": 50.0, "requests": 300, "duration": 4.0}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"size": (1, 1_000_000), "rate": (0.1, 1000),
        "requests": (1, 100_000), "duration": (0.1, 120)}  # fmt: skip
    KINDS = ("request_line", "header", "many_headers")

    def build(self, ctx: FaultContext, kind: str) -> bytes:
        size, host, port = self.params["size"], ctx.target.host, ctx.target.port
        path = ctx.dialect.connect_url(ctx.target.spec.ws_path, None)
        if kind == "request_line":
            return upgrade_request(host, port, with_query(path, "pad=" + "a" * size))
        if kind == "header":
            return upgrade_request(host, port, path, [("X-Pad", "a" * size)])
        return upgrade_request(host, port, path, [(f"X-Pad-{i}", "a" * 32) for i in range(size // 40 + 1)])

    async def attack(self, ctx: FaultContext) -> None:
        loop = asyncio.get_running_loop()
        start, period = loop.time(), 1.0 / self.params["rate"]
        for i in range(self.params["requests"]):
            kind = self.KINDS[i % len(self.KINDS)]
            conn = await self.connect(ctx)
            if conn is not None:
                await self.request(conn, self.build(ctx, kind))
                self.answered(conn.answer, f"{kind}: ")
                await self.drop(conn)
            await asyncio.sleep(max(0.0, start + (i + 1) * period - loop.time()))


class PingFloodVanish(HostileFault):
    """One client sends ``pings`` WebSocket pings without reading a single pong (a small receive
    buffer, so the pongs back up into the server), then resets the connection."""

    type = "ping_flood_vanish"
    defaults: ClassVar[dict[str, Any]] = {"pings": 20000, "payload": 16, "chunk": 500, "rcvbuf": 4096,
                                          "duration": 6.0}  # fmt: skip
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"pings": (1, 1_000_000), "payload": (0, 125),
        "chunk": (1, 10_000), "rcvbuf": (1024, 1 << 24), "duration": (0.1, 120)}  # fmt: skip

    async def attack(self, ctx: FaultContext) -> None:
        conn = await self.connect(ctx, rcvbuf=self.params["rcvbuf"])
        if conn is None:
            return
        if not await self.upgrade(ctx, conn):
            self.answered(conn.answer)
            return
        conn.stop_reading()
        payload, left = b"p" * self.params["payload"], self.params["pings"]
        try:
            while left > 0:
                n = min(left, self.params["chunk"])
                if not await conn.send(b"".join(ws_frame(payload, OP_PING) for _ in range(n))):
                    break
                self.counts["pings"] += n
                left -= n
                await asyncio.sleep(0)
        finally:
            self.extra["unread_bytes"] = conn.unread()  # pongs (and broadcasts) the client never read
            self.extra["server_end"] = conn.peer_end() or "open"
            self.answered(conn.answer, "before the reset: ")
            await self.drop(conn, rst=True)
        self.counts["resets"] += 1

    def more(self) -> str:
        return f"; {self.counts['pings']} pings, {self.extra.get('unread_bytes', 0)} bytes unread at the reset"


class UnmaskedFrames(HostileFault):
    """After a proper handshake, a frame without the mask RFC 6455 requires of every client frame
    (text, binary, ping, close in turn), one per connection; a server must close with 1002."""

    type = "unmasked_frames"
    defaults: ClassVar[dict[str, Any]] = {"connections": 8, "duration": 6.0}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"connections": (1, 1000), "duration": (0.1, 120)}
    KINDS: ClassVar[tuple[tuple[str, int, bytes], ...]] = (
        ("text", OP_TEXT, b'{"type":"ping"}'), ("binary", OP_BINARY, b"\x00\x01"), ("ping", OP_PING, b"hi"),
        ("close", OP_CLOSE, b"\x03\xe8"))  # fmt: skip

    async def attack(self, ctx: FaultContext) -> None:
        for i in range(self.params["connections"]):
            name, opcode, payload = self.KINDS[i % len(self.KINDS)]
            conn = await self.connect(ctx)
            if conn is None:
                continue
            if await self.upgrade(ctx, conn) and await conn.send(bytes([0x80 | opcode, len(payload)]) + payload):
                self.counts["frames"] += 1
                await conn.collect(0.5, max_frames=200)
            self.answered(conn.answer, f"{name}: ")
            await self.drop(conn)


class Slowloris(HostileFault):
    """``connections`` requests sent a header line at a time, every ``interval`` s, never finished,
    held open for the whole ``duration``."""

    type = "slowloris"
    defaults: ClassVar[dict[str, Any]] = {"connections": 50, "interval": 1.0, "duration": 4.0}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"connections": (1, 5000), "interval": (0.05, 60),
                                                        "duration": (0.1, 300)}  # fmt: skip

    def __init__(self, spec: FaultSpec) -> None:
        super().__init__(spec)
        self.held: list[RawConn] = []
        self.started = 0.0
        self.first_close: float | None = None

    async def attack(self, ctx: FaultContext) -> None:
        self.started = time.monotonic()
        path = ctx.dialect.connect_url(ctx.target.spec.ws_path, None)
        start = f"GET {path} HTTP/1.1\r\nHost: {ctx.target.host}:{ctx.target.port}\r\n".encode()
        for _ in range(self.params["connections"]):
            conn = await self.connect(ctx)
            if conn is not None and await conn.send(start):
                self.counts["requests"] += 1
                self.held.append(conn)
        for i in range(1_000_000):
            await asyncio.sleep(self.params["interval"])
            for conn in self.held:
                if conn.answer.end == "open" and not await conn.send(f"X-Slow-{i}: a\r\n".encode()):
                    self.first_close = self.first_close or time.monotonic() - self.started

    def summarize(self) -> None:
        ends = Counter(conn.peer_end() or conn.answer.end for conn in self.held)
        self.answers.update({f"at the end: {end}": n for end, n in ends.items()})
        self.extra["held_to_the_end"] = ends.get("open", 0)
        self.extra["first_close_s"] = round(self.first_close, 3) if self.first_close is not None else None
        for conn in self.held:
            self.counts["bytes_sent"] += conn.sent
            conn.sent = 0

    def more(self) -> str:
        return f"; {self.extra.get('held_to_the_end', 0)} of {len(self.held)} still open at the end"


class FdPressure(HostileFault):
    """Sockets opened on the target one after another (each sends a keep-alive request to its health
    path, or the WebSocket path, and reads the answer's head) until the server stops answering three
    in a row or ``cap`` are open; held for ``hold`` s, then closed. A target started with a lower
    ``nofile`` (a target param) runs out sooner."""

    type = "fd_pressure"
    defaults: ClassVar[dict[str, Any]] = {"cap": 1000, "hold": 1.0, "duration": 15.0}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"cap": (1, 100_000), "hold": (0, 60),
                                                        "duration": (0.1, 300)}  # fmt: skip

    async def attack(self, ctx: FaultContext) -> None:
        soft, cap = resource.getrlimit(resource.RLIMIT_NOFILE)[0], self.params["cap"]
        if soft != resource.RLIM_INFINITY:
            cap = min(cap, max(1, soft - FD_MARGIN))
        self.extra["cap"] = cap
        path = ctx.target.spec.ready.http or ctx.target.spec.ws_path
        request = f"GET {path} HTTP/1.1\r\nHost: {ctx.target.host}:{ctx.target.port}\r\n\r\n".encode()
        held = misses = self.extra["held"] = 0
        while held < cap and misses < 3:
            conn = await self.connect(ctx)
            status = await self.request(conn, request) if conn is not None else None
            if status is None:
                misses += 1
                self.extra.setdefault("first_refused_at", held)
                if conn is not None:
                    self.answered(conn.answer)
                    await self.drop(conn)
                continue
            held, misses = held + 1, 0
            self.extra["held"] = held
            self.answers[str(status)] += 1
        self.stopped_by = "the cap" if held >= cap else "three refusals in a row"
        await asyncio.sleep(self.params["hold"])
        for conn in list(self.conns):
            await self.drop(conn)

    def more(self) -> str:
        return f"; held {self.extra.get('held', 0)} open"


class ResumeAmplification(HostileFault):
    """Resumes from as far back as the server will replay (``since`` 0, halved toward the head while
    the server answers resync), ``resumes`` times, ``concurrency`` at once: each reads what the server
    replays for ``read_s`` s and leaves. ``amplification`` is bytes received over bytes sent."""

    type = "resume_amplification"
    defaults: ClassVar[dict[str, Any]] = {"resumes": 200, "concurrency": 8, "read_s": 0.5, "duration": 6.0}
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"resumes": (1, 100_000), "concurrency": (1, 200),
        "read_s": (0.05, 10), "duration": (0.1, 120)}  # fmt: skip

    async def attack(self, ctx: FaultContext) -> None:
        if not ctx.dialect.resumes:
            self.skipped = f"the target's dialect ({ctx.dialect.name}) does not resume"
            return
        ready = await stream_position(self, ctx)
        if ready is None or ready.seq is None:
            self.skipped = "the target announced no stream position to resume from"
            return
        since = await self.furthest(ctx, ready)
        self.extra["since"], self.extra["head_seq"] = since, ready.seq
        position = Position(ready.epoch, since)
        queue = list(range(self.params["resumes"]))
        await asyncio.gather(*(self.worker(ctx, position, queue) for _ in range(self.params["concurrency"])))

    async def furthest(self, ctx: FaultContext, ready: Ready) -> int:
        since = 0
        for _ in range(8):
            notices = await self.resume(ctx, Position(ready.epoch, since))
            if RESUMED in notices or since >= ready.seq:
                return since
            since = ready.seq - (ready.seq - since) // 2
        return since

    async def worker(self, ctx: FaultContext, position: Position, queue: list[int]) -> None:
        while queue:
            queue.pop()
            await self.resume(ctx, position)

    async def resume(self, ctx: FaultContext, position: Position) -> set[str]:
        conn = await self.connect(ctx)
        if conn is None:
            return set()
        notices: set[str] = set()
        if await self.upgrade(ctx, conn, resume=position):
            answer = await conn.collect(self.params["read_s"], max_frames=5000, keep_texts=4)
            notices = {r.type for t in answer.texts for r in ctx.dialect.parse(t) if isinstance(r, Notice)}
            self.counts["frames_received"] += answer.frames
            self.counts["bytes_received"] += conn.received
        self.answered(conn.answer, next((f"{n}: " for n in (RESUMED, RESYNC) if n in notices), ""))
        await self.drop(conn)
        return notices

    def more(self) -> str:
        sent = self.counts["bytes_sent"] or 1
        self.extra["amplification"] = round(self.counts["bytes_received"] / sent, 1)
        return f"; {self.counts['bytes_received']} bytes replayed (x{self.extra['amplification']} what was sent)"
