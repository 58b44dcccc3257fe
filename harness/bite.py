"""Evidence that a fault took effect: a ``fault_bite`` record per fault (``fault``, ``type``,
``cohort``, ``bit``, ``how``, ``figures``, and for a send path that filled, ``full_t``), which the
checkers of the fault's cohort require before they judge it.

Two kinds of measurement. ``SendPathWatch`` samples the kernel's queues of the connections a
stuck or slow client holds (``harness.tcpqueues``) until the target's send path to each is full
(its send queue stops growing) or the target closed it, within a ceiling. The other faults are
judged from what the History already shows: whether the victims were receiving when they were cut,
and whether the target still held a cut cohort while the feed ran.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.history import History
from harness.tcpqueues import TCP_STATES, TcpSocket, find, read_sockets, receive_queue

BITE = "fault_bite"
SAMPLE_S = 0.2
PLATEAU_S = 0.6  # a send queue that has not grown for this long is full
RECENT_S = 1.0  # a client that got a batch this recently was receiving
SLOW_BYTES = 16 * 1024  # a send queue this deep toward one link is a backlog
DEEP_FOR_S = 1.0  # ... when it stays that deep this long (a healthy one drains within it, even on a busy machine)
SLOW_LAG_S = 1.0  # a delivery lag that grew this much is a backlog
# A send queue this deep is data held back, not a FIN or a close frame still unacknowledged.
HELD_BYTES = 1024


@dataclass(frozen=True)
class Subject:
    """The fault a bite record speaks for."""

    fault: str
    type: str
    cohort: str | None

    def record(self, history: History, bit: bool, how: str, **figures: Any) -> dict[str, Any]:
        extra = {"full_t": figures.pop("full_t")} if "full_t" in figures else {}
        return history.record(BITE, fault=self.fault, type=self.type, cohort=self.cohort, bit=bit, how=how,
                              figures=figures, **extra)  # fmt: skip


# --- send paths ---------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    rx: int | None  # the victim's unread bytes, when the harness holds its socket
    tx: int | None  # the target's send queue toward the victim, when /proc shows it
    open: bool


@dataclass
class Link:
    """One connection from the target (``server_port``) to a victim (``client_port``)."""

    name: str
    server_port: int
    client_port: int | None
    sock: socket.socket | None = None
    samples: list[Sample] = field(default_factory=list)
    rcvbuf: int | None = None
    full_t: float | None = None
    closed_t: float | None = None
    # How the target's side ended while the harness still held the victim's: "gone" (its socket left
    # the table: aborted or fully closed) or the TCP state it left ESTABLISHED for (a FIN queued
    # behind unread data shows as FIN_WAIT1 on the target's side long before the victim can see it).
    server_end: str | None = None

    def observe(self, table: list[TcpSocket] | None, t: float, is_open: bool) -> None:
        rx = None
        if self.sock is not None and is_open:
            try:
                rx, self.rcvbuf = receive_queue(self.sock)
            except OSError:
                rx = None
        tx, server_open = self._server_side(table)
        sample = Sample(t, rx, tx, is_open and server_open)
        self.samples.append(sample)
        if not sample.open and self.closed_t is None:
            self.closed_t = t
            if is_open and not server_open:
                self.server_end = self._end_state(table)
        if self.full_t is None and self.closed_t is None and self.plateau():
            self.full_t = t

    def _server_side(self, table: list[TcpSocket] | None) -> tuple[int | None, bool]:
        if table is None or self.client_port is None:
            return None, True
        mine = find(table, local_port=self.server_port, remote_port=self.client_port)
        if not mine:
            # Gone from the table: closed, unless it was never seen (another network namespace).
            return None, not any(s.tx is not None for s in self.samples)
        return mine[0].tx_queue, mine[0].established

    def _end_state(self, table: list[TcpSocket] | None) -> str:
        mine = find(table or [], local_port=self.server_port, remote_port=self.client_port)
        return TCP_STATES.get(mine[0].state, str(mine[0].state)) if mine else "gone"

    def plateau(self) -> bool:
        """Data held on both sides (as far as seen), neither queue grown for ``PLATEAU_S``."""
        last = self.samples[-1]
        window = [s for s in self.samples if s.t >= last.t - PLATEAU_S]
        if last.t - self.samples[0].t < PLATEAU_S or (last.rx is None and last.tx is None):
            return False
        return _flat([s.rx for s in window]) and _flat([s.tx for s in window])

    def grew(self) -> bool:
        """The target held back data for this victim: its send queue was seen at ``HELD_BYTES`` or more
        (or, with no view of the target's side, the victim's receive queue filled)."""
        if any((s.tx or 0) >= HELD_BYTES for s in self.samples):
            return True
        return all(s.tx is None for s in self.samples) and self.full_t is not None

    @property
    def done(self) -> bool:
        return self.full_t is not None or self.closed_t is not None

    def figures(self) -> dict[str, Any]:
        txs = [s.tx for s in self.samples if s.tx is not None]
        rxs = [s.rx for s in self.samples if s.rx is not None]
        out: dict[str, Any] = {"tx_max": max(txs, default=None), "rx_max": max(rxs, default=None)}
        if self.rcvbuf is not None:
            out["rcvbuf"] = self.rcvbuf
        return {f"{k}[{self.name}]": v for k, v in out.items() if v is not None}


def _flat(values: list[int | None]) -> bool:
    seen = [v for v in values if v is not None]
    if len(seen) != len(values):
        return not seen  # unobserved throughout is no objection; a gap is
    return bool(seen) and seen[0] > 0 and max(seen) == min(seen)


class SendPathWatch:
    """Samples ``links`` every ``SAMPLE_S`` until each send path is full or closed (or ``ceiling``
    seconds passed), records the bite, then holds until every link closed or ``hold`` seconds after
    the last one filled."""

    # Behind a proxy a path that backed up but never filled may be the proxy's buffers taking the data
    # (the target's sends never blocked: eviction is not due); on a direct connection whose victim's
    # receive queue is full, a send queue still growing is the target buffering without bound.
    behind_proxy = False

    def __init__(self, subject: Subject, history: History, links: list[Link], ceiling: float, hold: float) -> None:
        self.subject = subject
        self.history = history
        self.links = links
        self.ceiling = ceiling
        self.hold = hold
        self.started = history.now()
        self.recorded: dict[str, Any] | None = None

    def is_open(self, link: Link) -> bool:
        """Whether the harness still holds the victim's side (subclasses know their clients)."""
        return True

    def ports(self) -> set[int]:
        return {link.client_port for link in self.links if link.client_port is not None}

    def sample(self, table: list[TcpSocket] | None) -> None:
        now = self.history.now()
        for link in self.links:
            ended = link.server_end
            link.observe(table, now, self.is_open(link))
            if ended is None and link.server_end is not None and link.client_port is not None:
                self.history.record("server_close", client=link.name, fault=self.subject.fault,
                                    port=link.client_port, state=link.server_end)  # fmt: skip

    async def run(self) -> None:
        while not all(link.done for link in self.links) and self.history.now() - self.started < self.ceiling:
            self.sample(read_sockets(self.ports()))
            await asyncio.sleep(SAMPLE_S)
        self.finish("ceiling" if not all(link.done for link in self.links) else "target closed the connection")
        until = self.history.now() + self.hold
        while self.history.now() < until and not all(link.closed_t is not None for link in self.links):
            await asyncio.sleep(SAMPLE_S)
            self.sample(read_sockets(self.ports()))

    def finish(self, ended: str) -> None:
        """Record the bite once: when the watch ends, or earlier when the fault is healed."""
        if self.recorded is not None:
            return
        figures = self.figures()
        bitten = [link for link in self.links if link.grew()]
        full = [t for link in bitten if (t := link.full_t or link.closed_t) is not None]
        if self.links and len(bitten) == len(self.links) and len(full) == len(bitten):
            how = self.describe_full()
            self.recorded = self.subject.record(self.history, True, how, full_t=max(full),
                                                full_after_s=round(max(full) - self.started, 3), **figures)  # fmt: skip
        elif bitten:
            how = f"{len(bitten)} of {len(self.links)} send path(s) backed up, not all full before the {ended}"
            extra = {"filled": False} if self.behind_proxy else {}
            self.recorded = self.subject.record(self.history, True, how, **extra, **figures)
        else:
            self.recorded = self.subject.record(self.history, False, self.why_not(ended), **figures)

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {"links": len(self.links), "watched_s": round(self.history.now() - self.started, 3)}
        for link in self.links:
            out.update(link.figures())
        return out

    def describe_full(self) -> str:
        closed = sum(1 for link in self.links if link.full_t is None)
        return (f"the target's send path to {len(self.links)} victim(s) filled (send queue stopped growing, "
                f"victim's receive queue full); {closed} closed by the target once backed up")  # fmt: skip

    def why_not(self, ended: str) -> str:
        if not self.links:
            return "no victim connection to watch"
        if all(s.rx is None and s.tx is None for link in self.links for s in link.samples):
            return "cannot be observed: neither the victim's socket nor the target's queues (/proc/net/tcp) showed"
        return f"the target never held data back for the victim(s) before the {ended}"


