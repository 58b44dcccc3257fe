"""Broadcast isolation: every healthy client gets every broadcast, once, in order, in time."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from harness.checkers.base import (
    BACKLOG_LIMIT,
    CPU_LIMIT_PERCENT,
    FAIL,
    GRACEFUL_EVENTS,
    NOT_APPLICABLE,
    PASS,
    UNRELIABLE,
    CheckContext,
    Connection,
    Figures,
    Record,
    Verdict,
    Window,
    cap_evidence,
    describe_item,
    latency_quantiles,
    parse_options,
    register,
    saturation_reason,
    told_to_resync,
)
from harness.checkers.fault_free import unless_overfed
from harness.optiontypes import NO_LIST, NO_NUMBER

STALL_EVIDENCE_S = 2.0  # a failing verdict names the longest stall when it was longer than this


@dataclass
class ClientDelivery:
    """What one client's batches show: problems as evidence items, and its latencies."""

    client: str
    batches: int = 0
    lost: list[int] = field(default_factory=list)
    before_init: list[int] = field(default_factory=list)  # live batches at or below their init's seq
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
            "before_init": len(self.before_init),
            "duplicated": len(self.duplicated),
            "reordered": len(self.reordered),
            "duplicated_ids": len(self.duplicated_ids),
            "missing_ids": len(self.missing_ids),
        }


