"""``index.html``: one self-contained page (inline CSS and SVG, no scripts, nothing fetched) that leads
with what broke and its first evidence, then the verdict table, then each scenario in detail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from harness.checkers import checker_name
from harness.history import History
from reports.plots import timeline_svg
from reports.repeats import repeat_stats, repeated
from reports.run import Run, ScenarioRun
from reports.timeline import build_timeline

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_EVIDENCE_ROWS = 6
MAX_EVIDENCE_COLUMNS = 8
MAX_LOG_EXCERPTS = 3
MAX_CELL = 160
LOCUST_FIGURES = ("users", "requests", "failures", "batches", "rps", "p50", "p90", "p99", "max_ms", "gaps",
                  "gap_events", "connects", "connect_failures", "disconnects", "duration_s", "peak_cpu")  # fmt: skip
MAX_LOCUST_ERRORS = 5


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined)
    env.filters["num"] = number
    env.filters["cell"] = cell
    env.filters["lead"] = lead
    return env


def render_html(run: Run, report: dict[str, Any]) -> str:
    by_name = {s.name: s for s in run.scenarios}
    scenarios = [scenario_view(entry, by_name[entry["name"]]) for entry in report["scenarios"]]
    template = environment().get_template("index.html.j2")
    repeats = repeat_stats(report["scenarios"]) if repeated(report["scenarios"]) else []
    return template.render(report=report, scenarios=scenarios, failures=report["failures"], matrix=matrix(report),
                           repeats=sorted(repeats, key=lambda r: not r.flaky))  # fmt: skip


def write_html(run: Run, report: dict[str, Any], path: Path) -> Path:
    path.write_text(render_html(run, report), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# What the template shows


def scenario_view(entry: dict[str, Any], scenario: ScenarioRun) -> dict[str, Any]:
    return {
        **entry,
        "verdict_rows": [_verdict_row(v) for v in entry["verdicts"]],
        "plot": _plot(scenario.history, entry["timeline"]["duration_s"]),
        "has_faults": bool(entry["timeline"]["faults"]),
        "log_excerpts": _log_excerpts(entry["verdicts"]),
        "locust": locust_stats(scenario.history),
    }


def _plot(history: History, duration_s: float) -> Markup | None:
    """The timeline as inline SVG; None when the scenario recorded no traffic to draw."""
    if next(history.of("batch", "metrics", "connect"), None) is None:
        return None
    return Markup(timeline_svg(build_timeline(history, plot_bin(duration_s))))


def plot_bin(duration_s: float) -> float:
    """Bins fine enough for a short scenario to show its shape, a second for long ones."""
    return 0.25 if duration_s < 30 else 0.5 if duration_s < 120 else 1.0


def matrix(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Scenarios by checkers: each row's cells in the order of ``report['checkers']`` (None: not checked)."""
    rows = []
    for scenario in report["scenarios"]:
        by = {v["checker"]: v for v in scenario["verdicts"]}
        cells = [by.get(checker) for checker in report["checkers"]]
        rows.append({"name": scenario["name"], "status": scenario["status"], "cells": cells,
                     "duration_s": scenario["duration_s"]})  # fmt: skip
    return rows


def _verdict_row(verdict: dict[str, Any]) -> dict[str, Any]:
    evidence = verdict["evidence"][:MAX_EVIDENCE_ROWS] if verdict["status"] != "pass" else []
    columns = _columns(evidence)
    return {
        **verdict,
        "columns": columns,
        "rows": [[item.get(c) for c in columns] for item in evidence],
        "more": max(0, len(verdict["evidence"]) - len(evidence)) if evidence else 0,
    }


def _columns(evidence: list[dict[str, Any]]) -> list[str]:
    """The scalar keys of the evidence items, in the order they first appear (nested context is shown
    with the log excerpts)."""
    keys: dict[str, None] = {}
    for item in evidence:
        keys.update({k: None for k, v in item.items() if not isinstance(v, dict | list)})
    ordered = [k for k in keys if k != "t"] + (["t"] if "t" in keys else [])
    return ordered[:MAX_EVIDENCE_COLUMNS]


def _log_excerpts(verdicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    excerpts = []
    for verdict in verdicts:
        if checker_name(verdict["checker"]) == "no_error_logs":
            excerpts += [_log_excerpt(e) for e in verdict["evidence"] if "line" in e]
    return excerpts[:MAX_LOG_EXCERPTS]


def _log_excerpt(item: dict[str, Any]) -> dict[str, Any]:
    def lines(records: list[dict[str, Any]], bad: bool = False) -> list[dict[str, Any]]:
        return [{"lineno": r.get("lineno"), "line": str(r.get("line", "")), "bad": bad} for r in records]

    return {
        "t": item.get("t"),
        "lineno": item.get("lineno"),
        "level": item.get("level"),
        "lines": lines(item.get("before") or []) + lines([item], bad=True) + lines(item.get("after") or []),
    }


def locust_stats(history: History) -> dict[str, Any] | None:
    """Locust's figures: its final report when it wrote one, else its last sample; None without Locust."""
    records = [r for r in history.of("locust") if r.get("role") != "worker"]
    if not records:
        return None
    final = next((r for r in reversed(records) if r.get("phase") == "final"), None)
    samples = [r for r in records if r.get("phase", "sample") == "sample"]
    source = final if final is not None and "error" not in final else (samples or records)[-1]
    return {
        "source": "final report" if source is final else "last sample",
        "problem": final.get("error") if final is not None else None,
        "peak_users": max((r.get("users") or 0 for r in samples), default=source.get("users")),
        "figures": {k: source[k] for k in LOCUST_FIGURES if source.get(k) is not None},
        "errors": [e for e in source.get("errors") or [] if isinstance(e, dict)][:MAX_LOCUST_ERRORS],
    }


# ---------------------------------------------------------------------------------------------
# Filters


def number(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


def cell(value: Any) -> str:
    """An evidence value: ids and seqs as they are, times to the millisecond, long lines cut."""
    if value is None:
        return "–"
    text = f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def lead(summary: str, first_evidence: str | None) -> str:
    """A verdict's summary without its own "; first ..." clause when the first evidence is shown beside it."""
    if not first_evidence:
        return summary
    cut = min((i for i in (summary.find("; first:"), summary.find("; first at")) if i > 0), default=-1)
    return summary[:cut] if cut > 0 else summary
