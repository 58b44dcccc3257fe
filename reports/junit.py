"""``junit.xml`` for CI: one testsuite; a testcase per scenario and one per checker of it.

JUnit has no nesting, so a checker's case is named ``scenario::checker`` with classname
``wschaos.<scenario>``, next to the scenario's own case. A failed verdict is a ``failure`` whose message
says what broke (the verdict's summary and its first evidence); a scenario that did not run to the end,
and a checker that raised, is an ``error`` (with the traceback); an ``unknown`` verdict is ``skipped`` with
its kind of reason and summary, as is a scenario that could not run here or whose worst verdict is unknown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from junitparser import Error, Failure, Skipped, TestCase, TestSuite

from reports.evidence import guarantee
from reports.repeats import repeat_stats, repeated

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
        **_repeat_properties(report["scenarios"]),
    }


def _repeat_properties(scenarios: list[dict[str, Any]]) -> dict[str, str]:
    """With ``--repeat``: each scenario's pass rate, and ``flaky.NAME`` for one that both held and broke."""
    if not repeated(scenarios):
        return {}
    out = {}
    for entry in repeat_stats(scenarios):
        out[f"pass_rate.{entry.name}"] = entry.line()
        if entry.flaky:
            out[f"flaky.{entry.name}"] = "failing seeds " + " ".join(map(str, entry.failing_seeds))
    return out


def _scenario_case(scenario: dict[str, Any]) -> TestCase:
    case = TestCase(scenario["name"], f"wschaos.{scenario['name']}", round(float(scenario["duration_s"] or 0.0), 3))
    status = scenario["status"]
    if status == "error":
        case.result = [_scenario_error(scenario)]
    elif status == "skipped":
        case.result = [Skipped(_clip(f"skipped: {scenario.get('reason') or 'the scenario could not run here'}"))]
    elif status == "fail":
        broken = [v for v in scenario["verdicts"] if v["status"] == "fail"]
        message = "; ".join(_broke(v) for v in broken)
        case.result = [_with_text(Failure(_clip(message), "GuaranteeBroken"), _details(broken))]
    elif status == "unknown":
        unknown = [v for v in scenario["verdicts"] if v["status"] == "unknown"]
        case.result = [Skipped(_clip("; ".join(_not_judged(v) for v in unknown)))]
    case.system_out = f"reproduce: {scenario['reproduce']}"
    return case


def _scenario_error(scenario: dict[str, Any]) -> Error:
    """The harness's error, else the checkers that raised, with their tracebacks."""
    if scenario["error"] or not any(v["status"] == "error" for v in scenario["verdicts"]):
        error = scenario["error"] or "the scenario did not run to the end"
        return _with_text(Error(_clip(error), "ScenarioError"), error)
    raised = [v for v in scenario["verdicts"] if v["status"] == "error"]
    return _with_text(Error(_clip("; ".join(v["summary"] for v in raised)), "CheckerError"), _tracebacks(raised))


def _checker_case(scenario: dict[str, Any], verdict: dict[str, Any]) -> TestCase:
    name = f"{scenario['name']}::{verdict['checker']}"
    case = TestCase(name, f"wschaos.{scenario['name']}", 0.0)
    status = verdict["status"]
    if status == "fail":
        message = verdict["summary"]
        if verdict["first_evidence"]:
            message += f" | first evidence: {verdict['first_evidence']}"
        case.result = [_with_text(Failure(_clip(message), guarantee(verdict["checker"])), _details([verdict]))]
    elif status == "error":
        case.result = [_with_text(Error(_clip(verdict["summary"]), "CheckerError"), _tracebacks([verdict]))]
    elif status == "unknown":
        case.result = [Skipped(_clip(_not_judged(verdict)))]
    return case


def _not_judged(verdict: dict[str, Any]) -> str:
    return f"unknown ({verdict.get('unknown_reason') or 'no reason given'}): {verdict['checker']}: {verdict['summary']}"


def _tracebacks(verdicts: list[dict[str, Any]]) -> str:
    return "\n".join(str(e.get("traceback") or e) for v in verdicts for e in v["evidence"][:MAX_ITEMS])


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