class StuckWatch(SendPathWatch):
    """The connections of stuck clients: the harness holds the victim's socket."""

    def __init__(self, subject: Subject, history: History, clients: Iterable[Any], server_port: int,
                 ceiling: float, hold: float) -> None:  # fmt: skip
        self.clients = {c.name: c for c in clients}
        links = [Link(c.name, server_port, c.sock.getsockname()[1], c.sock) for c in clients if c.sock is not None]
        super().__init__(subject, history, links, ceiling, hold)

    def is_open(self, link: Link) -> bool:
        return bool(self.clients[link.name].connected)


class SlowWatch(SendPathWatch):
    """The connection of a slow link behind a proxy. The proxy's upstream port is not known, so the
    link is the target's connection (among those open when the fault started) whose send queue stays
    at ``SLOW_BYTES`` or more for ``DEEP_FOR_S``: on loopback only a throttled link's queue stays deep;
    a healthy client's queue on a saturated machine passes the mark for a moment and drains. The
    victim's own delivery lag (its batches' receipt minus ``sent_at``) is the second witness."""

    behind_proxy = True

    def __init__(self, subject: Subject, history: History, clients: Iterable[Any], server_port: int,
                 ceiling: float, hold: float) -> None:  # fmt: skip
        self.victims = list(clients)
        self.server_port = server_port
        table = read_sockets([server_port])
        self.candidates = {s.remote[1] for s in find(table or [], local_port=server_port) if s.established}
        self.deep_since: dict[int, float] = {}  # candidate port -> since when its send queue stayed deep
        # One victim: the link is that client's, so the target closing it is that client's eviction.
        name = self.victims[0].name if len(self.victims) == 1 else "slow"
        super().__init__(subject, history, [Link(name, server_port, None)], ceiling, hold)

    def is_open(self, link: Link) -> bool:
        # Pages of a browser cohort are no probe clients: then only the target's socket table tells.
        return any(c.connected for c in self.victims) if self.victims else True

    def sample(self, table: list[TcpSocket] | None) -> None:
        link = self.links[0]
        if link.client_port is None and table is not None:
            link.client_port = self.stayed_deep(table, self.history.now())
        super().sample(table)

    def stayed_deep(self, table: list[TcpSocket], now: float) -> int | None:
        """The candidate whose send queue has stayed at ``SLOW_BYTES`` or more the longest, once that is
        ``DEEP_FOR_S``; None before."""
        deep = {s.remote[1]: s.tx_queue for s in find(table, local_port=self.server_port)
                if s.remote[1] in self.candidates and s.tx_queue >= SLOW_BYTES}  # fmt: skip
        self.deep_since = {port: self.deep_since.get(port, now) for port in deep}
        settled = [port for port, since in self.deep_since.items() if now - since >= DEEP_FOR_S]
        return min(settled, key=lambda port: (self.deep_since[port], -deep[port]), default=None)

    def ports(self) -> set[int]:
        return {self.server_port}

    def describe_full(self) -> str:
        link = self.links[0]
        end = "stopped growing" if link.full_t is not None else "was closed by the target once backed up"
        return f"the target's send queue toward the slow link grew and {end}"

    def lag_growth(self) -> float:
        names = {c.name for c in self.victims}
        batches = [b for b in self.history.of("batch") if b["t"] >= self.started and b.get("client") in names]
        lags = [b["recv_at"] - b["sent_at"] for b in batches if b.get("sent_at") and b.get("recv_at")]
        return max(lags) - min(lags) if lags else 0.0

    def finish(self, ended: str) -> None:
        link = self.links[0]
        lag = self.lag_growth()
        if link.client_port is None and lag >= SLOW_LAG_S and link.closed_t is None and self.recorded is None:
            how = f"the victim's delivery lag grew by {lag:.2f}s (the target's side of the link was not identified)"
            self.recorded = self.subject.record(self.history, True, how, lag_growth_s=round(lag, 3), **self.figures())
        super().finish(ended)


