"""Quiet under attack: while faults run, the target's log grows no faster than its budgets allow (a
server that logs a line, or a traceback, per hostile request lets any client fill its disk)."""

from __future__ import annotations

import math
from collections import Counter
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
    merge_windows,
    parse_options,
    register,
    rounded,
)

ERROR_LEVELS = frozenset({"ERROR", "CRITICAL", "FATAL", "PANIC", "DPANIC"})
WARNING_LEVELS = frozenset({"WARNING", "WARN"})
DEFAULTS: dict[str, Any] = {"errors_per_s": 1.0, "warnings_per_s": 5.0, "lines_per_s": 50.0,
                            "bytes_per_s": 16384.0, "window": "faults", "grace_s": 0.5}  # fmt: skip
BUDGETS = ("errors_per_s", "warnings_per_s", "lines_per_s", "bytes_per_s")
TOP_MESSAGES = 5


@register("log_volume", "Quiet under attack")
def check_log_volume(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """ERROR and WARNING lines, all lines and bytes a second of the target's log during the attack
    stay within budget.

    Options:
      errors_per_s: most lines a second at ERROR, CRITICAL or FATAL (default 1.0).
      warnings_per_s: most lines a second at WARNING (default 5.0).
      lines_per_s: most lines a second at any level (default 50.0).
      bytes_per_s: most bytes a second (default 16384).
      window: "faults" (from each fault's start to its heal, overlapping ones joined) or "run" (the
        whole run) (default "faults").
      grace_s: how long after a window ends a line still counts: the log is read every 50 ms, and a
        server may log what an attack did a moment later (default 0.5).
    """
    opts = parse_options("log_volume", options, DEFAULTS)
    if opts["window"] not in ("faults", "run"):
        raise ValueError(f"log_volume: option window must be 'faults' or 'run', got {opts['window']!r}")
    logs = list(ctx.history.of("log"))
    if not logs:
        why = "not applicable: the target's log cannot be read (no log line in the whole run)"
        return Verdict.unknown("log_volume", NOT_APPLICABLE, why)
    windows = _windows(ctx, opts["window"])
    if not windows:
        why = "not applicable: no fault ran, so there is no attack to judge the log by (window: run judges the run)"
        return Verdict.unknown("log_volume", NOT_APPLICABLE, why)
    grace = float(opts["grace_s"])
    inside = [r for r in logs if any(w.start <= r["t"] <= w.end + grace for w in windows)]
    seconds = max(1.0, sum(w.end - w.start for w in windows))
    figures = _figures(inside, seconds)
    over = [_over(name, figures, float(opts[name]), inside) for name in BUDGETS if figures[name] > opts[name]]
    leveled = any(r.get("level") for r in logs)
    evidence = [*over, *_top_messages(inside)]
    where = f"over {seconds:.1f} s of {'faults' if opts['window'] == 'faults' else 'run'}"
    if over:
        said = "; ".join(f"{e['budget']} {e['value']:g} > {e['limit']:g}" for e in over)
        return Verdict("log_volume", FAIL, f"the target's log outgrew its budget {where}: {said}", evidence, figures)
    if not leveled:
        why = "not applicable: the target's log lines carry no level, so ERROR and WARNING lines cannot be told"
        return Verdict.unknown("log_volume", NOT_APPLICABLE, why, evidence, figures)
    summary = (f"{figures['lines']} log line(s), {figures['bytes']} bytes {where}: "
               f"{figures['errors_per_s']:g} ERROR/s, {figures['warnings_per_s']:g} WARNING/s, "
               f"{figures['lines_per_s']:g} lines/s, {figures['bytes_per_s']:g} B/s, all within budget")  # fmt: skip
    return Verdict("log_volume", PASS, summary, evidence, figures)


def _windows(ctx: CheckContext, which: str) -> list[Window]:
    records = ctx.history.records
    end = max((r["t"] for r in records), default=0.0)
    if which == "run":
        start = next((r["t"] for r in ctx.history.of("target") if r.get("event") == "ready"), 0.0)
        return [Window(start, end, "run")]
    spans = []
    for start in ctx.history.of("fault_start"):
        heal = next((r["t"] for r in ctx.history.of("fault_heal")
                     if r.get("fault") == start.get("fault") and r["t"] >= start["t"]), end)  # fmt: skip
        spans.append(Window(start["t"], heal, str(start.get("fault"))))
    return merge_windows(spans)


def _level(record: Record) -> str:
    return str(record.get("level") or "").upper()


def _figures(inside: list[Record], seconds: float) -> Figures:
    errors = sum(_level(r) in ERROR_LEVELS for r in inside)
    warnings = sum(_level(r) in WARNING_LEVELS for r in inside)
    size = sum(len(str(r.get("line", "")).encode()) + 1 for r in inside)
    return {
        "window_s": rounded(seconds),
        "lines": len(inside),
        "bytes": size,
        "error_lines": errors,
        "warning_lines": warnings,
        "errors_per_s": rounded(errors / seconds),
        "warnings_per_s": rounded(warnings / seconds),
        "lines_per_s": rounded(len(inside) / seconds),
        "bytes_per_s": rounded(size / seconds),
        "peak_lines_in_a_second": max(Counter(math.floor(r["t"]) for r in inside).values(), default=0),
    }


def _over(budget: str, figures: Figures, limit: float, inside: list[Record]) -> dict[str, Any]:
    levels = {"errors_per_s": ERROR_LEVELS, "warnings_per_s": WARNING_LEVELS}.get(budget)
    first = next((r for r in inside if levels is None or _level(r) in levels), None)
    item: dict[str, Any] = {"problem": "over budget", "budget": budget, "value": figures[budget], "limit": limit}
    if first is not None:
        item.update(t=first["t"], lineno=first.get("lineno"), first_line=str(first.get("line", ""))[:200])
    return item


def _top_messages(inside: list[Record]) -> list[dict[str, Any]]:
    """The most frequent messages in the window (their first 100 characters), with their level and count."""
    counts = Counter((_level(r), str(r.get("message") or r.get("line", ""))[:100]) for r in inside)
    return [{"problem": "frequent line", "level": level or None, "message": message, "count": n}
            for (level, message), n in counts.most_common(TOP_MESSAGES)]  # fmt: skip
