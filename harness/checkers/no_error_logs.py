"""Safe send: the target never logs at an error level nor prints a traceback, and logs at most a
budget of warnings (a normal event, such as a client leaving, is no warning)."""

from __future__ import annotations

import re
from typing import Any

from harness.checkers.base import (
    FAIL,
    NOT_APPLICABLE,
    PASS,
    CheckContext,
    Figures,
    Record,
    Verdict,
    parse_options,
    register,
)

MAX_BLOCK_LINES = 40  # lines of a traceback shown after the line that starts it
TRACEBACK = "Traceback (most recent call last)"
CONTINUATION_LEVELS = frozenset({"RAW"})  # what the target module gives lines that are not log records


@register("no_error_logs", "Safe send")
def check_no_error_logs(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """The target never logs at an error level nor prints a traceback, and logs at most ``warnings``
    lines at a warning level.

    Options:
      levels: log levels that fail the check (default ["ERROR", "CRITICAL"], case-insensitive).
      warnings: how many lines at a level of ``warning_levels`` are allowed (default 0): past that,
        every such line is an offence. A normal event (a client leaving) logged as a warning buries
        the real ones.
      warning_levels: the levels that count as warnings (default ["WARNING", "WARN"]).
      allow: regular expressions; an offending line is forgiven when one matches it or the lines that
        continue it (the following records without a level, such as a traceback's frames).
      context: how many neighbouring log lines to show before and after each offence (default 2).
      max_evidence: how many offences to show (default 10).
    """
    defaults = {"levels": ["ERROR", "CRITICAL"], "allow": [], "context": 2, "max_evidence": 10, "warnings": 0,
                "warning_levels": ["WARNING", "WARN"]}  # fmt: skip
    opts = parse_options("no_error_logs", options, defaults)
    logs = list(ctx.history.of("log"))
    if not logs:
        return Verdict.unknown("no_error_logs", NOT_APPLICABLE, "not applicable: the target wrote no log line")
    levels = {str(level).upper() for level in opts["levels"]}
    allow = [re.compile(pattern) for pattern in opts["allow"]]
    offences, allowed = _log_offences(logs, levels, allow)
    warning_levels = {str(level).upper() for level in opts["warning_levels"]} - levels
    warnings, _ = _log_offences(logs, warning_levels, allow, tracebacks=False)
    figures: Figures = {
        "log_lines": len(logs),
        "offending": len(offences),
        "allowed": allowed,
        "tracebacks": sum(TRACEBACK in str(r.get("line", "")) for r in logs),
        "warnings": len(warnings),
    }
    over_budget = len(warnings) > opts["warnings"]
    if not offences and not over_budget:
        note = f", {allowed} allowed by pattern" if allowed else ""
        note += f", {len(warnings)} warning(s) within the budget of {opts['warnings']}" if warnings else ""
        return Verdict(
            "no_error_logs", PASS, f"no error lines or tracebacks in {len(logs)} log lines{note}", [], figures
        )
    shown = sorted(offences + (warnings if over_budget else []))[: opts["max_evidence"]]
    evidence = [_log_evidence(logs, start, end, opts["context"]) for start, end in shown]
    first = evidence[0]
    counts = [f"{len(offences)} error line(s) or traceback(s)"] if offences else []
    counts += [f"{len(warnings)} warning line(s) (budget {opts['warnings']})"] if over_budget else []
    summary = f"{' and '.join(counts)} in the target's log; first at line {first['lineno']}: {first['line'][:160]}"
    return Verdict("no_error_logs", FAIL, summary, evidence, figures)


def _offending(record: Record, levels: set[str], tracebacks: bool = True) -> bool:
    if str(record.get("level") or "").upper() in levels:
        return True
    return tracebacks and TRACEBACK in str(record.get("line", ""))


def _block_end(logs: list[Record], start: int, limit: int = 200) -> int:
    """Index of the last line continuing ``logs[start]``: the following lines that are not log records
    (no level, or the target's RAW), such as a traceback's frames."""
    end = start
    while end + 1 < len(logs) and end - start < limit and _continues(logs[end + 1]):
        end += 1
    return end


def _continues(record: Record) -> bool:
    level = record.get("level")
    return not level or str(level).upper() in CONTINUATION_LEVELS


def _log_offences(
    logs: list[Record], levels: set[str], allow: list[re.Pattern[str]], tracebacks: bool = True
) -> tuple[list[tuple], int]:
    offences: list[tuple[int, int]] = []
    allowed = 0
    i = 0
    while i < len(logs):
        if _offending(logs[i], levels, tracebacks):
            end = _block_end(logs, i)
            text = "\n".join(str(r.get("line", "")) for r in logs[i : end + 1])
            if any(p.search(text) for p in allow):
                allowed += 1
            else:
                offences.append((i, end))
            i = end
        i += 1
    return offences, allowed


def _log_evidence(logs: list[Record], start: int, end: int, context: int) -> dict[str, Any]:
    def lines(records: list[Record]) -> list[dict[str, Any]]:
        return [{"lineno": r.get("lineno"), "line": r.get("line")} for r in records]

    record = logs[start]
    return {
        "lineno": record.get("lineno"),
        "t": record["t"],
        "level": record.get("level"),
        "line": str(record.get("line", "")),
        "before": lines(logs[max(0, start - context) : start]),
        "after": lines(logs[start + 1 : end + 1 + context][:MAX_BLOCK_LINES]),
    }
