"""Liveness: new clients and health checks keep working during and after faults."""

from __future__ import annotations

from typing import Any

from harness.checkers.base import (
    FAIL,
    NOT_APPLICABLE,
    PASS,
    CheckContext,
    Figures,
    Record,
    Verdict,
    Window,
    cap_evidence,
    describe_item,
    parse_options,
    register,
)


@register("liveness", "Liveness")
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
    opts = parse_options("liveness", options, {"max_connect_s": 2.0, "grace_s": 3.0})
    limit = float(opts["max_connect_s"])
    probes = list(ctx.history.of("probe"))
    if not probes:
        return Verdict.unknown("liveness", NOT_APPLICABLE, "not applicable: no liveness probe ran")
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
        first = cap_evidence(evidence)[0]
        return Verdict(
            "liveness",
            FAIL,
            f"{figures['failed']} of {len(judged)} probe(s) failed or were slow; first: {describe_item(first)}",
            cap_evidence(evidence),
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
