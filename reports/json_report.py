"""``report.json``: the whole run in one versioned document (schema ``wschaos.report/2``, described in
``report.schema.json`` beside this file). The HTML and JUnit reports are drawn from it."""

from __future__ import annotations

import json
import math
import re
import shlex
import time
from pathlib import Path
from typing import Any

from harness.checkers import read_status
from harness.targetspec import PROJECT_ROOT, TARGETS_DIR
from reports.evidence import checker_order, first_evidence, guarantee
from reports.run import Run, ScenarioRun
from reports.timeline import build_timeline
from reports.versions import versions

SCHEMA_ID = "wschaos.report/2"
SCHEMA_PATH = Path(__file__).resolve().parent / "report.schema.json"
BUNDLED_TARGETS = {"monitor": TARGETS_DIR / "monitor.yaml"}
PER_CLIENT = re.compile(r"^(lost|duplicated|reordered|duplicated_ids|missing_ids)\[(.+)\]$")
DELIVERY_FIGURES = ("lost", "duplicated", "reordered", "duplicated_ids", "missing_ids", "latency_p50_ms",
                    "latency_p99_ms", "e2e_p50_ms", "e2e_p99_ms")  # fmt: skip


def build_report(run: Run) -> dict[str, Any]:
    summary = run.summary
    scenarios = [_scenario(run, s) for s in run.scenarios]
    report = {
        "schema": SCHEMA_ID,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": {
            "label": run.label,
            "dir": str(run.dir),
            "target": summary.get("target"),
            "target_file": target_file(summary),
            "seed": run.seed,
            "wall_s": summary.get("wall_s"),
            "command": summary.get("command"),
            "reproduce": reproduce_command(summary),
            "passed": run.passed,
        },
        "versions": versions(run.dir, [s.history for s in run.scenarios]),
        "totals": _totals(scenarios),
        "checkers": sorted({v["checker"] for s in scenarios for v in s["verdicts"]}, key=checker_order),
        "failures": [f for s in scenarios for f in _failures(s)],
        "scenarios": scenarios,
    }
    return finite(report)


def write_json(report: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# How to run it again


def target_file(summary: dict[str, Any]) -> str | None:
    """The target file the run used: recorded in the summary, else the ``--target`` of its command, else the
    bundled file of a bundled target. Inside the project it is given relative to the project's root."""
    recorded = summary.get("target_file") or _target_option(str(summary.get("command") or ""))
    path = Path(recorded) if recorded else BUNDLED_TARGETS.get(str(summary.get("target")))
    if path is None:
        return None
    if path.is_absolute() and path.is_relative_to(PROJECT_ROOT):
        return str(path.relative_to(PROJECT_ROOT))
    return str(path)


def _target_option(command: str) -> str | None:
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for i, word in enumerate(words):
        if word == "--target" and i + 1 < len(words):
            return words[i + 1]
        if word.startswith("--target="):
            return word.split("=", 1)[1]
    return None


def reproduce_command(summary: dict[str, Any], names: list[str] | None = None) -> str:
    """``wschaos run <scenarios> --seed N --target FILE``: each scenario's seed comes from the run's seed and
    its name alone, so this runs the same scenarios with the same seeds. Scenarios and the target are
    given as the run's command line gave them (a scenario file by its path, not its bare name); the
    terminal, report.json, index.html and junit.xml all take it from here."""
    names = names if names is not None else [str(s["name"]) for s in summary.get("scenarios") or []]
    given = summary.get("scenario_args") or {}
    words = ["wschaos", "run", *(str(given.get(name, name)) for name in names), "--seed", str(summary["seed"])]
    target = summary.get("target_arg") or target_file(summary)
    if target:
        words += ["--target", target]
    return shlex.join(words)


# ---------------------------------------------------------------------------------------------
# Per scenario


def _scenario(run: Run, scenario: ScenarioRun) -> dict[str, Any]:
    result = scenario.result
    verdicts = [_verdict(v) for v in scenario.verdicts]
    return {
        "name": scenario.name,
        "status": scenario.status,
        "seed": result.get("seed"),
        "duration_s": result.get("duration_s"),
        "error": result.get("error"),
        "reason": result.get("reason"),
        "timings": _timings(result),
        "reproduce": reproduce_command(run.summary, [scenario.name]),
        "broken": sorted({guarantee(v["checker"]) for v in verdicts if v["status"] == "fail"}),
        "verdicts": verdicts,
        "delivery": _delivery(scenario.verdict("delivery")),
        "evictions": [_eviction(v) for v in scenario.verdicts if v["checker"].split("@")[0] == "eviction"],
        "timeline": build_timeline(scenario.history).to_json(),
    }


def _timings(result: dict[str, Any]) -> dict[str, float]:
    phases = {k: round(float(v), 3) for k, v in (result.get("phases") or {}).items()}
    return {**phases, "total_s": round(float(result.get("duration_s") or 0.0), 3)}


def _verdict(verdict: dict[str, Any]) -> dict[str, Any]:
    status, reason = read_status(verdict)
    return {
        "checker": verdict["checker"],
        "guarantee": guarantee(verdict["checker"]),
        "status": status,
        "unknown_reason": reason if status == "unknown" else None,
        "summary": verdict.get("summary") or "",
        "first_evidence": first_evidence(verdict),
        "evidence": list(verdict.get("evidence") or []),
        "figures": dict(verdict.get("figures") or {}),
    }


def _delivery(verdict: dict[str, Any] | None) -> dict[str, Any] | None:
    if verdict is None:
        return None
    figures = verdict.get("figures") or {}
    per_client: dict[str, dict[str, int]] = {}
    for key, value in figures.items():
        match = PER_CLIENT.match(key)
        if match:
            per_client.setdefault(match.group(2), {})[match.group(1)] = int(value)
    totals = {name: figures.get(name) for name in DELIVERY_FIGURES}
    return {"status": verdict["status"], "clients": figures.get("clients"), **totals, "per_client": per_client}


def _eviction(verdict: dict[str, Any]) -> dict[str, Any]:
    figures = verdict.get("figures") or {}
    return {
        "checker": verdict["checker"],
        "status": verdict["status"],
        "evicted_after_s": figures.get("evicted_after_s"),
        "within_s": figures.get("within_s"),
        "victims": figures.get("victims"),
        "summary": verdict.get("summary") or "",
    }


def _failures(scenario: dict[str, Any]) -> list[dict[str, Any]]:
    """The scenario's harness error, else its failed verdicts and those whose checker raised."""
    if scenario["status"] == "error" and scenario["error"]:
        error = scenario["error"]
        return [{"scenario": scenario["name"], "checker": None, "guarantee": None, "status": "error",
                 "summary": f"the scenario did not run to the end: {error.splitlines()[0]}",
                 "first_evidence": error}]  # fmt: skip
    keys = ("checker", "guarantee", "status", "summary", "first_evidence")
    failed = [v for v in scenario["verdicts"] if v["status"] in ("fail", "error")]
    return [{"scenario": scenario["name"], **{k: v[k] for k in keys}} for v in failed]


def _totals(scenarios: list[dict[str, Any]]) -> dict[str, int]:
    statuses = ("pass", "fail", "error", "unknown", "skipped")
    count = {status: sum(s["status"] == status for s in scenarios) for status in statuses}
    return {
        "scenarios": len(scenarios),
        "passed": count["pass"],
        "failed": count["fail"],
        "errors": count["error"],
        "unknown": count["unknown"],
        "skipped": count["skipped"],
    }


def finite(value: Any) -> Any:
    """The same data with infinities and NaN as None: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value