# --- faults judged from the History -------------------------------------------------------------


def receiving(history: History, clients: Iterable[str], within: float = RECENT_S) -> dict[str, float]:
    """For each of ``clients`` that got a batch in the last ``within`` seconds: how long ago."""
    wanted, now, found = set(clients), history.now(), {}
    for record in reversed(history.records):
        if record["t"] < now - within:
            break
        if record["kind"] == "batch" and record.get("client") in wanted and record["client"] not in found:
            found[record["client"]] = round(now - record["t"], 3)
    return found


def record_receiving(subject: Subject, history: History, victims: list[str], what: str) -> None:
    """Bit when every victim was receiving at the moment of ``what``."""
    got = receiving(history, victims)
    figures = {"victims": len(victims), "receiving": len(got), "last_batch_max_s": max(got.values(), default=None)}
    if victims and len(got) == len(victims):
        how = f"all {len(victims)} victim(s) got a batch within {RECENT_S:g}s before {what}"
        subject.record(history, True, how, **figures)
    else:
        idle = sorted(set(victims) - set(got))
        how = (f"{len(idle)} of {len(victims)} victim(s) received nothing in the {RECENT_S:g}s before {what} "
               f"(first: {idle[0] if idle else 'none'}): nothing was being sent to them")  # fmt: skip
        subject.record(history, False, how, **figures)


