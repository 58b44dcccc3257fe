"""The fault-free phase of a fault scenario: from the feed's first write to the first fault.

A delivery failure is the fault's doing only if the target kept up with the feed before any fault. If
even the best-served healthy client had not received the events fed before the first fault (all but
those of its last ``LAG_S``), or their end-to-end latency was already over the scenario's bound, the
target was fed above its capacity: the failure says nothing about the fault, and the delivery
verdict is unknown (unreliable) instead. Only the best-served client is judged, so a target that
fails one client on purpose is still caught; it is never used to turn a pass into anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.checkers.base import (
    FAIL,
    MAX_EVIDENCE,
    UNRELIABLE,
    CheckContext,
    Figures,
    Record,
    Verdict,
    cap_evidence,
    first_record,
    latency_quantiles,
)

# Events fed in this last stretch before the first fault may still be on their way when it starts.
LAG_S = 0.25
# The share of the phase's events the best-served client must have received by the first fault.
KEEP_UP_SHARE = 0.9
MIN_EVENTS = 20  # fewer events than this in the phase tell nothing either way


@dataclass
class Phase:
    """What the best-served healthy client saw of the events fed before the first fault."""

    start: float
    end: float
    fed: int
    client: str
    received: int  # events of the phase it received before the first fault
    judged: int  # events fed before ``end - LAG_S``
    judged_received: int  # of those, received before the first fault
    e2e: dict[str, float | int]

    @property
    def fed_rate(self) -> float:
        return self.fed / (self.end - self.start)

    @property
    def delivered_rate(self) -> float:
        return self.received / (self.end - self.start)

    @property
    def share(self) -> float:
        return self.judged_received / self.judged

    def behind(self, opts: dict[str, Any]) -> str | None:
        """Why the target did not keep up in this phase, or None."""
        if self.share < KEEP_UP_SHARE:
            return f"{self.client} had {self.share:.0%} of the events fed before the first fault when it began"
        for quantile in ("p50", "p99"):
            limit = opts.get(f"e2e_{quantile}_ms")
            if limit is not None and self.e2e["count"] and self.e2e[quantile] > limit:
                return f"end-to-end latency {quantile} already {self.e2e[quantile]:.0f} ms (bound {limit} ms)"
        return None

    def figures(self) -> Figures:
        return {
            "fault_free_s": round(self.end - self.start, 3),
            "fault_free_fed_per_s": round(self.fed_rate, 1),
            "fault_free_delivered_per_s": round(self.delivered_rate, 1),
            "fault_free_received_share": round(self.share, 4),
        }


def fault_free_phase(ctx: CheckContext, cohorts: list[str]) -> Phase | None:
    """The phase before the first fault, as the best-served client of ``cohorts`` saw it; None without
    a fault, or with too few events before it to tell."""
    first_fault = first_record(ctx.history.records, "fault_start")
    if first_fault is None:
        return None
    end = float(first_fault["t"])
    fed = [f for f in ctx.history.of("feed") if f["t"] < end and f.get("ids")]
    judged = {i for f in fed if f["t"] <= end - LAG_S for i in f["ids"]}
    if len(judged) < MIN_EVENTS:
        return None
    start = float(fed[0]["t"])
    fed_w = {i: f["w"] for f in fed for i in f["ids"]}
    phases = [_client_phase(ctx, client, start, end, fed_w, judged) for c in cohorts for client in ctx.clients_of(c)]
    return max(phases, key=lambda p: (p.judged_received, p.received), default=None)


def _client_phase(
    ctx: CheckContext, client: str, start: float, end: float, fed_w: dict[str, float], judged: set[str]
) -> Phase:
    received: dict[str, Record] = {}
    for batch in ctx.by_client.get(client, []):
        if batch["kind"] == "batch" and batch["t"] < end:
            for event_id in batch.get("ids") or []:
                if event_id in fed_w:
                    received.setdefault(event_id, batch)
    e2e = latency_quantiles(
        (b["recv_at"] - fed_w[i]) * 1000.0 for i, b in received.items() if b.get("recv_at") is not None
    )
    return Phase(start, end, len(fed_w), client, len(received), len(judged), len(judged & set(received)), e2e)


def unless_overfed(ctx: CheckContext, opts: dict[str, Any], cohorts: list[str], verdict: Verdict) -> Verdict:
    """The delivery verdict, or unknown (unreliable) when it failed and the target had not kept up
    with the feed before any fault either."""
    if verdict.status != FAIL:
        return verdict
    phase = fault_free_phase(ctx, cohorts)
    why = phase.behind(opts) if phase is not None else None
    if phase is None or why is None:
        return verdict
    summary = (
        f"the target does not keep up without faults (fed {phase.fed_rate:.0f}/s, delivered "
        f"{phase.delivered_rate:.0f}/s before the first fault: {why}); feed it less, e.g. a share of "
        f"its capacity (wschaos calibrate); not judged: {verdict.summary}"
    )
    item = {"problem": "target behind before any fault", "client": phase.client, "fed_per_s": round(phase.fed_rate, 1),
            "delivered_per_s": round(phase.delivered_rate, 1), "received_share": round(phase.share, 4),
            "t": phase.end}  # fmt: skip
    evidence = [item, *cap_evidence(verdict.evidence, MAX_EVIDENCE - 1)]
    return Verdict.unknown(verdict.checker, UNRELIABLE, summary, evidence, {**verdict.figures, **phase.figures()})
