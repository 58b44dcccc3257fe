"""Judges a chaos run from its History: one checker per guarantee the server must hold, each giving a Verdict.

A verdict's status is ``pass``, ``fail``, ``unreliable`` (the run could not measure it fairly; the
summary says why) or ``skipped`` (the target exposes nothing to judge it by). A check the scenario
asked for whose trigger never happened (no fault hit the cohort, the target was never stopped) fails
and names what was missing: a check that cannot see its trigger must not pass quietly.

Evidence items are small dicts naming the client, seq, event id, log line and time, the first
occurrence first. Times (``t``) are seconds since the run started, as in the History.
"""

from __future__ import annotations

import math
import re
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from itertools import pairwise
from typing import Any

from harness.history import History
from harness.load import check_load

Record = dict[str, Any]
Figures = dict[str, float | int]

PASS, FAIL, UNRELIABLE, SKIPPED = "pass", "fail", "unreliable", "skipped"
CPU_LIMIT_PERCENT = 85.0
# The clients report their backlog in bytes received but not yet processed. aiohttp's reader queues up
# to about 128 KiB before it stops reading the socket: past twice that, the client had fallen behind.
BACKLOG_LIMIT = 256 * 1024
MAX_EVIDENCE = 20
MAX_BLOCK_LINES = 40  # lines of a traceback shown after the line that starts it
TRACEBACK = "Traceback (most recent call last)"
# Target events that take the server away, and those that bring it back.
DOWN_EVENTS = frozenset({"killed", "stopping", "stopped", "exited", "paused"})
UP_EVENTS = frozenset({"ready", "resumed"})
GRACEFUL_EVENTS = frozenset({"stopping", "stopped"})
CONTINUATION_LEVELS = frozenset({"RAW"})  # what the target module gives lines that are not log records
CONNECTION_KINDS = frozenset({"connect", "connect_error", "init", "batch", "notice", "close", "client_fault"})


@dataclass
class Verdict:
    checker: str
    status: str  # "pass" | "fail" | "unreliable" | "skipped"
    summary: str
    evidence: list[dict[str, Any]] = field(default_factory=list)
    figures: Figures = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CohortInfo:
    name: str
    clients: int
    kind: str  # "probe" | "stuck" | "stuck_pong"


@dataclass(frozen=True)
class Window:
    """A stretch of the run, ``[start, end]``; ``event`` names what opened it."""

    start: float
    end: float
    event: str = ""

    def __contains__(self, t: float) -> bool:
        return self.start <= t <= self.end


@dataclass
class Connection:
    """One WebSocket connection of a client, as the client saw it: from its ``init`` to its ``close``."""

    init: Record | None
    batches: list[Record] = field(default_factory=list)
    notices: list[Record] = field(default_factory=list)
    close: Record | None = None

    @property
    def epoch(self) -> Any:
        return self.init.get("epoch") if self.init else None

    @property
    def init_seq(self) -> int | None:
        return self.init.get("seq") if self.init else None

    @property
    def start_t(self) -> float:
        first = self.init or (self.batches or self.notices)[0]
        return float(first["t"])

    @property
    def end_t(self) -> float:
        if self.close is not None:
            return float(self.close["t"])
        return max([self.start_t] + [float(r["t"]) for r in self.batches + self.notices])

    def notice(self, kind: str) -> Record | None:
        return next((n for n in self.notices if n.get("type") == kind), None)

    def is_replay(self, batch: Record) -> bool:
        """A batch the server replayed on resume: its seq is at or below the seq the init announced."""
        return self.init_seq is not None and batch.get("seq") is not None and batch["seq"] <= self.init_seq

    def last_seq(self) -> int | None:
        seqs = [b["seq"] for b in self.batches if b.get("seq") is not None]
        if self.init_seq is not None:
            seqs.append(self.init_seq)
        return max(seqs, default=None)


@dataclass
class CheckContext:
    history: History
    cohorts: dict[str, CohortInfo] = field(default_factory=dict)
    faulted: set[str] = field(default_factory=set)
    stored_ids: list[str] | None = None

    @cached_property
    def by_client(self) -> dict[str, list[Record]]:
        """Each client's own records, in History order."""
        out: dict[str, list[Record]] = {}
        for record in self.history.of(*CONNECTION_KINDS):
            out.setdefault(str(record.get("client")), []).append(record)
        return out

    @cached_property
    def cohort_of(self) -> dict[str, str]:
        return {client: c for client, records in self.by_client.items() if (c := _cohort_in(records)) is not None}

    def clients_of(self, cohort: str) -> list[str]:
        return [client for client, c in self.cohort_of.items() if c == cohort]

    @cached_property
    def intervals(self) -> dict[str, list[Window]]:
        """When the harness believed each client connected: from connect (or init) to close or connect_error.
        ``event`` is the kind of the record that ended it ("" while still open at the end)."""
        return {client: _intervals(records) for client, records in self.by_client.items()}

    def connected_at(self, client: str, t: float) -> bool:
        return any(t in w for w in self.intervals.get(client, []))

    def connections(self, client: str) -> list[Connection]:
        return split_connections(self.by_client.get(client, []))

    @cached_property
    def down_windows(self) -> list[Window]:
        return target_down_windows(self.history)

    @cached_property
    def saturation(self) -> str | None:
        """Why the harness's own measurements of latency cannot be trusted, or None."""
        return saturation_reason(self.history)

    @property
    def client_cpu_saturated(self) -> bool:
        return self.saturation is not None


# ---------------------------------------------------------------------------------------------
# Shared helpers