@register("delivery", "Broadcast isolation")
def check_delivery(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """Every healthy client receives every broadcast exactly once, in order, within a latency bound.

    Per client, from its batches: lost seqs (gaps within one connection, which expects init.seq + 1
    next), batches at or below the init's seq on a connection that asked for no resume (the init gave a
    wrong position), duplicated seqs, reordered seqs, event ids received twice; and end to end, every event id fed
    after the client's first init must reach it (except what a resync_required or a new epoch excuses,
    and what was fed after a close the harness or a target stop caused). A client with no batches while
    events were fed fails. Latency is recv_at - sent_at of live batches (replays excluded), in ms.

    Options:
      cohorts: the cohorts to check (default: every probe cohort that no fault hit and that asks for no
        view; the views checker judges those).
      latency_p50_ms, latency_p99_ms: bounds on those quantiles (default None: reported, not judged).
      e2e_p50_ms, e2e_p99_ms: bounds on end-to-end latency, from the feed's write of an event to its
        receipt (it includes the target's own ingest and batching delays, and any stall before a broadcast).
      settle_s: how long before a break an event may still be in flight and excused with it (default 1.0).
      clock_tolerance_ms: how far a batch's sent_at may seem to precede the feed's write of its events, or
        follow its receipt, before the figures are a clock or unit error (default 100; same machine).
      cpu_limit_percent, backlog_limit: when the harness itself was saturated: its CPU above this percent
        (default 85) or one client's unprocessed bytes above this (default 256 KiB) in a ``harness_cpu``
        record. Then the verdict is "unknown" (reason "unreliable") instead of pass or fail (loss, duplicates and
        reorders still fail).

    In a fault scenario, a failure while the target did not keep up with the feed even before the first
    fault is unknown (unreliable) instead: see ``harness.checkers.fault_free``.

    A latency no clock can give fails whatever else holds: negative (a batch received before it was
    sent), or above the end-to-end latency of its events (sent before they were fed), beyond
    ``clock_tolerance_ms``, or a sent_at that is no number: the target's clock or unit is wrong.
    """
    opts = parse_options(
        "delivery",
        options,
        {
            "cohorts": NO_LIST,
            "latency_p50_ms": NO_NUMBER,
            "latency_p99_ms": NO_NUMBER,
            "e2e_p50_ms": NO_NUMBER,
            "e2e_p99_ms": NO_NUMBER,
            "settle_s": 1.0,
            "cpu_limit_percent": CPU_LIMIT_PERCENT,
            "backlog_limit": BACKLOG_LIMIT,
            "clock_tolerance_ms": 100.0,
        },
    )
    cohorts = opts["cohorts"] or sorted(
        n for n, c in ctx.cohorts.items() if c.kind == "probe" and n not in ctx.faulted and c.view is None
    )  # a cohort with a view gets only the view's events: the views checker judges it
    if not cohorts:
        why = "not applicable: no healthy probe cohort to check: every probe cohort was faulted or has a view"
        return Verdict.unknown("delivery", NOT_APPLICABLE, why)
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
    stall = _longest_stall(ctx, cohorts, fed)
    figures.update({"stall_max_s": stall["length_s"], "stall_start_t": stall["t"]} if stall else {})
    absurd = clock_errors(ctx, cohorts, fed, opts["clock_tolerance_ms"])
    if absurd:
        figures["clock_errors"] = len(absurd)
        scope = f"{figures['clients']} client(s) of {', '.join(cohorts)}"
        summary = f"{scope}: clock or unit error: {len(absurd)} batch(es); first: {describe_item(absurd[0])}"
        return Verdict("delivery", FAIL, summary, cap_evidence(absurd), figures)
    verdict = _judge(ctx, opts, cohorts, evidence, figures, latency, e2e, results)
    if verdict.status == FAIL and stall and stall["length_s"] > STALL_EVIDENCE_S:
        verdict.evidence.append(stall)
    return verdict


def _judge(ctx: CheckContext, opts: dict[str, Any], cohorts: list[str], evidence: list[dict[str, Any]],
           figures: Figures, latency: dict[str, float | int], e2e: dict[str, float | int],
           results: list[ClientDelivery]) -> Verdict:  # fmt: skip
    over = _e2e_breaches(opts, e2e)
    if over and not evidence and not saturation_reason(ctx.history, opts["cpu_limit_percent"], opts["backlog_limit"]):
        scope = f"{figures['clients']} client(s) of {', '.join(cohorts)}"
        summary = f"{scope}: end-to-end delivery latency over its bound: {describe_item(over[0])}"
        return unless_overfed(ctx, opts, cohorts, Verdict("delivery", FAIL, summary, over, figures))
    if not evidence and not figures["events_fed"]:
        why = f"not applicable: no event was fed while {figures['clients']} client(s) of {', '.join(cohorts)} listened"
        return Verdict.unknown("delivery", NOT_APPLICABLE, why, [], figures)
    verdict = _delivery_verdict(ctx, opts, cohorts, evidence, figures, latency, results)
    return unless_overfed(ctx, opts, cohorts, verdict)


def _longest_stall(ctx: CheckContext, cohorts: list[str], fed: list[Record]) -> dict[str, Any] | None:
    """The longest stretch while the feed ran (and the target was up) in which no client of ``cohorts``
    received a batch: a broadcaster stalled behind one client shows here."""
    if not fed:
        return None
    first, last = fed[0]["t"], fed[-1]["t"]
    names = {c for cohort in cohorts for c in ctx.clients_of(cohort)}
    times = [r["t"] for r in ctx.history.of("batch") if r.get("client") in names and first <= r["t"] <= last]
    gaps = [(b - a, a) for a, b in pairwise([first, *times, last])
            if not any(w.start <= b and a <= w.end for w in ctx.down_windows)]  # fmt: skip
    if not gaps:
        return None
    length, start = max(gaps)
    return {"problem": "healthy clients received nothing while the feed ran", "t": round(start, 3),
            "length_s": round(length, 3)}  # fmt: skip


def _end_to_end_ms(ctx: CheckContext, cohorts: list[str], fed: list[Record]) -> list[float]:
    """From the moment the harness fed each event to the moment a client received it (live batches
    only). Unlike recv_at - sent_at, this also counts time the event waited inside the server before
    it was broadcast, which is where a stalled broadcaster shows. An event fed before or while the
    target was away (killed, stopped, paused by the scenario) is timed from when the target was back:
    the outage is the scenario's, what follows it the target's."""
    fed_at = {event_id: (rec["w"], rec["t"]) for rec in fed for event_id in rec.get("ids") or []}
    values = []
    for cohort in cohorts:
        for client in ctx.clients_of(cohort):
            for conn in ctx.connections(client):
                for batch in conn.batches:
                    if conn.is_replay(batch) or batch.get("recv_at") is None:
                        continue
                    for i in batch.get("ids") or []:
                        if i in fed_at:
                            wall, t = fed_at[i]
                            away = _away_before(ctx.down_windows, t, batch["t"])
                            values.append((batch["recv_at"] - wall - away) * 1000.0)
    return values


def _away_before(windows: list[Window], fed_t: float, recv_t: float) -> float:
    """Seconds from ``fed_t`` to the end of the last down window that overlaps ``[fed_t, recv_t]``."""
    ends = [w.end for w in windows if w.start <= recv_t and fed_t <= w.end]
    return max(0.0, min(max(ends), recv_t) - fed_t) if ends else 0.0


def clock_errors(ctx: CheckContext, cohorts: list[str], fed: list[Record], tolerance_ms: float) -> list[dict]:
    """Live batches whose latency no clock can give: sent_at not a number, received before it was sent,
    or sent before the feed wrote one of its events (latency above its end-to-end latency)."""
    fed_at = {event_id: rec["w"] for rec in fed for event_id in rec.get("ids") or []}
    errors = []
    for cohort in cohorts:
        for client in ctx.clients_of(cohort):
            for conn in ctx.connections(client):
                live = [b for b in conn.batches if not conn.is_replay(b) and b.get("recv_at") is not None]
                for batch in live:
                    if (problem := _clock_problem(batch, fed_at, tolerance_ms)) is not None:
                        errors.append({"client": client, "seq": batch.get("seq"), **problem, "t": batch["t"]})
    return errors


def _clock_problem(batch: Record, fed_at: dict[str, float], tolerance_ms: float) -> dict[str, Any] | None:
    sent_at = batch.get("sent_at")
    if sent_at is None:
        return None
    if not isinstance(sent_at, int | float) or isinstance(sent_at, bool):
        return {"problem": "clock or unit error: sent_at is not a number", "sent_at": str(sent_at)[:40]}
    latency = (batch["recv_at"] - sent_at) * 1000.0
    if latency < -tolerance_ms:
        return {"problem": "clock or unit error: negative latency", "latency_ms": round(latency, 3)}
    fed = [fed_at[i] for i in batch.get("ids") or [] if i in fed_at]
    e2e = (batch["recv_at"] - max(fed)) * 1000.0 if fed else None
    if e2e is not None and latency > e2e + tolerance_ms:
        return {"problem": "clock or unit error: latency above end-to-end (sent before fed)",
                "latency_ms": round(latency, 3), "e2e_ms": round(e2e, 3)}  # fmt: skip
    return None


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
    _before_init(result, conn)
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


def _before_init(result: ClientDelivery, conn: Connection) -> None:
    """On a connection that asked for no resume, every batch is new: one at or below the seq the init
    announced means the init gave a wrong position (a client resuming from it would skip a batch)."""
    if conn.resume_asked() is not False or conn.init_seq is None:
        return
    stale = [b for b in conn.batches if isinstance(b.get("seq"), int) and b["seq"] <= conn.init_seq]
    if stale:
        result.before_init.extend(b["seq"] for b in stale)
        _note(result, "batch at or below the init's seq, no resume asked", stale[0], seq=stale[0]["seq"],
              init_seq=conn.init_seq, epoch=conn.epoch)  # fmt: skip


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
    sent_at = batch.get("sent_at")
    if isinstance(sent_at, int | float) and not isinstance(sent_at, bool) and batch.get("recv_at") is not None:
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
    excused = _excused(ctx, conns, settle_s, fed)
    return [
        (i, f["t"])
        for f in fed
        if f["t"] >= start and not any(f["t"] in w for w in excused)
        for i in f.get("ids") or []
    ]


def _excused(ctx: CheckContext, conns: list[Connection], settle_s: float, fed: list[Record]) -> list[Window]:
    """When events may legitimately miss this client's batches: a break the new connection was told to
    resync after (or any break, when the target declares gaps after a reconnect allowed), from what the
    old connection last received, and anything after a final close the harness chose or a target stop
    or crash explains."""
    gaps_allowed = ctx.semantics.get("gaps_after_reconnect") == "allowed"
    breaks = [(prev, nxt, told) for prev, nxt in pairwise(conns) if (told := told_to_resync(prev, nxt)) or gaps_allowed]
    fed_at = {i: f["t"] for f in fed for i in f.get("ids") or []} if breaks else {}  # most clients have no break
    excused = [
        Window(_loss_from(prev, settle_s, fed_at), nxt.start_t, "resync" if told else "gap allowed")
        for prev, nxt, told in breaks
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


def _loss_from(prev: Connection, settle_s: float, fed_at: dict[str, float]) -> float:
    """Where a break's loss may begin: ``settle_s`` before the old connection ended, or earlier, right
    after the last event it received, when the server held the rest back (a slow link, a full queue)
    until it dropped the connection. Holes before that event are not excused: they were lost on a
    connection that went on."""
    received = [fed_at[i] for b in prev.batches for i in b.get("ids") or [] if i in fed_at]
    last = max(received, default=prev.start_t)
    return min(prev.end_t - settle_s, last)


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
    for name in ("lost", "before_init", "duplicated", "reordered", "duplicated_ids", "missing_ids"):
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
            for k in ("lost", "before_init", "duplicated", "reordered", "duplicated_ids", "missing_ids")
            if figures[k]
        )
        first = cap_evidence(evidence)[0]
        return Verdict(
            "delivery",
            FAIL,
            f"{scope}: {problems or first['problem']}; first: {describe_item(first)}{latency_note}",
            cap_evidence(evidence),
            figures,
        )
    if saturated and latency["count"]:
        return Verdict.unknown(
            "delivery",
            UNRELIABLE,
            f"{scope}: nothing lost, duplicated or reordered; latency not judged: {saturated}{latency_note}",
            [],
            figures,
        )
    over = _latency_breaches(opts, latency, results)
    if over:
        return Verdict(
            "delivery", FAIL, f"{scope}: delivery latency over its bound: {describe_item(over[0])}", over, figures
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
