"""What every checker shares: the verdict and its statuses, the context a checker judges, the helpers
that read a History, and the registry of checkers.

A verdict's status is ``pass``, ``fail``, ``error`` (the checker itself raised; its traceback is the
evidence) or ``unknown``: the run could not judge it, and ``unknown_reason`` says which kind of why
(``unreliable``: the run could not measure it fairly; ``not_applicable``: the target exposes nothing
to judge it by; ``did_not_bite``: the fault meant to test it never took effect), the summary says why
in words. Nothing to judge is never a pass: a checker with nothing to judge says unknown,
``not_applicable`` ("not applicable: <why>"), and one whose trigger never happened (no fault hit the
cohort, nothing to evict or recover from, the target was never stopped) says unknown, ``did_not_bite``
("the fault did not take effect: <what was missing>").

Evidence items are small dicts naming the client, seq, event id, log line and time, the first
occurrence first. Times (``t``) are seconds since the run started, as in the History.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from harness.checkers.identity import BY_ID, identity_problem
from harness.history import History
from harness.optiontypes import Unset, type_problem

Record = dict[str, Any]
Figures = dict[str, float | int]

PASS, FAIL, ERROR, UNKNOWN = "pass", "fail", "error", "unknown"
SKIPPED = "skipped"  # a whole scenario that could not run here, never a verdict
# The kinds of reason an unknown verdict gives.
UNRELIABLE, NOT_APPLICABLE, DID_NOT_BITE = "unreliable", "not_applicable", "did_not_bite"
UNKNOWN_REASONS = (UNRELIABLE, NOT_APPLICABLE, DID_NOT_BITE)
# What makes a scenario's status: the first of these its verdicts show.
PRECEDENCE = (FAIL, ERROR, UNKNOWN)

CPU_LIMIT_PERCENT = 85.0
# The clients report their backlog in bytes received but not yet processed. aiohttp's reader queues up
# to about 128 KiB before it stops reading the socket: past twice that, the client had fallen behind.
BACKLOG_LIMIT = 256 * 1024
MAX_EVIDENCE = 20
# Target events that take the server away, and those that bring it back.
DOWN_EVENTS = frozenset({"killed", "stopping", "stopped", "exited", "paused"})
UP_EVENTS = frozenset({"ready", "resumed"})
GRACEFUL_EVENTS = frozenset({"stopping", "stopped"})
CONNECTION_KINDS = frozenset(
    {"connect", "connect_error", "init", "batch", "notice", "close", "client_fault", "resume_request"}
)


@dataclass
class Verdict:
    checker: str
    status: str  # "pass" | "fail" | "error" | "unknown"
    summary: str
    evidence: list[dict[str, Any]] = field(default_factory=list)
    figures: Figures = field(default_factory=dict)
    unknown_reason: str | None = None  # for "unknown": one of UNKNOWN_REASONS

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def unknown(cls, checker: str, reason: str, summary: str, evidence: list[dict[str, Any]] | None = None,
                figures: Figures | None = None) -> Verdict:  # fmt: skip
        if reason not in UNKNOWN_REASONS:
            raise ValueError(f"unknown reason {reason!r}; known: {', '.join(UNKNOWN_REASONS)}")
        return cls(checker, UNKNOWN, summary, evidence or [], figures or {}, reason)


@dataclass(frozen=True)
class CohortInfo:
    name: str
    clients: int
    kind: str  # "probe" | "stuck" | "stuck_pong"
    view: Any = None  # the view its clients ask for (a node or a list of nodes); None: everything


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
    connect: Record | None = None  # the handshake's record, just before the init (with ``since`` if resuming)
    resume_requests: list[Record] = field(default_factory=list)  # resume messages sent on this connection

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

    def resume_asked(self) -> bool | None:
        """Whether the client asked to resume on this connection (at connect or by a message) or the
        server said it resumed; None when the history does not say (no connect record)."""
        if self.resume_requests or self.notice("resumed") is not None:
            return True
        return None if self.connect is None else self.connect.get("since") is not None

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
    # What the target file declares: its ``semantics`` and the field of an event that carries its id.
    semantics: dict[str, str] = field(default_factory=dict)
    event_id_field: str = "piece_id"
    event_id_setting: str = "messages.event_id"  # where the target file names that field
    shutdown_code: int = 1001  # the close code the target's protocol sends when it shuts down

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
    connect: Record | None = None
    for record in records:
        kind = record["kind"]
        if kind == "connect":
            connect = record
        elif kind == "init":
            current = Connection(init=record, connect=connect)
            connections.append(current)
            connect = None
        elif kind == "resume_request" and current is not None and current.close is None:
            current.resume_requests.append(record)
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


def unbitten(ctx: CheckContext, cohort: str) -> Record | None:
    """The ``fault_bite`` record of a fault that hit ``cohort`` and did not take effect, else None (also
    when the fault kept no such record: faults that need no bite, runs recorded before them)."""
    for start in ctx.history.of("fault_start"):
        if not hits(start, cohort):
            continue
        bites = [r for r in ctx.history.of("fault_bite") if r.get("fault") == start.get("fault")]
        if bites and not any(r.get("bit") for r in bites):
            return bites[-1]
    return None


def did_not_bite(checker: str, bite: Record) -> Verdict:
    evidence = {"fault": bite.get("fault"), "cohort": bite.get("cohort"), "problem": "fault did not bite",
                "how": bite.get("how"), "t": bite["t"], **(bite.get("figures") or {})}  # fmt: skip
    return Verdict.unknown(checker, DID_NOT_BITE, f"the fault did not take effect: {bite.get('how')}", [evidence])


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


def parse_options(
    checker: str, given: dict[str, Any], defaults: dict[str, Any], required: tuple[str, ...] = ()
) -> dict:
    unknown = sorted(set(given) - set(defaults) - set(required))
    if unknown:
        known = ", ".join(sorted([*defaults, *required])) or "none"
        raise ValueError(f"{checker}: unknown option(s) {', '.join(unknown)}; known: {known}")
    missing = [name for name in required if name not in given]
    if missing:
        raise ValueError(f"{checker}: missing required option(s) {', '.join(missing)}")
    wrong = [f"{name} {problem}" for name, value in given.items()
             if (problem := type_problem(value, defaults.get(name)))]  # fmt: skip
    if wrong:
        raise ValueError(f"{checker}: option {'; '.join(wrong)}")
    return {name: None if isinstance(value, Unset) else value for name, value in {**defaults, **given}.items()}


def cap_evidence(items: list[dict[str, Any]], limit: int = MAX_EVIDENCE) -> list[dict[str, Any]]:
    return sorted(items, key=lambda e: e.get("t", math.inf))[:limit]


def first_record(seq: Iterable[Record], kind: str, **match: Any) -> Record | None:
    return next((r for r in seq if r["kind"] == kind and all(r.get(k) == v for k, v in match.items())), None)


def rounded(value: float) -> float:
    return round(value, 3)


def merge_windows(spans: list[Window]) -> list[Window]:
    """Overlapping windows joined into one (keeping the first one's event), in time order."""
    merged: list[Window] = []
    for span in sorted(spans, key=lambda w: w.start):
        if merged and span.start <= merged[-1].end:
            merged[-1] = Window(merged[-1].start, max(merged[-1].end, span.end), merged[-1].event)
        else:
            merged.append(span)
    return merged


def told_to_resync(prev: Connection, nxt: Connection) -> bool:
    new_epoch = prev.epoch is not None and nxt.epoch is not None and prev.epoch != nxt.epoch
    return new_epoch or nxt.notice("resync_required") is not None


def describe_item(item: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in item.items() if k != "problem" and not isinstance(v, dict | list)) + (
        f" ({item['problem']})" if "problem" in item else ""
    )


# ---------------------------------------------------------------------------------------------
# What a History shows of the clients, for readers other than the checkers (the reports)


def client_cohorts(history: History) -> dict[str, str]:
    """Each client's cohort."""
    return dict(CheckContext(history=history).cohort_of)


def live_latencies(history: History) -> list[tuple[float, float]]:
    """(t, recv_at - sent_at in ms) of every live batch a client received: replays after a resume are left out."""
    ctx = CheckContext(history=history)
    out = []
    for client in ctx.by_client:
        for conn in ctx.connections(client):
            for batch in conn.batches:
                if conn.is_replay(batch) or batch.get("sent_at") is None or batch.get("recv_at") is None:
                    continue
                out.append((float(batch["t"]), (batch["recv_at"] - batch["sent_at"]) * 1000.0))
    return out


def connected_counts(history: History, times: Iterable[float]) -> list[int]:
    """How many clients the harness held connected (from connect to close) at each of ``times``."""
    ctx = CheckContext(history=history)
    return [sum(ctx.connected_at(client, t) for client in ctx.intervals) for t in times]


# ---------------------------------------------------------------------------------------------
# The registry, and running the checkers

Check = Callable[[CheckContext, dict[str, Any]], Verdict]
CHECKERS: dict[str, Check] = {}
# The guarantee each checker judges, in a few words, in the order the checkers registered.
GUARANTEES: dict[str, str] = {}


def register(name: str, guarantee: str) -> Callable[[Check], Check]:
    """Decorator: ``@register("delivery", "Broadcast isolation")`` makes a function the checker ``name``."""

    def add(check: Check) -> Check:
        if name in CHECKERS:
            raise ValueError(f"checker {name!r} is registered twice")
        CHECKERS[name] = check
        GUARANTEES[name] = guarantee
        return check

    return add


def guarantee_of(checker: str) -> str:
    """The guarantee a checker (``eviction@rst`` included) judges; the checker's name for an unknown one."""
    name = checker_name(checker)
    return GUARANTEES.get(name, name)


def checker_name(key: str) -> str:
    """``eviction@rst`` runs the eviction checker a second time with other options."""
    return key.split("@", 1)[0]


def run_checks(ctx: CheckContext, checks: dict[str, dict[str, Any] | None]) -> list[Verdict]:
    """Runs each named checker with its options, in the given order. A checker that raises gives an
    "error" verdict carrying the traceback; an unknown name is a ValueError naming the known ones.

    When the clients' batches carry none of the fed ids (``identity_problem``), the checkers that
    follow ids are not run: each is an "error" naming the mapping to fix, and they come first."""
    unknown = sorted({checker_name(n) for n in checks} - set(CHECKERS))
    if unknown:
        raise ValueError(f"unknown checker(s) {', '.join(unknown)}; known: {', '.join(CHECKERS)}")
    problem = identity_problem(ctx.history, ctx.event_id_field, ctx.event_id_setting)
    if problem is None:
        return [_run_one(name, ctx, options or {}) for name, options in checks.items()]
    blind = [Verdict(n, ERROR, problem.summary, [problem.evidence]) for n in checks if checker_name(n) in BY_ID]
    return blind + [_run_one(n, ctx, opts or {}) for n, opts in checks.items() if checker_name(n) not in BY_ID]


def _run_one(name: str, ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    try:
        verdict = CHECKERS[checker_name(name)](ctx, dict(options))
    except Exception as exc:
        return raised(name, exc)
    verdict.checker = name
    return verdict


def raised(name: str, exc: BaseException) -> Verdict:
    """The verdict of a checker that raised: an error of the harness, not a broken guarantee."""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    error = f"{type(exc).__name__}: {exc}"
    evidence = {"problem": "the checker raised", "error": error,
                "where": f"{where.filename}:{where.lineno}" if where else None,
                "traceback": "".join(traceback.format_exception(exc))}  # fmt: skip
    return Verdict(name, ERROR, f"the {name} checker raised {error}", [evidence])


def scenario_status(verdicts: Iterable[Verdict], harness_error: str | None = None) -> str:
    """A scenario's status from its verdicts: "error" when the harness failed it, else the first of
    fail, error, unknown that a verdict shows, else "pass"."""
    if harness_error:
        return ERROR
    statuses = {v.status for v in verdicts}
    return next((status for status in PRECEDENCE if status in statuses), PASS)


def read_status(verdict: dict[str, Any]) -> tuple[str, str | None]:
    """A recorded verdict's (status, unknown_reason), also for runs recorded before "unknown": their
    "unreliable" is unknown/unreliable and their "skipped" unknown/not_applicable."""
    status = str(verdict.get("status"))
    if status == UNRELIABLE:
        return UNKNOWN, UNRELIABLE
    if status == SKIPPED:
        return UNKNOWN, NOT_APPLICABLE
    return status, verdict.get("unknown_reason")
