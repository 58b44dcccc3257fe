"""A finished run read back from its folder: ``summary.json``, and each scenario's result and history."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.history import History

SUMMARY_SCHEMA = "wschaos.summary/1"


class ReportError(HarnessError):
    """A run folder that cannot be reported on."""

    default_hint = "give the folder `wschaos run` wrote (runs/<time>-<label>, or runs/latest)"


@dataclass
class ScenarioRun:
    """One scenario of the run: its result (``ScenarioResult.to_json()``), folder and history."""

    result: dict[str, Any]
    dir: Path
    history: History

    @property
    def name(self) -> str:
        return str(self.result["name"])

    @property
    def status(self) -> str:
        return str(self.result["status"])

    @property
    def verdicts(self) -> list[dict[str, Any]]:
        return list(self.result.get("verdicts") or [])

    def verdict(self, checker: str) -> dict[str, Any] | None:
        return next((v for v in self.verdicts if v["checker"] == checker), None)


@dataclass
class Run:
    dir: Path
    summary: dict[str, Any]
    scenarios: list[ScenarioRun]

    @property
    def seed(self) -> int:
        return int(self.summary["seed"])

    @property
    def passed(self) -> bool:
        return bool(self.summary.get("passed"))

    @property
    def label(self) -> str:
        return self.dir.name


def load_run(run_dir: Path) -> Run:
    """Reads a run folder (a ``runs/latest`` symlink is followed). A scenario without a history gets an
    empty one: a scenario that errored before it started still has a result to report."""
    run_dir = Path(run_dir).resolve()
    summary = _read_json(run_dir / "summary.json")
    if summary.get("schema") != SUMMARY_SCHEMA:
        raise ReportError(f"{run_dir / 'summary.json'}: schema {summary.get('schema')!r}, expected {SUMMARY_SCHEMA}")
    scenarios = [_scenario(run_dir, result) for result in summary.get("scenarios") or []]
    return Run(run_dir, summary, scenarios)


def _scenario(run_dir: Path, result: dict[str, Any]) -> ScenarioRun:
    folder = run_dir / str(result["name"])
    return ScenarioRun(result, folder, _history(folder))


def _history(folder: Path) -> History:
    """The scenario's history (plain or compressed); a line cut short (a run killed mid-write) is
    skipped, not fatal."""
    try:
        return History.load(folder, skip_broken=True)
    except FileNotFoundError:
        return History()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path} does not exist: not a finished run folder") from None
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object")
    return data
