"""Fair limiting: clients that keep under the target's advertised request rate are never limited."""

from __future__ import annotations

from typing import Any

from harness.checkers.base import (
    FAIL,
    NOT_APPLICABLE,
    PASS,
    CheckContext,
    Figures,
    Verdict,
    cap_evidence,
    did_not_bite,
    hits,
    parse_options,
    register,
    unbitten,
)
from harness.checkers.victim_closes import SERVER_SIDE, how_closed


@register("rate_limit", "Fair limiting")
def check_rate_limit(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """While a steady_requests fault has ``cohort``'s clients send requests below the advertised limit (and
    ``settle_s`` after), none of them gets an error notice (a rate-limit answer is one) and none has
    its connection closed by the target.

    Options:
      cohort (required): the chatty cohort.
      settle_s: how long after the last request an answer still counts (default 1.0).
    """
    opts = parse_options("rate_limit", options, {"settle_s": 1.0}, required=("cohort",))
    cohort = opts["cohort"]
    starts = (r for r in ctx.history.of("fault_start") if hits(r, cohort) and r.get("type") == "steady_requests")
    start = next(starts, None)
    if start is None:
        why = f"not applicable: no steady_requests fault on cohort {cohort!r}"
        return Verdict.unknown("rate_limit", NOT_APPLICABLE, why)
    bite = unbitten(ctx, cohort)
    if bite is not None:
        return did_not_bite("rate_limit", bite)
    heal = next((r["t"] for r in ctx.history.of("fault_heal") if r.get("fault") == start.get("fault")), None)
    end = (heal if heal is not None else ctx.history.now()) + float(opts["settle_s"])
    clients = set(ctx.clients_of(cohort))
    evidence = []
    for client in sorted(clients):
        for r in ctx.by_client.get(client, []):
            if not start["t"] <= r["t"] <= end:
                continue
            if r["kind"] == "notice" and r.get("type") == "error":
                evidence.append({"client": client, "t": r["t"], "problem": "error answer to a legitimate request",
                                 "body": str(r.get("body"))[:200]})  # fmt: skip
            elif r["kind"] == "close" and r.get("by") in SERVER_SIDE:
                evidence.append({"client": client, "t": r["t"], "problem": f"closed: {how_closed(r)}"})
    sent = next((r.get("figures") or {} for r in ctx.history.of("fault_bite") if r.get("fault") == start["fault"]), {})
    figures: Figures = {"clients": len(clients), "requests_sent": sent.get("requests_sent"), "rate": sent.get("rate"),
                        "problems": len(evidence)}  # fmt: skip
    what = f"{len(clients)} client(s) of {cohort!r} sending {sent.get('rate')} requests/s"
    if evidence:
        return Verdict("rate_limit", FAIL, f"{what} were limited or closed: {len(evidence)} time(s)",
                       cap_evidence(evidence), figures)  # fmt: skip
    return Verdict("rate_limit", PASS, f"{what} were never limited nor closed", [], figures)