def latency_quantiles(values: Iterable[float]) -> dict[str, float | int]:
    """``count``, and nearest-rank ``p50``, ``p90``, ``p99`` and ``max`` of ``values`` (only ``count`` if empty)."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}
    out: dict[str, float | int] = {"count": len(ordered)}
    for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
        out[name] = ordered[max(0, math.ceil(q * len(ordered)) - 1)]
    out["max"] = ordered[-1]
    return out


def saturation_reason(
    history: History, cpu_limit: float = CPU_LIMIT_PERCENT, backlog_limit: int = BACKLOG_LIMIT
) -> str | None:
    """Says when the harness was the bottleneck: its CPU above ``cpu_limit`` % or a client receive backlog
    above ``backlog_limit`` bytes in any ``harness_cpu`` sample."""
    samples = list(history.of("harness_cpu"))
    reasons = []
    hot = [s for s in samples if (s.get("percent") or 0) > cpu_limit]
    if hot:
        peak = max(hot, key=lambda s: s["percent"])
        reasons.append(
            f"harness CPU above {cpu_limit:g}% in {len(hot)} of {len(samples)} samples "
            f"(peak {peak['percent']:.0f}% at t={peak['t']:.1f}s)"
        )
    deep = [s for s in samples if (s.get("backlog") or 0) > backlog_limit]
    if deep:
        peak = max(deep, key=lambda s: s["backlog"])
        reasons.append(
            f"client receive backlog above {backlog_limit} bytes (peak {peak['backlog']} at t={peak['t']:.1f}s)"
        )
    return "; ".join(reasons) or None


def target_down_windows(history: History) -> list[Window]:
    """Stretches when the target was away: from killed/stopping/stopped/exited/paused to the next
    ready/resumed (or the end of the run)."""
    windows: list[Window] = []
    opened: Record | None = None
    for record in history.of("target"):
        event = record.get("event")
        if event in DOWN_EVENTS and opened is None:
            opened = record
        elif event in UP_EVENTS and opened is not None:
            windows.append(Window(opened["t"], record["t"], opened["event"]))
            opened = None
    if opened is not None:
        windows.append(Window(opened["t"], math.inf, opened["event"]))
    return windows


def split_connections(records: Iterable[Record]) -> list[Connection]:
    """A client's records cut into connections: each ``init`` starts one, the next ``close`` ends it.
    Batches or notices outside any open connection start one without an init."""
    connections: list[Connection] = []
    current: Connection | None = None
    for record in records:
        kind = record["kind"]
        if kind == "init":
            current = Connection(init=record)
            connections.append(current)
        elif kind in ("batch", "notice"):
            if current is None or current.close is not None:
                current = Connection(init=None)
                connections.append(current)
            (current.batches if kind == "batch" else current.notices).append(record)
        elif kind == "close" and current is not None and current.close is None:
            current.close = record
    return connections


def hits(record: Record, cohort: str) -> bool:
    target = record.get("cohort")
    return cohort in target if isinstance(target, list | tuple | set) else target == cohort


def _cohort_in(records: list[Record]) -> str | None:
    return next((r["cohort"] for r in records if r.get("cohort") is not None), None)


def _intervals(records: list[Record]) -> list[Window]:
    windows: list[Window] = []
    start: float | None = None
    for record in records:
        kind = record["kind"]
        if kind in ("connect", "init") and start is None:
            start = record["t"]
        elif kind in ("close", "connect_error") and start is not None:
            windows.append(Window(start, record["t"], kind))
            start = None
    if start is not None:
        windows.append(Window(start, math.inf, ""))
    return windows


def _options(checker: str, given: dict[str, Any], defaults: dict[str, Any], required: tuple[str, ...] = ()) -> dict:
    unknown = sorted(set(given) - set(defaults) - set(required))
    if unknown:
        known = ", ".join(sorted([*defaults, *required])) or "none"
        raise ValueError(f"{checker}: unknown option(s) {', '.join(unknown)}; known: {known}")
    missing = [name for name in required if name not in given]
    if missing:
        raise ValueError(f"{checker}: missing required option(s) {', '.join(missing)}")
    return {**defaults, **given}


def _cap(items: list[dict[str, Any]], limit: int = MAX_EVIDENCE) -> list[dict[str, Any]]:
    return sorted(items, key=lambda e: e.get("t", math.inf))[:limit]


def _first(seq: Iterable[Record], kind: str, **match: Any) -> Record | None:
    return next((r for r in seq if r["kind"] == kind and all(r.get(k) == v for k, v in match.items())), None)


def _t(value: float) -> float:
    return round(value, 3)


# ---------------------------------------------------------------------------------------------
# 1. Safe send: no ERROR lines, no tracebacks


def check_no_error_logs(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """The target never logs at an error level nor prints a traceback.

    Options:
      levels: log levels that fail the check (default ["ERROR", "CRITICAL"], case-insensitive).
      allow: regular expressions; an offending line is forgiven when one matches it or the lines that
        continue it (the following records without a level, such as a traceback's frames).
      context: how many neighbouring log lines to show before and after each offence (default 2).
      max_evidence: how many offences to show (default 10).
    """
    opts = _options(
        "no_error_logs", options, {"levels": ["ERROR", "CRITICAL"], "allow": [], "context": 2, "max_evidence": 10}
    )
    logs = list(ctx.history.of("log"))
    levels = {str(level).upper() for level in opts["levels"]}
    allow = [re.compile(pattern) for pattern in opts["allow"]]
    offences, allowed = _log_offences(logs, levels, allow)
    figures: Figures = {
        "log_lines": len(logs),
        "offending": len(offences),
        "allowed": allowed,
        "tracebacks": sum(TRACEBACK in str(r.get("line", "")) for r in logs),
    }
    if not offences:
        note = f", {allowed} allowed by pattern" if allowed else ""
        return Verdict(
            "no_error_logs", PASS, f"no error lines or tracebacks in {len(logs)} log lines{note}", [], figures
        )
    evidence = [_log_evidence(logs, start, end, opts["context"]) for start, end in offences[: opts["max_evidence"]]]
    first = evidence[0]
    summary = (
        f"{len(offences)} error line(s) or traceback(s) in the target's log; first at line "
        f"{first['lineno']}: {first['line'][:160]}"
    )
    return Verdict("no_error_logs", FAIL, summary, evidence, figures)


def _offending(record: Record, levels: set[str]) -> bool:
    return str(record.get("level") or "").upper() in levels or TRACEBACK in str(record.get("line", ""))


def _block_end(logs: list[Record], start: int, limit: int = 200) -> int:
    """Index of the last line continuing ``logs[start]``: the following lines that are not log records
    (no level, or the target's RAW), such as a traceback's frames."""
    end = start
    while end + 1 < len(logs) and end - start < limit and _continues(logs[end + 1]):
        end += 1
    return end


def _continues(record: Record) -> bool:
    level = record.get("level")
    return not level or str(level).upper() in CONTINUATION_LEVELS


def _log_offences(logs: list[Record], levels: set[str], allow: list[re.Pattern[str]]) -> tuple[list[tuple], int]:
    offences: list[tuple[int, int]] = []
    allowed = 0
    i = 0
    while i < len(logs):
        if _offending(logs[i], levels):
            end = _block_end(logs, i)
            text = "\n".join(str(r.get("line", "")) for r in logs[i : end + 1])
            if any(p.search(text) for p in allow):
                allowed += 1
            else:
                offences.append((i, end))
            i = end
        i += 1
    return offences, allowed


def _log_evidence(logs: list[Record], start: int, end: int, context: int) -> dict[str, Any]:
    def lines(records: list[Record]) -> list[dict[str, Any]]:
        return [{"lineno": r.get("lineno"), "line": r.get("line")} for r in records]

    record = logs[start]
    return {
        "lineno": record.get("lineno"),
        "t": record["t"],
        "level": record.get("level"),
        "line": str(record.get("line", "")),
        "before": lines(logs[max(0, start - context) : start]),
        "after": lines(logs[start + 1 : end + 1 + context][:MAX_BLOCK_LINES]),
    }


# ---------------------------------------------------------------------------------------------
# 2. Broadcast isolation: every healthy client gets every broadcast, once, in order, in time


@dataclass
class ClientDelivery:
    """What one client's batches show: problems as evidence items, and its latencies."""

    client: str
    batches: int = 0
    lost: list[int] = field(default_factory=list)
    duplicated: list[int] = field(default_factory=list)
    reordered: list[int] = field(default_factory=list)
    duplicated_ids: list[str] = field(default_factory=list)
    missing_ids: list[str] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    received: set[str] = field(default_factory=set)

    def counts(self) -> dict[str, int]:
        return {
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "reordered": len(self.reordered),
            "duplicated_ids": len(self.duplicated_ids),
            "missing_ids": len(self.missing_ids),
        }


def check_delivery(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """Every healthy client receives every broadcast exactly once, in order, within a latency bound.

    Per client, from its batches: lost seqs (gaps within one connection, which expects init.seq + 1
    next), duplicated seqs, reordered seqs, event ids received twice; and end to end, every event id fed
    after the client's first init must reach it (except what a resync_required or a new epoch excuses,
    and what was fed after a close the harness or a target stop caused). A client with no batches while
    events were fed fails. Latency is recv_at - sent_at of live batches (replays excluded), in ms.

    Options:
      cohorts: the cohorts to check (default: every probe cohort that no fault hit).
      latency_p50_ms, latency_p99_ms: bounds on those quantiles (default None: reported, not judged).
      e2e_p50_ms, e2e_p99_ms: bounds on end-to-end latency, from the feed's write of an event to its
        receipt (it includes the target's own ingest and batching delays, and any stall before a broadcast).
      settle_s: how long before a break an event may still be in flight and excused with it (default 1.0).
      cpu_limit_percent, backlog_limit: when the harness itself was saturated: its CPU above this percent
        (default 85) or one client's unprocessed bytes above this (default 256 KiB) in a ``harness_cpu``
        record. Then the latency part is "unreliable" instead of pass or fail (loss, duplicates and
        reorders still fail).
    """
    opts = _options(
        "delivery",
        options,
        {
            "cohorts": None,
            "latency_p50_ms": None,
            "latency_p99_ms": None,
            "e2e_p50_ms": None,
            "e2e_p99_ms": None,
            "settle_s": 1.0,
            "cpu_limit_percent": CPU_LIMIT_PERCENT,
            "backlog_limit": BACKLOG_LIMIT,
        },
    )
    cohorts = opts["cohorts"] or sorted(n for n, c in ctx.cohorts.items() if c.kind == "probe" and n not in ctx.faulted)
    if not cohorts:
        return Verdict("delivery", SKIPPED, "no healthy probe cohort to check: every probe cohort was faulted")
    fed = list(ctx.history.of("feed"))
    evidence = _cohort_size_evidence(ctx, cohorts)
    results = [_client_delivery(ctx, c, fed, opts["settle_s"]) for cohort in cohorts for c in ctx.clients_of(cohort)]
    for result in results:
        evidence.extend(result.evidence)
    figures = _delivery_figures(results, fed)
    latency = latency_quantiles(ms for r in results for ms in r.latencies_ms)
    figures.update({f"latency_{k}_ms" if k != "count" else "latency_samples": round(v, 3) for k, v in latency.items()})
    e2e = latency_quantiles(_end_to_end_ms(ctx, cohorts, fed))
    figures.update({f"e2e_{k}_ms" if k != "count" else "e2e_samples": round(v, 3) for k, v in e2e.items()})
    over = _e2e_breaches(opts, e2e)
    if over and not evidence and not saturation_reason(ctx.history, opts["cpu_limit_percent"], opts["backlog_limit"]):
        scope = f"{figures['clients']} client(s) of {', '.join(cohorts)}"
        summary = f"{scope}: end-to-end delivery latency over its bound: {_describe(over[0])}"
        return Verdict("delivery", FAIL, summary, over, figures)
    return _delivery_verdict(ctx, opts, cohorts, evidence, figures, latency, results)


def _end_to_end_ms(ctx: CheckContext, cohorts: list[str], fed: list[Record]) -> list[float]:
    """From the moment the harness fed each event to the moment a client received it (live batches
    only). Unlike recv_at - sent_at, this also counts time the event waited inside the server before
    it was broadcast, which is where a stalled broadcaster shows."""
    fed_at = {event_id: rec["w"] for rec in fed for event_id in rec.get("ids") or []}
    values = []
    for cohort in cohorts:
        for client in ctx.clients_of(cohort):
            for conn in ctx.connections(client):
                for batch in conn.batches:
                    if conn.is_replay(batch) or batch.get("recv_at") is None:
                        continue
                    values += [(batch["recv_at"] - fed_at[i]) * 1000.0 for i in batch.get("ids") or [] if i in fed_at]
    return values


def _e2e_breaches(opts: dict[str, Any], e2e: dict[str, float | int]) -> list[dict[str, Any]]:
    breaches = []
    for quantile in ("p50", "p99"):
        limit = opts[f"e2e_{quantile}_ms"]
        if limit is not None and e2e["count"] and e2e[quantile] > limit:
            breaches.append({"problem": f"end-to-end latency {quantile} over bound",
                             "measured_ms": round(e2e[quantile], 3), "limit_ms": limit})  # fmt: skip
    return breaches


def _cohort_size_evidence(ctx: CheckContext, cohorts: list[str]) -> list[dict[str, Any]]:
    evidence = []
    for cohort in cohorts:
        seen = len(ctx.clients_of(cohort))
        expected = ctx.cohorts[cohort].clients if cohort in ctx.cohorts else None
        if seen == 0 or (expected is not None and seen < expected):
            evidence.append(
                {
                    "cohort": cohort,
                    "problem": "clients missing from the history",
                    "expected_clients": expected,
                    "seen_clients": seen,
                    "t": 0.0,
                }
            )
    return evidence


def _client_delivery(ctx: CheckContext, client: str, fed: list[Record], settle_s: float) -> ClientDelivery:
    result = ClientDelivery(client)
    connections = ctx.connections(client)
    seen_seqs: dict[tuple[Any, int], Record] = {}
    seen_ids: dict[str, Record] = {}
    for connection in connections:
        _scan_connection(result, connection, seen_seqs, seen_ids)
    required = _required_ids(ctx, connections, fed, settle_s)
    if not connections or result.batches == 0:
        if required or not connections:
            result.evidence.append(
                {
                    "client": client,
                    "problem": "no batches received" if connections else "never got an init",
                    "fed_ids": len(required),
                    "t": connections[0].start_t if connections else ctx.by_client[client][0]["t"],
                }
            )
            result.missing_ids = [i for i, _ in required]
        return result
    _missing_ids(result, required, connections)
    return result


def _scan_connection(
    result: ClientDelivery, conn: Connection, seen_seqs: dict[tuple[Any, int], Record], seen_ids: dict[str, Record]
) -> None:
    live: list[int] = []
    top: dict[bool, int] = {}
    for batch in conn.batches:
        result.batches += 1
        _scan_ids(result, batch, seen_ids)
        seq = batch.get("seq")
        if seq is None:
            continue
        key = (conn.epoch, seq)
        if key in seen_seqs:
            result.duplicated.append(seq)
            _note(result, "duplicated seq", batch, seq=seq, first_t=seen_seqs[key]["t"])
            continue
        seen_seqs[key] = batch
        replay = conn.is_replay(batch)
        if replay in top and seq < top[replay]:
            result.reordered.append(seq)
            _note(result, "reordered seq", batch, seq=seq, after_seq=top[replay])
        top[replay] = max(seq, top.get(replay, seq))
        if not replay:
            live.append(seq)
            _latency(result, batch)
    _lost_seqs(result, conn, live)


def _scan_ids(result: ClientDelivery, batch: Record, seen_ids: dict[str, Record]) -> None:
    for event_id in batch.get("ids") or []:
        if event_id in seen_ids:
            result.duplicated_ids.append(event_id)
            _note(
                result,
                "duplicated event id",
                batch,
                id=event_id,
                seq=batch.get("seq"),
                first_seq=seen_ids[event_id].get("seq"),
            )
        else:
            seen_ids[event_id] = batch
            result.received.add(event_id)


def _latency(result: ClientDelivery, batch: Record) -> None:
    if batch.get("sent_at") is not None and batch.get("recv_at") is not None:
        result.latencies_ms.append((batch["recv_at"] - batch["sent_at"]) * 1000.0)


def _lost_seqs(result: ClientDelivery, conn: Connection, live: list[int]) -> None:
    if not live:
        return
    start = conn.init_seq + 1 if conn.init_seq is not None else min(live)
    got = set(live)
    lost = [seq for seq in range(start, max(live) + 1) if seq not in got]
    if not lost:
        return
    result.lost.extend(lost)
    revealed = next(b for b in conn.batches if (b.get("seq") or -1) > lost[0] and not conn.is_replay(b))
    before = max((s for s in got if s < lost[0]), default=conn.init_seq)
    _note(
        result,
        "lost seq",
        revealed,
        seq=lost[0],
        lost_in_connection=len(lost),
        after_seq=before,
        epoch=conn.epoch,
        connection_t=conn.start_t,
    )


def _note(result: ClientDelivery, problem: str, record: Record, **details: Any) -> None:
    """Keeps the first evidence item of each problem per client."""
    if any(e["problem"] == problem for e in result.evidence):
        return
    result.evidence.append({"client": result.client, "problem": problem, **details, "t": record["t"]})


def _required_ids(ctx: CheckContext, conns: list[Connection], fed: list[Record], settle_s: float) -> list[tuple]:
    """(id, fed at) of every event this client should have received, in feed order."""
    if not conns:
        return [(i, f["t"]) for f in fed for i in f.get("ids") or []]
    start = conns[0].start_t
    excused = _excused(ctx, conns, settle_s)
    return [
        (i, f["t"])
        for f in fed
        if f["t"] >= start and not any(f["t"] in w for w in excused)
        for i in f.get("ids") or []
    ]


def _excused(ctx: CheckContext, conns: list[Connection], settle_s: float) -> list[Window]:
    """When events may legitimately miss this client's batches: a break that ended in a resync, and
    anything after a final close the harness chose or a target stop or crash explains."""
    excused = [
        Window(prev.end_t - settle_s, nxt.start_t, "resync")
        for prev, nxt in pairwise(conns)
        if _told_to_resync(prev, nxt)
    ]
    last = conns[-1].close
    if last is not None:
        if last.get("by") == "client":
            excused.append(Window(last["t"], math.inf, "closed by client"))
        down = next((w for w in ctx.down_windows if last["t"] in w), None)
        if down is not None:
            margin = 0.0 if down.event in GRACEFUL_EVENTS else settle_s
            excused.append(Window(down.start - margin, math.inf, down.event))
    return excused


def _told_to_resync(prev: Connection, nxt: Connection) -> bool:
    new_epoch = prev.epoch is not None and nxt.epoch is not None and prev.epoch != nxt.epoch
    return new_epoch or nxt.notice("resync_required") is not None


def _missing_ids(result: ClientDelivery, required: list[tuple], conns: list[Connection]) -> None:
    missing = [(i, t) for i, t in required if i not in result.received]
    if not missing:
        return
    result.missing_ids = [i for i, _ in missing]
    first_id, fed_t = missing[0]
    closed = conns[-1].close
    item = {
        "client": result.client,
        "problem": "fed event never received",
        "id": first_id,
        "fed_t": fed_t,
        "missing": len(missing),
        "t": fed_t,
    }
    if closed is not None and closed["t"] <= missing[-1][1]:
        item["closed"] = {"t": closed["t"], "code": closed.get("code"), "by": closed.get("by")}
    result.evidence.append(item)


def _delivery_figures(results: list[ClientDelivery], fed: list[Record]) -> Figures:
    figures: Figures = {
        "clients": len(results),
        "batches": sum(r.batches for r in results),
        "events_fed": sum(len(f.get("ids") or []) for f in fed),
    }
    for name in ("lost", "duplicated", "reordered", "duplicated_ids", "missing_ids"):
        figures[name] = sum(r.counts()[name] for r in results)
    for result in results:
        for name, count in result.counts().items():
            if count:
                figures[f"{name}[{result.client}]"] = count
    return figures


def _delivery_verdict(
    ctx: CheckContext,
    opts: dict[str, Any],
    cohorts: list[str],
    evidence: list[dict[str, Any]],
    figures: Figures,
    latency: dict[str, float | int],
    results: list[ClientDelivery],
) -> Verdict:
    scope = f"{figures['clients']} client(s) of {', '.join(cohorts)}"
    saturated = saturation_reason(ctx.history, opts["cpu_limit_percent"], opts["backlog_limit"])
    latency_note = _latency_note(latency, saturated)
    if evidence:
        problems = ", ".join(
            f"{figures[k]} {k.replace('_', ' ')}"
            for k in ("lost", "duplicated", "reordered", "duplicated_ids", "missing_ids")
            if figures[k]
        )
        first = _cap(evidence)[0]
        return Verdict(
            "delivery",
            FAIL,
            f"{scope}: {problems or first['problem']}; first: {_describe(first)}{latency_note}",
            _cap(evidence),
            figures,
        )
    if saturated and latency["count"]:
        return Verdict(
            "delivery",
            UNRELIABLE,
            f"{scope}: nothing lost, duplicated or reordered; latency not judged: {saturated}{latency_note}",
            [],
            figures,
        )
    over = _latency_breaches(opts, latency, results)
    if over:
        return Verdict(
            "delivery", FAIL, f"{scope}: delivery latency over its bound: {_describe(over[0])}", over, figures
        )
    return Verdict("delivery", PASS, f"{scope}: every event delivered once and in order{latency_note}", [], figures)


def _latency_note(latency: dict[str, float | int], saturated: str | None) -> str:
    if not latency["count"]:
        return ""
    note = f"; latency p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms over {latency['count']} batches"
    return note + (" (unreliable: the harness was saturated)" if saturated else "")


def _latency_breaches(
    opts: dict[str, Any], latency: dict[str, float | int], results: list[ClientDelivery]
) -> list[dict[str, Any]]:
    breaches = []
    for quantile in ("p50", "p99"):
        limit = opts[f"latency_{quantile}_ms"]
        if limit is not None and latency["count"] and latency[quantile] > limit:
            breaches.append(
                {
                    "problem": f"latency {quantile} over bound",
                    "measured_ms": round(latency[quantile], 3),
                    "limit_ms": limit,
                }
            )
    if breaches:
        slowest = max(results, key=lambda r: max(r.latencies_ms, default=0.0))
        breaches.append(
            {"problem": "slowest client", "client": slowest.client, "max_ms": round(max(slowest.latencies_ms), 3)}
        )
    return breaches


def _describe(item: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in item.items() if k != "problem" and not isinstance(v, dict | list)) + (
        f" ({item['problem']})" if "problem" in item else ""
    )


# ---------------------------------------------------------------------------------------------
# 3. Eviction: dead and stuck clients leave the server's registry in time


def check_eviction(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """After the first fault that hits ``cohort`` (time t0), the server's registry (the ``clients`` of
    ``metrics`` records) drops to at most the number of clients the harness has connected outside that
    cohort (counted at each sample) within ``within`` seconds.

    When victims connect after the fault starts (the stuck readers a stuck_reader fault opens), t0 is when
    the last of them connected, so that no sample taken before they arrived counts as their eviction.
    When the fault acted on chosen clients of the cohort (``client_fault`` records after t0, as a
    mass drop of a share of the cohort does), only those are victims: the cohort's other clients count
    as legitimately connected.

    Options:
      cohort (required): the cohort whose clients must be evicted. For a stuck or stuck_pong cohort that
        no fault hit, t0 is the first connect of its clients.
      within: the bound in seconds (default 5.0).
      expected: a fixed registry size to reach instead of the counted one (default None).
    """
    opts = _options("eviction", options, {"within": 5.0, "expected": None}, required=("cohort",))
    cohort, within = opts["cohort"], float(opts["within"])
    samples = [r for r in ctx.history.of("metrics") if r.get("clients") is not None]
    if not samples:
        return Verdict("eviction", SKIPPED, "the target reported no registry size (no metrics records with clients)")
    t0, trigger = _eviction_start(ctx, cohort)
    if t0 is None:
        why = f"nothing to evict: no fault hit cohort {cohort!r} and it is not a stuck cohort"
        return Verdict("eviction", FAIL, why, [{"cohort": cohort, "problem": "no trigger"}])
    victims = _victims(ctx, cohort, t0)
    t0 = _arrived(ctx, victims, t0)
    case = Eviction(cohort, t0, trigger, within, victims)
    timeline = [_registry_point(ctx, case, s, opts["expected"]) for s in samples if s["t"] >= t0]
    figures: Figures = {"t0": _t(t0), "within_s": within, "samples": len(timeline), "victims": len(case.victims)}
    done = next((p for p in timeline if p["registry"] <= p["expected_at_most"]), None)
    if done is not None:
        return _eviction_done(ctx, case, done, timeline, figures)
    return _eviction_missing(ctx, case, timeline, figures)


@dataclass(frozen=True)
class Eviction:
    cohort: str
    t0: float
    trigger: str
    within: float
    victims: frozenset[str]

    def describe(self) -> str:
        return f"{len(self.victims)} client(s) of cohort {self.cohort!r} hit by {self.trigger} at t={self.t0:.2f}s"


def _eviction_start(ctx: CheckContext, cohort: str) -> tuple[float | None, str]:
    fault = next((r for r in ctx.history.of("fault_start") if hits(r, cohort)), None)
    if fault is not None:
        return fault["t"], f"fault {fault.get('fault')!r}"
    info = ctx.cohorts.get(cohort)
    if info is not None and info.kind in ("stuck", "stuck_pong"):
        connects = [r["t"] for c in ctx.clients_of(cohort) for r in ctx.by_client[c] if r["kind"] == "connect"]
        if connects:
            return min(connects), f"first connect of {info.kind} cohort"
    return None, ""


def _victims(ctx: CheckContext, cohort: str, t0: float) -> frozenset[str]:
    """The cohort's clients the fault acted on by name (client_fault records), else all of them."""
    members = ctx.clients_of(cohort)
    acted = {c for c in members if any(r["kind"] == "client_fault" and r["t"] >= t0 for r in ctx.by_client[c])}
    return frozenset(acted or members)


def _arrived(ctx: CheckContext, victims: frozenset[str], t0: float) -> float:
    """When the last victim that was not yet connected at ``t0`` connected (or ``t0``)."""
    late = [c for c in victims if not ctx.connected_at(c, t0)]
    arrivals = [next((r["t"] for r in ctx.by_client[c] if r["kind"] == "connect" and r["t"] >= t0), t0) for c in late]
    return max([t0, *arrivals])


def _registry_point(ctx: CheckContext, case: Eviction, sample: Record, fixed: int | None) -> dict[str, Any]:
    if fixed is None:
        gone = case.victims | _suspects(ctx, sample["t"])
        fixed = sum(ctx.connected_at(c, sample["t"]) for c in ctx.by_client if c not in gone)
    return {"t": sample["t"], "registry": sample["clients"], "expected_at_most": fixed}


def _suspects(ctx: CheckContext, t: float) -> frozenset[str]:
    """Victims of every fault started by ``t``, in any cohort. Counts alone cannot tell whose entry
    the server dropped, so a client another fault hit is never counted as rightly connected:
    otherwise one cohort's eviction could pass for another's."""
    found: set[str] = set()
    for fault in ctx.history.of("fault_start"):
        if fault["t"] <= t and fault.get("cohort"):
            found |= _victims(ctx, fault["cohort"], fault["t"])
    return frozenset(found)


def _still_connected(ctx: CheckContext, case: Eviction, t: float) -> list[dict[str, Any]]:
    return [
        {"client": c, "problem": "harness still believes it connected", "t": t}
        for c in sorted(case.victims)
        if ctx.connected_at(c, t)
    ]


def _eviction_done(
    ctx: CheckContext, case: Eviction, done: dict[str, Any], timeline: list[dict[str, Any]], figures: Figures
) -> Verdict:
    took = done["t"] - case.t0
    figures["evicted_after_s"] = _t(took)
    if took <= case.within:
        summary = f"{case.describe()} left the registry after {took:.2f}s (bound {case.within:g}s)"
        return Verdict("eviction", PASS, summary, [], figures)
    evidence = _cap([p for p in timeline if p["t"] <= done["t"]]) + _still_connected(ctx, case, case.t0 + case.within)
    summary = f"{case.describe()} left the registry only after {took:.2f}s (bound {case.within:g}s)"
    return Verdict("eviction", FAIL, summary, evidence, figures)


def _eviction_missing(ctx: CheckContext, case: Eviction, timeline: list[dict[str, Any]], figures: Figures) -> Verdict:
    evidence = _cap(timeline) + _still_connected(ctx, case, case.t0 + case.within)
    if not timeline or timeline[-1]["t"] < case.t0 + case.within:
        summary = f"{case.describe()}: metrics samples end before the {case.within:g}s bound without an eviction"
        return Verdict("eviction", UNRELIABLE, summary, evidence, figures)
    last = timeline[-1]
    summary = (
        f"{case.describe()} never left the registry: last sample {last['registry']} clients, "
        f"expected at most {last['expected_at_most']}"
    )
    return Verdict("eviction", FAIL, summary, evidence, figures)


# ---------------------------------------------------------------------------------------------
# 4. Liveness: new clients and health checks keep working during and after faults


def check_liveness(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """Every probe succeeds within ``max_connect_s``, except while the target is away (killed or
    stopping until ready, paused until resumed); at least one probe ran after the last fault healed.

    A probe is excused when it was recorded while the target was away, when a successful probe's span
    (t - latency_s to t) overlaps a time it was away, or when a failed probe ended within ``grace_s`` of the target
    coming back (a probe that waited on a paused or restarting server).

    Options:
      max_connect_s: the slowest acceptable probe, in seconds (default 2.0).
      grace_s: how long after the target is back a failed probe is still excused (default 3.0, the
        runner's probe timeout).
    """
    opts = _options("liveness", options, {"max_connect_s": 2.0, "grace_s": 3.0})
    limit = float(opts["max_connect_s"])
    probes = list(ctx.history.of("probe"))
    judged = [p for p in probes if not _probe_excused(p, ctx.down_windows, float(opts["grace_s"]))]
    evidence = [e for p in judged if (e := _probe_problem(p, limit)) is not None]
    heals = [r["t"] for r in ctx.history.of("fault_heal")]
    last_heal = max(heals, default=None)
    figures: Figures = {
        "probes": len(probes),
        "excused": len(probes) - len(judged),
        "failed": len(evidence),
        "max_latency_s": max((p.get("latency_s") or 0.0 for p in judged), default=0.0),
    }
    if not any(last_heal is None or p["t"] > last_heal for p in judged):
        when = f"after the last heal at t={last_heal:.2f}s" if last_heal is not None else "at all"
        evidence.append({"problem": f"no probe ran {when}", "t": last_heal if last_heal is not None else 0.0})
    if evidence:
        first = _cap(evidence)[0]
        return Verdict(
            "liveness",
            FAIL,
            f"{figures['failed']} of {len(judged)} probe(s) failed or were slow; first: {_describe(first)}",
            _cap(evidence),
            figures,
        )
    return Verdict(
        "liveness",
        PASS,
        f"all {len(judged)} probe(s) succeeded within {limit:g}s"
        + (f" ({figures['excused']} more excused while the target was away)" if figures["excused"] else ""),
        [],
        figures,
    )


def _probe_excused(probe: Record, down: list[Window], grace_s: float) -> bool:
    t = probe["t"]
    if probe.get("ok"):
        started = t - (probe.get("latency_s") or 0.0)
        return any(started <= w.end and w.start <= t for w in down)
    return any(w.start <= t <= w.end + grace_s for w in down)


def _probe_problem(probe: Record, limit: float) -> dict[str, Any] | None:
    base = {"check": probe.get("check"), "t": probe["t"]}
    if not probe.get("ok"):
        return {**base, "problem": "probe failed", "error": probe.get("error")}
    if (probe.get("latency_s") or 0.0) > limit:
        return {**base, "problem": "probe too slow", "latency_s": probe["latency_s"], "limit_s": limit}
    return None


# ---------------------------------------------------------------------------------------------
# 5. Nothing lost: every fed event is persisted exactly once


def check_persistence(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """Every fed event id is in the target's database exactly once, and nothing else is.

    Ids fed after the target went away for good (stopped or killed and never ready again), or within
    ``stop_margin_s`` before that, are not required: they sit in the target's input, unread, and a
    target that resumes from its read offset picks them up on its next start. They are counted as
    ``not_required_final_stop``. Ids fed while it was down and then restarted are required.

    Options:
      stop_margin_s: how long before a final stop a fed id may still be unread (default 0.5).
    """
    opts = _options("persistence", options, {"stop_margin_s": 0.5})
    if ctx.stored_ids is None:
        return Verdict("persistence", SKIPPED, "the target exposes no stored event ids")
    final = min((w.start for w in ctx.down_windows if w.end == math.inf), default=math.inf)
    gone_at = final - float(opts["stop_margin_s"])
    fed_at = {i: f["t"] for f in ctx.history.of("feed") for i in f.get("ids") or []}
    stored = Counter(ctx.stored_ids)
    missing = [i for i, t in fed_at.items() if i not in stored and t < gone_at]
    extra = [i for i in stored if i not in fed_at]
    duplicated = [i for i, n in stored.items() if n > 1]
    figures: Figures = {
        "fed": len(fed_at),
        "not_required_final_stop": sum(t >= gone_at and i not in stored for i, t in fed_at.items()),
        "stored": len(ctx.stored_ids),
        "missing": len(missing),
        "extra": len(extra),
        "duplicated": len(duplicated),
    }
    evidence = (
        [{"problem": "fed but not stored", "id": i, "fed_t": fed_at[i]} for i in missing[:MAX_EVIDENCE]]
        + [{"problem": "stored more than once", "id": i, "times": stored[i]} for i in duplicated[:MAX_EVIDENCE]]
        + [{"problem": "stored but never fed", "id": i} for i in extra[:MAX_EVIDENCE]]
    )
    if evidence:
        return Verdict(
            "persistence",
            FAIL,
            f"{len(missing)} missing, {len(duplicated)} duplicated, {len(extra)} "
            f"extra of {len(fed_at)} fed ids; first: {_describe(evidence[0])}",
            evidence,
            figures,
        )
    excused = figures["not_required_final_stop"]
    note = f" ({excused} fed at or just before the final stop not yet read, not required)" if excused else ""
    return Verdict("persistence", PASS, f"all {len(fed_at) - excused} fed ids stored exactly once{note}", [], figures)


# ---------------------------------------------------------------------------------------------
# 6. Recovery: after a cut heals, clients reconnect and get a consistent state


def check_recovery(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """Every client of ``cohort`` that a fault disconnected reconnects with a new init within ``within``
    seconds of the heal (the fault_heal record; for a restart, the target's ready), and no reconnect
    leaves a silent gap: after the break the client either got the seqs it missed (after a ``resumed``
    notice) or was told to resync (``resync_required``, or an init with a new epoch).

    Disconnected by the fault: a close by the server or an error between the fault's start and its heal
    + ``within`` (a close the harness chose, by "client", does not count). Faults without a cohort
    (server faults) and target kills and pauses count for every cohort. The gap check applies to every
    reconnect of the cohort's clients.

    Options:
      cohort (required): the cohort to check.
      within: seconds after the heal by which clients must be back (default 5.0).
    """
    opts = _options("recovery", options, {"within": 5.0}, required=("cohort",))
    cohort, within = opts["cohort"], float(opts["within"])
    episodes = _episodes(ctx, cohort)
    if not episodes:
        return Verdict(
            "recovery",
            FAIL,
            f"nothing to recover from: no fault or restart hit cohort {cohort!r}",
            [{"cohort": cohort, "problem": "no trigger"}],
        )
    evidence: list[dict[str, Any]] = []
    tally: Counter[str] = Counter(dict.fromkeys(("disconnected", "reconnected", "resumed", "resynced", "gaps"), 0))
    delays: list[tuple[float, float]] = []  # (after the heal, since the break) per reconnect
    for client in ctx.clients_of(cohort):
        conns = ctx.connections(client)
        evidence += _reconnects(client, conns, episodes, within, delays, tally)
        evidence += _continuity(client, conns, tally)
    figures: Figures = {
        "clients": len(ctx.clients_of(cohort)),
        "episodes": len(episodes),
        **tally,
        "after_heal_max_s": _t(max((d[0] for d in delays), default=0.0)),
        "offline_max_s": _t(max((d[1] for d in delays), default=0.0)),
    }
    if evidence:
        first = _cap(evidence)[0]
        return Verdict(
            "recovery",
            FAIL,
            f"{len(evidence)} recovery problem(s) in cohort {cohort!r}; first: {_describe(first)}",
            _cap(evidence),
            figures,
        )
    return Verdict(
        "recovery",
        PASS,
        f"cohort {cohort!r}: all {tally['disconnected']} disconnection(s) reconnected within {within:g}s of the "
        f"heal ({tally['resumed']} resumed, {tally['resynced']} told to resync), no silent gap",
        [],
        figures,
    )


def _episodes(ctx: CheckContext, cohort: str) -> list[Window]:
    """Fault start to heal (and target down windows), merged where they overlap."""
    heals = list(ctx.history.of("fault_heal"))
    spans = []
    for start in ctx.history.of("fault_start"):
        if hits(start, cohort) or start.get("cohort") is None:
            heal = next((h for h in heals if h.get("fault") == start.get("fault") and h["t"] >= start["t"]), None)
            spans.append(Window(start["t"], heal["t"] if heal else math.inf, str(start.get("fault"))))
    spans += [w for w in ctx.down_windows if w.event not in GRACEFUL_EVENTS]
    return merge_windows(spans)


def merge_windows(spans: list[Window]) -> list[Window]:
    """Overlapping windows joined into one (keeping the first one's event), in time order."""
    merged: list[Window] = []
    for span in sorted(spans, key=lambda w: w.start):
        if merged and span.start <= merged[-1].end:
            merged[-1] = Window(merged[-1].start, max(merged[-1].end, span.end), merged[-1].event)
        else:
            merged.append(span)
    return merged


def _reconnects(
    client: str,
    conns: list[Connection],
    episodes: list[Window],
    within: float,
    delays: list[tuple[float, float]],
    tally: Counter,
) -> list[dict[str, Any]]:
    problems = []
    for i, conn in enumerate(conns):
        nxt = conns[i + 1] if i + 1 < len(conns) else None
        if (conn.close is None and nxt is None) or (conn.close is not None and conn.close.get("by") == "client"):
            continue  # still connected, or the harness dropped it on purpose
        broke = conn.end_t
        episode = next((e for e in episodes if e.start <= broke <= e.end + within), None)
        if episode is None:
            continue
        tally["disconnected"] += 1
        base = {"client": client, "closed_t": broke, "heal_t": episode.end, "fault": episode.event}
        if nxt is None:
            problems.append({**base, "problem": "did not reconnect", "t": broke})
        elif nxt.start_t > episode.end + within:
            problems.append(
                {**base, "problem": "reconnected late", "after_heal_s": _t(nxt.start_t - episode.end), "t": nxt.start_t}
            )
        else:
            tally["reconnected"] += 1
            delays.append((max(0.0, nxt.start_t - episode.end), nxt.start_t - broke))
    return problems


def _continuity(client: str, conns: list[Connection], tally: Counter) -> list[dict[str, Any]]:
    problems = []
    for prev, nxt in pairwise(conns):
        if _told_to_resync(prev, nxt):
            tally["resynced"] += 1
            continue
        last = prev.last_seq()
        seqs = {b["seq"] for b in nxt.batches if b.get("seq") is not None}
        upto = max([*seqs, nxt.init_seq if nxt.init_seq is not None else -1])
        if last is None or upto <= last:
            continue
        missing = [s for s in range(last + 1, upto + 1) if s not in seqs]
        resumed = nxt.notice("resumed") is not None
        tally["resumed"] += resumed
        if missing:
            problems.append(
                {
                    "client": client,
                    "problem": "gap after resume" if resumed else "silent gap",
                    "first_missing_seq": missing[0],
                    "missing": len(missing),
                    "last_seq_before": last,
                    "init_seq": nxt.init_seq,
                    "epoch": nxt.epoch,
                    "t": nxt.start_t,
                }
            )
    tally["gaps"] += len(problems)
    return problems


# ---------------------------------------------------------------------------------------------
# 7. Graceful shutdown: every client gets 1001 in time


def check_shutdown(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """After the target was told to stop (the ``target`` record with event "stopping", else the start of a
    server_stop fault), every reading client connected at that moment gets a close with ``code`` from the
    server within ``within`` seconds.

    A client that never read anything (no init: a stuck reader) cannot see a close frame; for those the
    target must have exited (``stopped`` or ``exited``) within the bound, which closes their sockets, so a
    server that hangs on a stuck client still fails.

    Options:
      within: the bound in seconds (default 5.0).
      code: the expected close code (default 1001, going away).
    """
    opts = _options("shutdown", options, {"within": 5.0, "code": 1001})
    within, code = float(opts["within"]), opts["code"]
    stop = _first(ctx.history.of("target"), "target", event="stopping") or _first(
        ctx.history.of("fault_start"), "fault_start", type="server_stop"
    )
    if stop is None:
        why = "the target was never stopped (no 'stopping' target record)"
        return Verdict("shutdown", FAIL, why, [{"problem": "no trigger"}])
    ts = stop["t"]
    connected = [c for c, ws in ctx.intervals.items() if any(ts in w and w.event != "connect_error" for w in ws)]
    reading = [c for c in connected if _has_read(ctx, c, ts)]
    silent = [c for c in connected if c not in reading]
    exited = next(
        (r for r in ctx.history.of("target") if r.get("event") in ("stopped", "exited") and r["t"] >= ts), None
    )
    evidence = [e for c in reading if (e := _close_problem(ctx, c, ts, within, code)) is not None]
    if silent and (exited is None or exited["t"] - ts > within):
        evidence += [_hung_on(ctx, c, ts, within, exited) for c in silent]
    figures = _shutdown_figures(ctx, reading, silent, ts, exited, len(evidence))
    if evidence:
        first = _describe(_cap(evidence)[0])
        summary = (
            f"{len(evidence)} of {len(connected)} client(s) not closed properly within {within:g}s; first: {first}"
        )
        return Verdict("shutdown", FAIL, summary, _cap(evidence), figures)
    summary = (
        f"all {len(reading)} reading client(s) got {code} from the server within {within:g}s of the stop at t={ts:.2f}s"
    )
    if silent:
        summary += f"; the target exited after {exited['t'] - ts:.2f}s with {len(silent)} non-reading client(s)"
    return Verdict("shutdown", PASS, summary, [], figures)


def _has_read(ctx: CheckContext, client: str, t: float) -> bool:
    return any(r["kind"] in ("init", "batch") and r["t"] <= t for r in ctx.by_client.get(client, []))


def _hung_on(ctx: CheckContext, client: str, ts: float, within: float, exited: Record | None) -> dict[str, Any]:
    item = {"client": client, "cohort": ctx.cohort_of.get(client), "problem": "target still running, stuck client"}
    if exited is not None:
        item["target_exited_after_s"] = _t(exited["t"] - ts)
    return {**item, "t": ts + within}


def _shutdown_figures(
    ctx: CheckContext, reading: list[str], silent: list[str], ts: float, exited: Record | None, bad: int
) -> Figures:
    closes = [r["t"] - ts for c in reading if (r := _close_after(ctx, c, ts)) is not None]
    figures: Figures = {
        "clients": len(reading) + len(silent),
        "non_reading": len(silent),
        "bad": bad,
        "close_max_s": _t(max(closes, default=0.0)),
    }
    if exited is not None:
        figures["target_exited_after_s"] = _t(exited["t"] - ts)
    return figures


def _close_after(ctx: CheckContext, client: str, t: float) -> Record | None:
    return next((r for r in ctx.by_client.get(client, []) if r["kind"] == "close" and r["t"] >= t), None)


def _close_problem(ctx: CheckContext, client: str, ts: float, within: float, code: int) -> dict[str, Any] | None:
    close = _close_after(ctx, client, ts)
    base = {"client": client, "cohort": ctx.cohort_of.get(client)}
    if close is None or close["t"] - ts > within:
        late = {"closed_after_s": _t(close["t"] - ts), "code": close.get("code")} if close else {}
        return {**base, "problem": "no close within the bound", **late, "t": close["t"] if close else ts + within}
    if close.get("code") != code or close.get("by") != "server":
        return {
            **base,
            "problem": "wrong close",
            "code": close.get("code"),
            "by": close.get("by"),
            "reason": close.get("reason"),
            "closed_after_s": _t(close["t"] - ts),
            "t": close["t"],
        }
    return None


# ---------------------------------------------------------------------------------------------
# 8. Browsers: the dashboard page itself rides out the fault (a ``browser`` cohort)

BROWSER_LIVE = frozenset({"live", "resyncing"})
# What Chromium itself logs to the console when a WebSocket or a load fails: a cut or a restart causes
# these by design, and they are not the page's script errors.
BROWSER_NETWORK_NOISE = (r"^WebSocket connection to .* failed", r"^Failed to load resource")


def check_browser(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """Every dashboard page of ``cohort`` (``browser_state`` samples of ``window.wschaos``) shows the fault,
    reconnects after it with backoff, resumes the live feed without an unfilled gap, and logs no script error.

    Episodes: each fault that hits the cohort (or has no cohort: server faults), from its ``fault_start`` to
    its heal. The heal of a server fault is the target's first ``ready`` after the fault started (the moment
    a restarted server is back); of any other fault, its ``fault_heal`` record. For each page and episode:

    - **shown**: every state in ``require_state_seen`` appears in a sample between the fault's start and
      the heal + ``reconnect_within`` ("reconnecting" is the page waiting out its backoff).
    - **reconnected**: a page the fault disturbed (a sample not live, or a new connection) is back for good
      by the heal + ``reconnect_within``: from some sample at or after the heal up to the next episode (or
      the end) every sample is live ("live" or "resyncing") and the first of them counts more connections
      than the last sample before the fault.
    - **live feed**: the page's last sample of the stretch is in the same epoch as that first one (for a
      page the fault did not disturb, as its last sample before the heal) and has a greater ``lastSeq``.

    No gap left unfilled (per page, over the whole run): each seq in the final ``browser_seqs`` belongs to
    the epoch of the first sample whose ``received`` count includes it. Within each epoch, every seq from
    the first one the page was due (the ``lastSeq`` + 1 of its first sample in that epoch when no batch of
    the epoch had come yet, which is the init's seq + 1; else the lowest received) to the highest received
    must have been received (``gaps`` may count a gap the page detected; the resume must fill it), except
    the seqs the server told the page to skip: for each run of "resyncing" samples, those above the
    highest seq received before the sample preceding the run and at most the ``lastSeq`` of the run's
    first sample. The page's ``duplicates`` must not exceed ``max_duplicates``.

    No script error: every ``browser_error`` of the cohort from the page (uncaught errors, crashes, console
    errors, entries of ``window.wschaos.errors``) fails the check unless an ``allow_errors`` pattern matches
    its text. Errors of the harness's own reads (source "harness") are counted, not judged.

    Options:
      cohort (required): the browser cohort.
      reconnect_within: seconds after the heal by which each page must be live again (default 5.0).
      require_state_seen: page state(s) each page must show during each episode (default ["reconnecting"];
        [] requires none).
      allow_errors: regular expressions for error texts that are not script errors (default: Chromium's own
        lines for a failed WebSocket connection or load).
      max_duplicates: the most batches a page may count as duplicates (default 0).
    """
    opts = _options("browser", options, {"reconnect_within": 5.0, "require_state_seen": ["reconnecting"],
                                          "allow_errors": list(BROWSER_NETWORK_NOISE), "max_duplicates": 0},
                    required=("cohort",))  # fmt: skip
    cohort, within = opts["cohort"], float(opts["reconnect_within"])
    required = opts["require_state_seen"] or []
    required = [required] if isinstance(required, str) else list(required)
    allow = [re.compile(p) for p in opts["allow_errors"]]
    samples = _browser_samples(ctx, cohort)
    episodes = _browser_episodes(ctx, cohort)
    if not samples:
        return Verdict("browser", FAIL, f"no page of cohort {cohort!r} reported its state (no browser_state records)",
                       [{"cohort": cohort, "problem": "no samples"}])  # fmt: skip
    if not episodes:
        return Verdict("browser", FAIL, f"nothing to ride out: no fault or restart hit cohort {cohort!r}",
                       [{"cohort": cohort, "problem": "no trigger"}])  # fmt: skip
    tally: Counter[str] = Counter(dict.fromkeys(("disturbed", "reconnected", "unfilled", "script_errors"), 0))
    delays: list[float] = []
    evidence: list[dict[str, Any]] = []
    expected = ctx.cohorts[cohort].clients if cohort in ctx.cohorts else len(samples)
    evidence += [{"client": f"{cohort}-?", "problem": "page never reported", "pages": len(samples),
                  "expected": expected, "t": 0.0}] if len(samples) < expected else []  # fmt: skip
    for client, mine in samples.items():
        for i, episode in enumerate(episodes):
            until = episodes[i + 1].start if i + 1 < len(episodes) else math.inf
            evidence += _page_episode(client, mine, episode, until, within, required, tally, delays)
        evidence += _page_coverage(ctx, client, mine, int(opts["max_duplicates"]), tally)
    errors = [r for r in ctx.history.of("browser_error") if r.get("cohort") == cohort]
    for error in errors:
        if error.get("source") == "harness" or any(p.search(str(error.get("text", ""))) for p in allow):
            continue
        tally["script_errors"] += 1
        evidence.append({"client": error.get("client"), "problem": "script error", "source": error.get("source"),
                         "text": str(error.get("text"))[:300], "t": error["t"]})  # fmt: skip
    finals = [mine[-1] for mine in samples.values()]
    figures: Figures = {
        "pages": len(samples),
        "episodes": len(episodes),
        **tally,
        "after_heal_max_s": _t(max(delays, default=0.0)),
        "gaps_detected": sum(int(f.get("gaps") or 0) for f in finals),
        "duplicates": sum(int(f.get("duplicates") or 0) for f in finals),
        "resent": sum(int(f.get("resent") or 0) for f in finals),
        "connects": sum(int(f.get("connects") or 0) for f in finals),
        "errors_allowed": sum(1 for e in errors if e.get("source") != "harness") - tally["script_errors"],
        "harness_read_errors": sum(1 for e in errors if e.get("source") == "harness"),
    }
    if evidence:
        first = _cap(evidence)[0]
        return Verdict("browser", FAIL, f"{len(evidence)} problem(s) with the pages of cohort {cohort!r}; "
                       f"first: {_describe(first)}", _cap(evidence), figures)  # fmt: skip
    shown = f", showed {' and '.join(required)}" if required else ""
    return Verdict(
        "browser",
        PASS,
        f"{len(samples)} page(s) of cohort {cohort!r} rode out {len(episodes)} fault(s){shown}, "
        f"{tally['reconnected']} reconnect(s) within {within:g}s of the heal "
        f"(slowest {max(delays, default=0.0):.2f}s), live feed resumed, no unfilled gap, no script error",
        [],
        figures,
    )


def _browser_samples(ctx: CheckContext, cohort: str) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for record in ctx.history.of("browser_state"):
        if record.get("cohort") == cohort:
            out.setdefault(str(record.get("client")), []).append(record)
    return out


def _browser_episodes(ctx: CheckContext, cohort: str) -> list[Window]:
    """(fault start, heal): a server fault heals when the target is next ready, any other at its fault_heal."""
    heals = list(ctx.history.of("fault_heal"))
    readies = [r["t"] for r in ctx.history.of("target") if r.get("event") == "ready"]
    spans = []
    for start in ctx.history.of("fault_start"):
        if not (hits(start, cohort) or start.get("cohort") is None):
            continue
        heal = next((h["t"] for h in heals if h.get("fault") == start.get("fault") and h["t"] >= start["t"]), math.inf)
        if start.get("cohort") is None:
            heal = min([heal, *(t for t in readies if t > start["t"])])
        spans.append(Window(start["t"], heal, str(start.get("fault"))))
    return merge_windows(spans)


def _page_episode(
    client: str,
    samples: list[Record],
    episode: Window,
    until: float,
    within: float,
    required: list[str],
    tally: Counter,
    delays: list[float],
) -> list[dict[str, Any]]:
    base = {"client": client, "fault": episode.event, "fault_t": _t(episode.start), "heal_t": _t(episode.end)}
    if math.isinf(episode.end):
        return [{**base, "problem": "fault never healed", "t": episode.start}]
    before = [s for s in samples if s["t"] < episode.start]
    connects_before = int(before[-1].get("connects") or 0) if before else 0
    window = [s for s in samples if episode.start <= s["t"] <= episode.end + within]
    problems = []
    seen = {s.get("state") for s in window}
    for state in required:
        if state not in seen:
            problems.append({**base, "problem": f"state {state!r} never shown", "states_seen": sorted(map(str, seen)),
                             "t": episode.end})  # fmt: skip
    after = [s for s in samples if episode.end <= s["t"] < until]
    disturbed = any(s.get("state") not in BROWSER_LIVE for s in window) or any(
        int(s.get("connects") or 0) > connects_before for s in window
    )
    if not after:
        return [*problems, {**base, "problem": "no sample after the heal", "t": episode.end}]
    # An undisturbed page's feed is judged from its last sample before the heal.
    back = ([s for s in samples if s["t"] <= episode.end] or after)[-1] if not disturbed else after[0]
    if disturbed:
        tally["disturbed"] += 1
        back = _back_for_good(after, connects_before)
        if back is None:
            last = after[-1]
            problems.append({**base, "problem": "did not reconnect", "state": last.get("state"),
                             "connects": last.get("connects"), "t": last["t"]})  # fmt: skip
            return problems
        delay = max(0.0, back["t"] - episode.end)
        if delay > within:
            problems.append({**base, "problem": "reconnected late", "after_heal_s": _t(delay), "t": back["t"]})
        else:
            tally["reconnected"] += 1
            delays.append(delay)
    last = after[-1]
    if last.get("epoch") != back.get("epoch") or (last.get("lastSeq") or 0) <= (back.get("lastSeq") or 0):
        problems.append({**base, "problem": "live feed did not resume", "last_seq_back": back.get("lastSeq"),
                         "last_seq_end": last.get("lastSeq"), "state": last.get("state"), "t": last["t"]})  # fmt: skip
    return problems


def _back_for_good(after: list[Record], connects_before: int) -> Record | None:
    """The first sample from which every later one is live, if it counts a new connection."""
    start = None
    for i in range(len(after) - 1, -1, -1):
        if after[i].get("state") not in BROWSER_LIVE:
            break
        start = i
    if start is None or int(after[start].get("connects") or 0) <= connects_before:
        return None
    return after[start]


def _page_coverage(
    ctx: CheckContext, client: str, samples: list[Record], max_duplicates: int, tally: Counter
) -> list[dict[str, Any]]:
    finals = [r for r in ctx.history.of("browser_seqs") if r.get("client") == client]
    final = finals[-1] if finals else None
    if final is None:
        return [{"client": client, "problem": "no final seqs (browser_seqs) recorded", "t": samples[-1]["t"]}]
    seqs = [s for s in final.get("seqs") or [] if isinstance(s, int)]
    epochs = _seq_epochs(samples, len(seqs))
    problems = []
    for epoch in dict.fromkeys(epochs):
        mine = [s for s, e in zip(seqs, epochs, strict=True) if e == epoch]
        got = set(mine)
        low = min([*mine, _epoch_floor(samples, epochs, epoch)])
        missing = [s for s in range(low, max(mine) + 1) if s not in got]
        excused = _resync_excuses(samples, seqs, epochs, epoch)
        unfilled = [s for s in missing if not any(lo < s <= hi for lo, hi in excused)]
        if unfilled:
            tally["unfilled"] += len(unfilled)
            problems.append({"client": client, "problem": "unfilled gap", "epoch": epoch,
                             "first_missing_seq": unfilled[0], "missing": len(unfilled),
                             "due_from": low, "received_range": [min(mine), max(mine)], "resyncs": len(excused),
                             "t": final["t"]})  # fmt: skip
    duplicates = int(samples[-1].get("duplicates") or 0)
    if duplicates > max_duplicates:
        problems.append({"client": client, "problem": "duplicates", "duplicates": duplicates,
                         "max_duplicates": max_duplicates, "t": samples[-1]["t"]})  # fmt: skip
    return problems


def _epoch_floor(samples: list[Record], epochs: list[Any], epoch: Any) -> float:
    """The first seq the page was due in ``epoch``: its init's seq + 1, when a sample shows the page in that
    epoch before any batch of it arrived (inf when none does)."""
    first = epochs.index(epoch)
    for sample in samples:
        if sample.get("epoch") != epoch:
            continue
        seq = sample.get("lastSeq")
        if int(sample.get("received") or 0) <= first and isinstance(seq, int):
            return seq + 1
        return math.inf
    return math.inf


def _seq_epochs(samples: list[Record], count: int) -> list[Any]:
    """The epoch of each received seq: that of the first sample whose ``received`` count includes it."""
    epochs: list[Any] = []
    for sample in samples:
        upto = min(count, int(sample.get("received") or 0))
        epochs += [sample.get("epoch")] * max(0, upto - len(epochs))
    return epochs + [samples[-1].get("epoch")] * (count - len(epochs))


def _resync_excuses(samples: list[Record], seqs: list[int], epochs: list[Any], epoch: Any) -> list[tuple[int, int]]:
    """(lo, hi] ranges the server told the page to skip: one per run of "resyncing" samples in ``epoch``."""
    ranges = []
    for i, sample in enumerate(samples):
        if sample.get("state") != "resyncing" or sample.get("epoch") != epoch:
            continue
        if i > 0 and samples[i - 1].get("state") == "resyncing":
            continue
        had = int(samples[i - 1].get("received") or 0) if i > 0 else 0
        earlier = [s for s, e in zip(seqs[:had], epochs[:had], strict=True) if e == epoch]
        lo = max(earlier, default=-1)
        hi = sample.get("lastSeq")
        if isinstance(hi, int) and hi > lo:
            ranges.append((lo, hi))
    return ranges


# ---------------------------------------------------------------------------------------------
# Running them


CHECKERS: dict[str, Callable[[CheckContext, dict[str, Any]], Verdict]] = {
    "no_error_logs": check_no_error_logs,
    "delivery": check_delivery,
    "eviction": check_eviction,
    "liveness": check_liveness,
    "persistence": check_persistence,
    "recovery": check_recovery,
    "shutdown": check_shutdown,
    "browser": check_browser,
    "load": check_load,
}


def run_checks(ctx: CheckContext, checks: dict[str, dict[str, Any] | None]) -> list[Verdict]:
    """Runs each named checker with its options, in the given order. A checker that raises gives a
    "fail" verdict carrying the exception; an unknown name is a ValueError naming the known ones."""
    unknown = sorted({checker_name(n) for n in checks} - set(CHECKERS))
    if unknown:
        raise ValueError(f"unknown checker(s) {', '.join(unknown)}; known: {', '.join(CHECKERS)}")
    return [_run_one(name, ctx, options or {}) for name, options in checks.items()]


def checker_name(key: str) -> str:
    """``eviction@rst`` runs the eviction checker a second time with other options."""
    return key.split("@", 1)[0]


def _run_one(name: str, ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    try:
        verdict = CHECKERS[checker_name(name)](ctx, dict(options))
        verdict.checker = name
        return verdict
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        error = f"{type(exc).__name__}: {exc}"
        evidence = [{"error": error, "where": f"{where.filename}:{where.lineno}"}]
        return Verdict(name, FAIL, f"the {name} checker raised {error}", evidence)
