"""Recovery: after a cut heals, clients reconnect and get a consistent state."""

from __future__ import annotations

import math
from collections import Counter
from itertools import pairwise
from typing import Any

from harness.checkers.base import (
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


@register("recovery", "Recovery")
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
    opts = parse_options("recovery", options, {"within": 5.0}, required=("cohort",))
    cohort, within = opts["cohort"], float(opts["within"])
    bite = unbitten(ctx, cohort)
    if bite is not None:
        return did_not_bite("recovery", bite)
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
        "after_heal_max_s": rounded(max((d[0] for d in delays), default=0.0)),
        "offline_max_s": rounded(max((d[1] for d in delays), default=0.0)),
    }
    if evidence:
        first = cap_evidence(evidence)[0]
        return Verdict(
            "recovery",
            FAIL,
            f"{len(evidence)} recovery problem(s) in cohort {cohort!r}; first: {describe_item(first)}",
            cap_evidence(evidence),
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
            late = rounded(nxt.start_t - episode.end)
            problems.append({**base, "problem": "reconnected late", "after_heal_s": late, "t": nxt.start_t})
        else:
            tally["reconnected"] += 1
            delays.append((max(0.0, nxt.start_t - episode.end), nxt.start_t - broke))
    return problems


def _continuity(client: str, conns: list[Connection], tally: Counter) -> list[dict[str, Any]]:
    problems = []
    for prev, nxt in pairwise(conns):
        if told_to_resync(prev, nxt):
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
