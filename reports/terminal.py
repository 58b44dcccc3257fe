"""The report in a terminal: each scenario's status, then every broken guarantee with its first evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

COLOURS = {"pass": "green", "fail": "red", "error": "magenta", "unknown": "yellow", "skipped": "cyan"}


def status(text: str) -> str:
    return click.style(text.upper(), fg=COLOURS.get(text, "white"), bold=True)


def summary_lines(report: dict[str, Any]) -> list[str]:
    """Every scenario's status, then what broke and how to run it again."""
    totals = report["totals"]
    unknown = f", {totals['unknown']} unknown" if totals.get("unknown") else ""
    lines = [f"{report['run']['label']}: {totals['passed']} of {totals['scenarios']} scenario(s) held{unknown}"]
    width = max((len(s["name"]) for s in report["scenarios"]), default=8)
    for scenario in report["scenarios"]:
        why = f"  {scenario['reason']}" if scenario.get("reason") else _unknown_why(scenario)
        lines.append(f"  {scenario['name'].ljust(width)}  {status(scenario['status'])}{why}")
    return lines + failure_lines(report)


def failure_lines(report: dict[str, Any]) -> list[str]:
    """Each broken guarantee with its first evidence, and the command that reproduces the run."""
    lines = ["", click.style("What broke:", bold=True)] if report["failures"] else []
    for failure in report["failures"]:
        what = f"{failure['guarantee']} ({failure['checker']})" if failure["checker"] else "error"
        if failure["status"] == "error" and failure["checker"]:
            what = f"error in the {failure['checker']} checker"
        lines.append(f"  {failure['scenario']}: {click.style(what, fg='red', bold=True)}: {failure['summary']}")
        if failure["first_evidence"]:
            lines.append(f"      first evidence: {failure['first_evidence']}")
    return [*lines, "", f"Reproduce: {report['run']['reproduce']}"]


def _unknown_why(scenario: dict[str, Any]) -> str:
    """For an unknown scenario: which checkers could not judge, and the kind of reason."""
    unknown = [v for v in scenario["verdicts"] if v["status"] == "unknown"]
    if scenario["status"] != "unknown" or not unknown:
        return ""
    return "  not judged: " + ", ".join(f"{v['checker']} ({v['unknown_reason']})" for v in unknown)


def paths_line(paths: dict[str, Path]) -> str:
    return "Reports: " + ", ".join(str(p) for p in paths.values())
