"""``junit.xml`` for CI: one testsuite; a testcase per scenario and one per checker of it.

JUnit has no nesting, so a checker's case is named ``scenario::checker`` with classname
``wschaos.<scenario>``, next to the scenario's own case. A failed verdict is a ``failure`` whose message
says what broke (the verdict's summary and its first evidence); a scenario that did not run to the end
is an ``error``; ``unreliable`` and ``skipped`` verdicts are ``skipped`` with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from junitparser import Error, Failure, Skipped, TestCase, TestSuite

from reports.evidence import guarantee

SUITE_NAME = "wschaos"
MAX_MESSAGE = 1000
MAX_ITEMS = 5  # evidence items in a failure's body; report.json has them all


def build_junit(report: dict[str, Any]) -> TestSuite:
    suite = TestSuite(SUITE_NAME)
    run = report["run"]
    suite.timestamp = report["generated_at"]
    for name, value in _properties(report).items():
        suite.add_property(name, "" if value is None else str(value))
    for scenario in report["scenarios"]:
        suite.add_testcase(_scenario_case(scenario))
        for verdict in scenario["verdicts"]:
            suite.add_testcase(_checker_case(scenario, verdict))
    suite.update_statistics()
    suite.time = round(float(run.get("wall_s") or 0.0), 3)
    return suite


def write_junit(report: dict[str, Any], path: Path) -> Path:
    """A single ``testsuite`` as the root element, as Ant and Surefire write it."""
    build_junit(report).write(str(path), pretty=True)
    return path


def _properties(report: dict[str, Any]) -> dict[str, Any]:
    run, versions = report["run"], report["versions"]
    return {
        "seed": run["seed"],
        "target": run["target"],
        "target_file": run["target_file"],
        "reproduce": run["reproduce"],
        **{f"version.{k}": v for k, v in versions.items()},
    }


def _scenario_case(scenario: dict[str, Any]) -> TestCase:
    case = TestCase(scenario["name"], f"wschaos.{scenario['name']}", round(float(scenario["duration_s"] or 0.0), 3))
    if scenario["status"] == "error":
        error = scenario["error"] or "the scenario did not run to the end"
        case.result = [_with_text(Error(_clip(error), "ScenarioError"), error)]
    elif scenario["status"] == "skipped":
        case.result = [Skipped(_clip(f"skipped: {scenario.get('reason') or 'the scenario could not run here'}"))]
    elif scenario["status"] == "fail":
        broken = [v for v in scenario["verdicts"] if v["status"] == "fail"]
        message = "; ".join(_broke(v) for v in broken)
        case.result = [_with_text(Failure(_clip(message), "GuaranteeBroken"), _details(broken))]
    case.system_out = f"reproduce: {scenario['reproduce']}"
    return case


def _checker_case(scenario: dict[str, Any], verdict: dict[str, Any]) -> TestCase:
    name = f"{scenario['name']}::{verdict['checker']}"
    case = TestCase(name, f"wschaos.{scenario['name']}", 0.0)
    status = verdict["status"]
    if status == "fail":
        message = verdict["summary"]
        if verdict["first_evidence"]:
            message += f" | first evidence: {verdict['first_evidence']}"
        case.result = [_with_text(Failure(_clip(message), guarantee(verdict["checker"])), _details([verdict]))]
    elif status in ("unreliable", "skipped"):
        case.result = [Skipped(_clip(f"{status}: {verdict['summary']}"))]
    return case


def _broke(verdict: dict[str, Any]) -> str:
    text = f"{guarantee(verdict['checker'])} broken ({verdict['checker']}): {verdict['summary']}"
    return text + (f" | first evidence: {verdict['first_evidence']}" if verdict["first_evidence"] else "")


def _details(verdicts: list[dict[str, Any]]) -> str:
    """The body of a failure: per verdict, what broke, its first evidence, then the first items as JSON."""
    lines = []
    for verdict in verdicts:
        lines.append(f"{guarantee(verdict['checker'])} broken ({verdict['checker']}): {verdict['summary']}")
        if verdict["first_evidence"]:
            lines.append(f"  first evidence: {verdict['first_evidence']}")
        lines += [f"  evidence: {json.dumps(item)}" for item in verdict["evidence"][:MAX_ITEMS]]
    return "\n".join(lines)


def _with_text(result: Failure | Error, text: str) -> Failure | Error:
    result.text = text
    return result


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"
