"""Leaks: what clients that came and went held in the target is released once they are gone."""

from __future__ import annotations

import statistics
from typing import Any

from harness.checkers.base import (
    FAIL,
    NOT_APPLICABLE,
    PASS,
    UNRELIABLE,
    CheckContext,
    Figures,
    Record,
    Verdict,
    did_not_bite,
    hits,
    parse_options,
    register,
    rounded,
    unbitten,
)

# Figures of the target's process (Target._process_stats), the slack option for each, and its unit.
PROCESS = {"num_fds": ("fds", 1), "num_threads": ("threads", 1), "rss_bytes": ("rss_mb", 1024 * 1024)}


@register("leaks", "No leaks")
def check_leaks(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """The target's descriptors, threads and memory (of its process, when the harness knows its pid)
    and its resource gauges (``metrics.resources`` of the target file: tasks, client objects) come
    back to their baseline once the fault that churned ``cohort`` has healed.

    Baseline: the median of the samples in the ``window_s`` seconds before that fault started. After:
    the lowest sample in the last ``window_s`` seconds of the steady state after the heal (a leak does
    not come and go; a passing spike does). Each may grow by at most its slack.

    Options:
      cohort (required): the cohort the churning fault hit.
      window_s: the length of both windows (default 1.0).
      fds, threads: slack in descriptors and threads (default 8, 2).
      rss_mb: slack in resident memory, MiB (default 32).
      gauges: slack of each resource gauge (default 4).
    """
    defaults = {"window_s": 1.0, "fds": 8, "threads": 2, "rss_mb": 32.0, "gauges": 4}
    opts = parse_options("leaks", options, defaults, required=("cohort",))
    cohort, window = opts["cohort"], float(opts["window_s"])
    samples = [r for r in ctx.history.of("metrics") if _measures(r)]
    if not samples:
        why = ("not applicable: the target showed nothing to judge (no process figures: no pid known; "
               "no resource gauges declared in its target file's metrics.resources)")  # fmt: skip
        return Verdict.unknown("leaks", NOT_APPLICABLE, why)
    start = next((r["t"] for r in ctx.history.of("fault_start") if hits(r, cohort)), None)
    if start is None:
        return Verdict.unknown("leaks", NOT_APPLICABLE, f"not applicable: no fault churned cohort {cohort!r}")
    bite = unbitten(ctx, cohort)
    if bite is not None:
        return did_not_bite("leaks", bite)
    after_t = _steady_end(ctx)
    before = [r for r in samples if start - window <= r["t"] < start]
    after = [r for r in samples if after_t is not None and after_t - window <= r["t"] <= after_t]
    if not before or not after:
        why = f"no metrics samples in the {window:g}s before the fault or at the end of the steady state after it"
        return Verdict.unknown("leaks", UNRELIABLE, why, [], {"before": len(before), "after": len(after)})
    starts = [r for r in ctx.history.of("target") if r.get("event") == "started"]
    restarts = [r for r in starts if before[0]["t"] < r["t"] <= after[-1]["t"]]
    if restarts:
        why = (f"the target restarted at t={restarts[0]['t']:.2f}s, between the baseline and the end: the figures "
               "after are another process's")  # fmt: skip
        return Verdict.unknown("leaks", UNRELIABLE, why, [{"problem": "target restarted", "t": restarts[0]["t"]}])
    return _judge(opts, before, after)


def _measures(record: Record) -> dict[str, float]:
    """What one metrics record tells: the process figures and the resource gauges, by name."""
    values = record.get("values") or {}
    found = {name: float(values[name]) for name in PROCESS if name in values}
    found.update({name: float(v) for name, v in (record.get("resources") or {}).items()})
    return found


def _steady_end(ctx: CheckContext) -> float | None:
    """When the steady state after the heal ended (its step record's time plus its duration)."""
    step = next((r for r in ctx.history.of("step") if r.get("name") == "steady_after"), None)
    if step is None or not isinstance(step.get("detail"), int | float):
        return None
    return float(step["t"]) + float(step["detail"])


def _judge(opts: dict[str, Any], before: list[Record], after: list[Record]) -> Verdict:
    figures: Figures = {}
    evidence: list[dict[str, Any]] = []
    names = sorted(set().union(*(_measures(r) for r in before)) & set().union(*(_measures(r) for r in after)))
    for name in names:
        base = statistics.median(m[name] for r in before if name in (m := _measures(r)))
        low = min(m[name] for r in after if name in (m := _measures(r)))
        option, unit = PROCESS.get(name, ("gauges", 1))
        slack = float(opts[option]) * unit
        figures[f"{name}_before"], figures[f"{name}_after"] = rounded(base), rounded(low)
        if low - base > slack:
            evidence.append({"measure": name, "before": rounded(base), "after": rounded(low),
                             "grew": rounded(low - base), "slack": rounded(slack),
                             "problem": "not released after the clients left"})  # fmt: skip
    judged = ", ".join(names)
    if evidence:
        grew = "; ".join(f"{e['measure']} {e['before']:g} -> {e['after']:g}" for e in evidence)
        return Verdict("leaks", FAIL, f"the target did not release what the churned clients held: {grew}",
                       evidence, figures)  # fmt: skip
    return Verdict("leaks", PASS, f"back to baseline after the churn: {judged}", [], figures)
