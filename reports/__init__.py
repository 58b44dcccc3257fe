"""Report writers: turn a finished run's folder into report.json, index.html and junit.xml."""

from __future__ import annotations

from pathlib import Path

from reports.html_report import write_html
from reports.json_report import build_report, write_json
from reports.junit import write_junit
from reports.run import ReportError, load_run

__all__ = ["ReportError", "write_reports"]


def write_reports(run_dir: Path) -> dict[str, Path]:
    """Writes report.json, index.html and junit.xml into ``run_dir``; returns their paths by kind."""
    run = load_run(run_dir)
    report = build_report(run)
    return {
        "json": write_json(report, run.dir / "report.json"),
        "html": write_html(run, report, run.dir / "index.html"),
        "junit": write_junit(report, run.dir / "junit.xml"),
    }
