"""``index.html`` of an exploration: what ``wschaos explore`` found, each failure's original and minimal
schedules side by side with the failing verdict of a run of each, the shrink log, and what the
exploration exercised. Read from the exploration's directory alone (``explore.json`` and the files it
names), so a page can be written again after the fact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.checkers import checker_name
from reports.html_report import environment

MAX_EVIDENCE_ROWS = 6


def write_explore_html(explore_dir: Path) -> Path:
    summary = json.loads((explore_dir / "explore.json").read_text(encoding="utf-8"))
    failures = [failure_view(explore_dir, f) for f in summary["failures"]]
    page = environment().get_template("explore.html.j2").render(summary=summary, failures=failures)
    path = explore_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def failure_view(explore_dir: Path, failure: dict[str, Any]) -> dict[str, Any]:
    folder = explore_dir / failure["dir"]
    minimal_run = failure.get("minimal_run")
    return {
        **failure,
        "minimal": failure.get("minimal"),  # absent when the failure was not shrunk
        "original_text": text_of(folder / "original.yaml"),
        "minimal_text": text_of(folder / "minimal.yaml"),
        "original_verdict": failing_verdict(explore_dir / failure.get("original_run", ""), failure["signature"]),
        "minimal_verdict": failing_verdict(explore_dir / minimal_run, failure["signature"]) if minimal_run else None,
        "shrink_log": text_of(folder / "shrink.log"),
    }


def text_of(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def failing_verdict(run_dir: Path, signature: dict[str, Any]) -> dict[str, Any] | None:
    """The verdict of the run's result that carries the failure's checker (the run's error when the
    failure is the run's own), its evidence cut to a few rows; None when the run left no result."""
    path = run_dir / "result.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text(encoding="utf-8"))
    checker = signature.get("checker")
    if checker is None:
        return {"checker": "the run", "status": result["status"], "summary": result.get("error") or "", "rows": []}
    for verdict in result.get("verdicts", []):
        if checker_name(verdict["checker"]) == checker and verdict["status"] in ("fail", "error"):
            evidence = verdict.get("evidence") or []
            return {**verdict, "rows": evidence[:MAX_EVIDENCE_ROWS], "more": max(0, len(evidence) - MAX_EVIDENCE_ROWS)}
    return None
