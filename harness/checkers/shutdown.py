"""Graceful shutdown: every client gets the protocol's going-away close (1001 by default) in time."""

from __future__ import annotations

from typing import Any

from harness.checkers.base import (
    DID_NOT_BITE,
    FAIL,
    NOT_APPLICABLE,
    PASS,
    CheckContext,
    Figures,
    Record,
    Verdict,
    cap_evidence,
    describe_item,
    did_not_bite,
    first_record,
    parse_options,
    register,
    rounded,
    unbitten,
)


@register("shutdown", "Graceful shutdown")
def check_shutdown(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """After the target was told to stop (the ``target`` record with event "stopping", else the start of a
    server_stop fault), every reading client connected at that moment gets a close with ``code`` from the
    server within ``within`` seconds.

    A client that never read anything (no init: a stuck reader) cannot see a close frame; for those the
    target must have exited (``stopped`` or ``exited``) within the bound, which closes their sockets, so a
    server that hangs on a stuck client still fails.

    Options:
      within: the bound in seconds (default 5.0).
      code: the expected close code (default: the target dialect's shutdown code, 1001 going away;
        Centrifugo's is 3001).
    """
    opts = parse_options("shutdown", options, {"within": 5.0, "code": ctx.shutdown_code})
    within, code = float(opts["within"]), opts["code"]
    stop = first_record(ctx.history.of("target"), "target", event="stopping") or first_record(
        ctx.history.of("fault_start"), "fault_start", type="server_stop"
    )
    if stop is None:
        why = "the fault did not take effect: the target was never stopped (no 'stopping' target record)"
        return Verdict.unknown("shutdown", DID_NOT_BITE, why, [{"problem": "no trigger"}])
    ts = stop["t"]
    connected = [c for c, ws in ctx.intervals.items() if any(ts in w and w.event != "connect_error" for w in ws)]
    bite = next((b for cohort in sorted({ctx.cohort_of.get(c, "") for c in connected})
                 if (b := unbitten(ctx, cohort)) is not None), None)  # fmt: skip
    if bite is not None:
        return did_not_bite("shutdown", bite)
    reading = [c for c in connected if _has_read(ctx, c, ts)]
    silent = [c for c in connected if c not in reading]
    exited = next(
        (r for r in ctx.history.of("target") if r.get("event") in ("stopped", "exited") and r["t"] >= ts), None
    )
    evidence = [e for c in reading if (e := _close_problem(ctx, c, ts, within, code)) is not None]
    if silent and (exited is None or exited["t"] - ts > within):
        evidence += [_hung_on(ctx, c, ts, within, exited) for c in silent]
    figures = _shutdown_figures(ctx, reading, silent, ts, exited, len(evidence))
    if not connected:
        why = f"not applicable: no client was connected when the target was told to stop at t={ts:.2f}s"
        return Verdict.unknown("shutdown", NOT_APPLICABLE, why, [], figures)
    if evidence:
        first = describe_item(cap_evidence(evidence)[0])
        summary = (
            f"{len(evidence)} of {len(connected)} client(s) not closed properly within {within:g}s; first: {first}"
        )
        return Verdict("shutdown", FAIL, summary, cap_evidence(evidence), figures)
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
        item["target_exited_after_s"] = rounded(exited["t"] - ts)
    return {**item, "t": ts + within}


def _shutdown_figures(
    ctx: CheckContext, reading: list[str], silent: list[str], ts: float, exited: Record | None, bad: int
) -> Figures:
    closes = [r["t"] - ts for c in reading if (r := _close_after(ctx, c, ts)) is not None]
    figures: Figures = {
        "clients": len(reading) + len(silent),
        "non_reading": len(silent),
        "bad": bad,
        "close_max_s": rounded(max(closes, default=0.0)),
    }
    if exited is not None:
        figures["target_exited_after_s"] = rounded(exited["t"] - ts)
    return figures


def _close_after(ctx: CheckContext, client: str, t: float) -> Record | None:
    return next((r for r in ctx.by_client.get(client, []) if r["kind"] == "close" and r["t"] >= t), None)


def _close_problem(ctx: CheckContext, client: str, ts: float, within: float, code: int) -> dict[str, Any] | None:
    close = _close_after(ctx, client, ts)
    base = {"client": client, "cohort": ctx.cohort_of.get(client)}
    if close is None or close["t"] - ts > within:
        late = {"closed_after_s": rounded(close["t"] - ts), "code": close.get("code")} if close else {}
        return {**base, "problem": "no close within the bound", **late, "t": close["t"] if close else ts + within}
    if close.get("code") != code or close.get("by") != "server":
        return {
            **base,
            "problem": "wrong close",
            "code": close.get("code"),
            "by": close.get("by"),
            "reason": close.get("reason"),
            "closed_after_s": rounded(close["t"] - ts),
            "t": close["t"],
        }
    return None