Cut = tuple[float, float, list[str]]  # start, end, and the clients connected as it began


def record_cut(subject: Subject, history: History, windows: list[Cut]) -> None:
    """A cut bit when its victims were receiving as it began and events were fed inside it: the target
    had data for live connections and wrote it into the cut until it noticed. (The timeout toxic
    discards what it reads, so no socket queue shows it; a registry count cannot say whose entries
    it holds when other clients come and go.)"""
    feeds = [r["t"] for r in history.of("feed")]
    hit = [w for w in windows if _cut_bit(history, w, feeds)]
    victims = max((len(w[2]) for w in windows), default=0)
    figures = {"cuts": len(windows), "cuts_with_data": len(hit), "victims": victims}
    if hit:
        how = f"{len(hit)} of {len(windows)} cut(s): its clients were receiving as it began and events were fed in it"
        subject.record(history, True, how, **figures)
    elif not any(w[2] for w in windows):
        subject.record(history, False, "the cut had no connected client", **figures)
    else:
        how = "no cut began while its clients were receiving with events fed inside it: nothing was sent into it"
        subject.record(history, False, how, **figures)


def _cut_bit(history: History, window: Cut, feeds: list[float]) -> bool:
    start, end, victims = window
    names = set(victims)
    live = {r["client"] for r in history.of("batch")
            if r.get("client") in names and start - RECENT_S <= r["t"] <= start}  # fmt: skip
    live |= _pages_receiving(history, names - live, start)
    return bool(victims) and live == names and any(start <= f <= end for f in feeds)


def _pages_receiving(history: History, names: set[str], start: float) -> set[str]:
    """Dashboard pages record no batches, only samples of their state: a page was receiving when its
    last seq grew in the samples of the ``2 * RECENT_S`` before ``start`` (they are polled, not pushed)."""
    seqs: dict[str, list[int]] = {}
    for r in history.of("browser_state"):
        if r.get("client") in names and start - 2 * RECENT_S <= r["t"] <= start and r.get("lastSeq") is not None:
            seqs.setdefault(r["client"], []).append(int(r["lastSeq"]))
    return {name for name, seen in seqs.items() if max(seen) > min(seen)}


def record_cut_off(subject: Subject, history: History, victims: list[str], started: float,
                   receiving_at_cut: dict[str, float], *, inside_frame: bool = False) -> None:  # fmt: skip
    """Mid-send cuts bit when the victims were receiving when the cut was armed and each connection
    then ended without a close frame; with ``inside_frame`` (a cut after a byte count), at least one
    connection must also have ended inside a frame (the clients follow frame boundaries). Not every
    one: a cut after a fixed count may land between two frames by chance."""
    names = set(victims)
    closes = [r for r in history.of("close")
              if r["t"] >= started and r.get("client") in names and r.get("by") in ("error", "server")]  # fmt: skip
    broken = {r["client"] for r in closes}
    mid_frame = {r["client"] for r in closes if r.get("inside_frame")}
    bitten = broken & set(receiving_at_cut)
    figures = {"victims": len(victims), "receiving_at_cut": len(receiving_at_cut), "cut_off": len(broken),
               "cut_inside_a_frame": len(mid_frame)}  # fmt: skip
    if not victims or len(bitten) < len(victims):
        how = (f"{len(victims) - len(bitten)} of {len(victims)} victim connection(s) not cut off while receiving "
               f"({len(receiving_at_cut)} receiving when the cut was armed, {len(broken)} cut off)")  # fmt: skip
        subject.record(history, False, how, **figures)
    elif inside_frame and not mid_frame:
        unseen = sum(r.get("inside_frame") is None for r in closes)
        how = (f"all {len(victims)} victim connection(s) were cut between two frames, none inside one" if not unseen
               else f"none of the cuts was seen inside a frame ({unseen} connection(s) could not be followed)")
        subject.record(history, False, how, **figures)
    else:
        first = next((r["inside_frame"] for r in closes if r.get("inside_frame")), None)
        where = f", {len(mid_frame)} of them inside a frame (first: {_frame_part(first)})" if inside_frame else ""
        subject.record(history, True, f"all {len(victims)} victim connection(s) were cut while receiving{where}",
                       **figures)


def _frame_part(inside: list[int | None] | None) -> str:
    if not inside:
        return "?"
    got, length = inside
    return f"{got} of a frame's header bytes" if length is None else f"{got} of {length} bytes of a frame"
