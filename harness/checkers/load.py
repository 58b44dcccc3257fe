"""Under load: Locust's users (the ``locust`` records ``harness/load.py`` folds into the History) held:
few failures, no missed batches, delivery latency within a bound."""

from __future__ import annotations

from typing import Any

from harness.checkers.base import FAIL, PASS, UNRELIABLE, CheckContext, Verdict, register

CPU_SATURATED = 90.0  # a Locust process this busy may be the slow part, not the target


def load_figures(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The final summary if there is one, else the last sample (a run cut short)."""
    final = [r for r in records if r.get("phase") == "final" and "error" not in r]
    if final:
        return final[-1]
    samples = [r for r in records if r.get("phase") == "sample"]
    return samples[-1] if samples else None


@register("load", "Under load")
def check_load(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """Locust's users held: failures at most ``max_failure_ratio`` of requests (default 0.01), at most
    ``max_gaps`` batches missed (default 0), batch delivery p99 at most ``p99_ms`` (when given).
    A negative delivery latency (below ``-clock_tolerance_ms``, default 100) in any sample or the
    summary is a clock or unit error in the target's sent_at: a fail, whatever else held."""
    records = [r for r in ctx.history.of("locust") if r.get("role") != "worker"]
    figures = load_figures(records)
    if figures is None:
        return Verdict("load", FAIL, "no Locust statistics were recorded: the load never ran",
                       [{"records": len(records)}])  # fmt: skip
    keys = ("requests", "failures", "batches", "rps", "p50", "p99", "min_ms", "gaps", "gap_events")
    out = {k: figures.get(k) for k in keys}
    out["failure_ratio"] = round(figures["failures"] / figures["requests"], 4) if figures.get("requests") else 0.0
    out["peak_users"] = figures.get("peak_users", figures.get("users", 0))
    out = {k: v for k, v in out.items() if v is not None}
    absurd = negative_latencies(records, options.get("clock_tolerance_ms", 100.0))
    if absurd:
        summary = f"clock or unit error: negative delivery latency {absurd[0]['value_ms']:g} ms ({absurd[0]['figure']})"
        return Verdict("load", FAIL, summary, absurd[:5], out)
    problems, evidence = load_problems(figures, out, options)
    if not problems:
        return Verdict("load", PASS, load_summary(out), [], out)
    peak_cpu = max((r.get("cpu_max", 0.0) for r in records if r.get("phase") == "sample"), default=0.0)
    if problems == ["p99"] and peak_cpu > CPU_SATURATED:
        why = f"a Locust process used {peak_cpu:.0f}% CPU: the users, not the target, may be the slow part"
        summary = f"delivery p99 {out['p99']:g} ms is over the limit, but {why}"
        return Verdict.unknown("load", UNRELIABLE, summary, evidence, out)
    return Verdict("load", FAIL, "; ".join(e["problem"] for e in evidence if "problem" in e), evidence, out)


def negative_latencies(records: list[dict[str, Any]], tolerance_ms: float) -> list[dict[str, Any]]:
    """Latency figures below zero (beyond the tolerance) in Locust's samples and summary."""
    found = []
    for record in records:
        for key in ("min_ms", "p50", "p99"):
            value = record.get(key)
            if isinstance(value, int | float) and value < -tolerance_ms:
                figure = f"{record.get('phase')} {key}"
                found.append({"problem": "clock or unit error: negative latency", "figure": figure,
                              "value_ms": value, "t": record.get("t")})  # fmt: skip
    return found


def load_problems(figures: dict[str, Any], out: dict[str, Any], options: dict[str, Any]) -> tuple[list[str], list]:
    problems: list[str] = []
    evidence: list[dict[str, Any]] = []

    def fail(key: str, problem: str) -> None:
        problems.append(key)
        evidence.append({"problem": problem})

    if not figures.get("batches"):
        fail("batches", "the load users received no broadcasts")
    max_ratio = options.get("max_failure_ratio", 0.01)
    if out["failure_ratio"] > max_ratio:
        fail("failures", f"{out['failures']} of {out['requests']} Locust requests failed "
                         f"({out['failure_ratio']:.2%}, limit {max_ratio:.2%})")  # fmt: skip
    max_gaps = options.get("max_gaps", 0)
    if (figures.get("gaps") or 0) > max_gaps:
        fail("gaps", f"the load users missed {figures['gaps']} batches in {figures.get('gap_events', 0)} seq gaps "
                     f"(limit {max_gaps})")  # fmt: skip
    p99_ms = options.get("p99_ms")
    if p99_ms is not None and (figures.get("p99") or 0) > p99_ms:
        fail("p99", f"batch delivery p99 {figures['p99']:g} ms over the limit of {p99_ms:g} ms")
    evidence += [{"error": e["error"], "name": e["name"], "occurrences": e["occurrences"]}
                 for e in figures.get("errors", [])[:5]]  # fmt: skip
    return problems, evidence


def load_summary(out: dict[str, Any]) -> str:
    latency = f", p50/p99 {out.get('p50', 0):g}/{out.get('p99', 0):g} ms" if "p99" in out else ""
    received = f"{out.get('peak_users', 0)} Locust users received {out.get('batches', 0)} batches"
    failed = f"{out.get('failures', 0)} failures, {out.get('gaps', 0)} missed"
    return f"{received} ({out.get('rps', 0):g}/s{latency}), {failed}"
