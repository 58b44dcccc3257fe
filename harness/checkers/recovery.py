"""Recovery: after a cut heals, clients reconnect and get a consistent state."""

from __future__ import annotations

import math
from collections import Counter
from itertools import pairwise
from typing import Any

from harness.checkers.base import (
    DID_NOT_BITE,
    FAIL,
    GRACEFUL_EVENTS,
    PASS,
    CheckContext,
    Connection,
    Figures,
    Verdict,
    Window,
    cap_evidence,
    describe_item,
    did_not_bite,
    hits,
    merge_windows,
    parse_options,
    register,
    rounded,
    told_to_resync,
    unbitten,
)
from harness.checkers.reconnects import GAP_PROBLEMS, FedIds, reconnect_problems


@register("recovery", "Recovery")
def check_recovery(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """Every client of ``cohort`` that a fault disconnected reconnects with a new init within ``within``
    seconds of the heal (the fault_heal record; for a restart, the target's ready), and no reconnect
    leaves a silent gap: after the break the client either got what it missed (after a ``resumed``
    notice) or was told to resync (``resync_required``, or an init with a new epoch).

    Disconnected by the fault: a close by the server or an error between the fault's start and its heal
    + ``within`` (a close the harness chose, by "client", does not count). Faults without a cohort
    (server faults) and target kills and pauses count for every cohort. The gap checks apply to every
    reconnect of the cohort's clients: by seq (the seqs after the last one seen before the break), and
    by fed event id, also for batches without a seq (see ``harness.checkers.reconnects``), which also
    finds ids received twice and seqs going back across a reconnect. After a resync, nothing may be
    missing from the seq the new init announced on; and a ``resumed`` on a connection whose epoch is not
    the one the client had fails: the server claims to continue a stream it no longer has.

    A target file that declares ``semantics: {gaps_after_reconnect: allowed}`` does not promise the
    missed events: its gaps are counted and named in the summary, not failed.

    Options:
      cohort (required): the cohort to check.
      within: seconds after the heal by which clients must be back (default 5.0).
      settle_s: how far an event fed just before a break or just before the reconnect may be from
        its broadcast: those are not required after the reconnect (default 0.25).
    """
    opts = parse_options("recovery", options, {"within": 5.0, "settle_s": 0.25}, required=("cohort",))
    cohort, within = opts["cohort"], float(opts["within"])
    bite = unbitten(ctx, cohort)
    if bite is not None:
        return did_not_bite("recovery", bite)
    episodes = _episodes(ctx, cohort)
    if not episodes:
        why = f"the fault did not take effect: no fault or restart hit cohort {cohort!r}, nothing to recover from"
        return Verdict.unknown("recovery", DID_NOT_BITE, why, [{"cohort": cohort, "problem": "no trigger"}])
    fed = FedIds.of(ctx)
    evidence: list[dict[str, Any]] = []
    tally: Counter[str] = Counter(dict.fromkeys(("disconnected", "reconnected", "resumed", "resynced", "gaps"), 0))
    delays: list[tuple[float, float]] = []  # (after the heal, since the break) per reconnect
    for client in ctx.clients_of(cohort):
        conns = ctx.connections(client)
        evidence += _reconnects(client, conns, episodes, within, delays, tally)
        by_seq = _continuity(client, conns, tally)
        covered = {p["t"] for p in by_seq}
        by_id = reconnect_problems(client, conns, fed, episodes, float(opts["settle_s"]))
        evidence += by_seq + [p for p in by_id if p["problem"] not in GAP_PROBLEMS or p["t"] not in covered]
    gaps = [e for e in evidence if e["problem"] in GAP_PROBLEMS]
    tally["gaps"] = len(gaps)
    figures: Figures = {
        "clients": len(ctx.clients_of(cohort)),
        "episodes": len(episodes),
        **tally,
        "missed_events": sum(int(g.get("missing") or 0) for g in gaps),
        "after_heal_max_s": rounded(max((d[0] for d in delays), default=0.0)),
        "offline_max_s": rounded(max((d[1] for d in delays), default=0.0)),
    }
    if not evidence and not tally["disconnected"]:
        why = f"the fault did not take effect: no client of cohort {cohort!r} was disconnected, nothing to recover from"
        return Verdict.unknown("recovery", DID_NOT_BITE, why, [], figures)
    allowed = ctx.semantics.get("gaps_after_reconnect") == "allowed"
    if allowed:
        evidence = [e for e in evidence if e["problem"] not in GAP_PROBLEMS]
    if evidence:
        first = cap_evidence(evidence)[0]
        return Verdict(
            "recovery",
            FAIL,
            f"{first['problem']}: {len(evidence)} recovery problem(s) in cohort {cohort!r}; "
            f"first: {describe_item(first)}",
            cap_evidence(evidence),
            figures,
        )
    continuity = "no silent gap"
    if allowed and gaps:
        continuity = (
            f"{len(gaps)} gap(s), {figures['missed_events']} event(s) missed, allowed by the target's declared "
            "semantics (gaps_after_reconnect: allowed)"
        )
    return Verdict(
        "recovery",
        PASS,
        f"cohort {cohort!r}: all {tally['disconnected']} disconnection(s) reconnected within {within:g}s of the "
        f"heal ({tally['resumed']} resumed, {tally['resynced']} told to resync), {continuity}",
        cap_evidence(gaps) if allowed else [],
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
        # the fault that began last before the break: a close during a second fault on the cohort is
        # that fault's, even while the first one's heal is less than ``within`` ago
        episode = max((e for e in episodes if e.start <= broke <= e.end + within), key=lambda e: e.start, default=None)
        if episode is None:
            continue
        tally["disconnected"] += 1
        base = {"client": client, "closed_t": broke, "heal_t": episode.end, "fault": episode.event}
        if nxt is None:
            problems.append({**base, "problem": "did not reconnect", "t": broke})
        elif nxt.start_t > episode.end + within:
            late = rounded(nxt.start_t - episode.end)
            problems.append({**base, "problem": "reconnected late", "after_heal_s": late, "t": nxt.start_t})
        else:
            tally["reconnected"] += 1
            delays.append((max(0.0, nxt.start_t - episode.end), nxt.start_t - broke))
    return problems


def _continuity(client: str, conns: list[Connection], tally: Counter) -> list[dict[str, Any]]:
    """By seq, per reconnect: from the last seq the client had (or, after a resync, from the seq the new
    connection's init announced) up to the newest seq it saw, nothing may be missing; and a server
    that says ``resumed`` must not have changed its epoch under the client."""
    problems = []
    for prev, nxt in pairwise(conns):
        resumed = nxt.notice("resumed") is not None
        base = {"client": client, "init_seq": nxt.init_seq, "epoch": nxt.epoch, "t": nxt.start_t}
        if told_to_resync(prev, nxt):
            if resumed and nxt.notice("resync_required") is None:
                problems.append({**base, "problem": "resumed across an epoch change", "epoch_before": prev.epoch,
                                 "last_seq_before": prev.last_seq()})  # fmt: skip
                continue
            tally["resynced"] += 1
            last, problem = nxt.init_seq, "gap after resync"
        else:
            last, problem = prev.last_seq(), "gap after resume" if resumed else "silent gap"
        seqs = {b["seq"] for b in nxt.batches if b.get("seq") is not None}
        upto = max([*seqs, nxt.init_seq if nxt.init_seq is not None else -1])
        if last is None or upto <= last:
            continue
        missing = [s for s in range(last + 1, upto + 1) if s not in seqs]
        tally["resumed"] += resumed and problem != "gap after resync"
        if missing:
            problems.append({**base, "problem": problem, "first_missing_seq": missing[0], "missing": len(missing),
                             "last_seq_before": last})  # fmt: skip
    return problems
