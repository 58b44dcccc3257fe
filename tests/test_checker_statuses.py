"""Verdict statuses and the checker registry: a scenario's status from its verdicts, a raising checker
gives an error, every checker registers its guarantee, and the reports (report.json, junit.xml, the
terminal lines) read guarantees from the registry and show unknown and error verdicts for what they are."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest

from harness import checkers
from harness.checkers import (
    CHECKERS,
    GUARANTEES,
    CheckContext,
    Verdict,
    read_status,
    register,
    run_checks,
    scenario_status,
)
from harness.history import History
from reports import write_reports
from reports.evidence import checker_order, guarantee
from reports.json_report import load_schema
from reports.terminal import summary_lines


def verdicts(*statuses: str) -> list[Verdict]:
    return [Verdict(f"c{i}", s, "", unknown_reason="unreliable" if s == "unknown" else None)
            for i, s in enumerate(statuses)]  # fmt: skip


@pytest.mark.parametrize(
    "statuses, harness_error, expected",
    [
        ((), None, "pass"),
        (("pass", "pass"), None, "pass"),
        (("pass", "unknown"), None, "unknown"),
        (("unknown", "error", "pass"), None, "error"),
        (("error", "fail", "unknown"), None, "fail"),
        (("pass", "fail"), None, "fail"),
        (("pass",), "target exited with code 3", "error"),
        (("fail",), "scenario did not finish within its timeout", "error"),
        ((), "", "pass"),
    ],
)
def test_scenario_status_precedence(statuses: tuple[str, ...], harness_error: str | None, expected: str) -> None:
    assert scenario_status(verdicts(*statuses), harness_error) == expected


def test_a_raising_checker_gives_an_error_verdict_and_an_error_scenario(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
        return {}["missing"]  # a KeyError, as a bug in a checker would raise

    monkeypatch.setitem(CHECKERS, "persistence", broken)
    history = History()
    history.record("probe", check="ws", ok=False, latency_s=None, error="refused")
    got = run_checks(CheckContext(history=history, stored_ids=[]), {"persistence": {}, "liveness": {}})
    assert [v.status for v in got] == ["error", "fail"]  # liveness fails: its only probe failed
    assert "KeyError" in got[0].summary and "KeyError: 'missing'" in got[0].evidence[0]["traceback"]
    assert scenario_status(got[:1]) == "error" and scenario_status(got) == "fail"


def test_unknown_verdicts_name_a_known_kind_of_reason() -> None:
    verdict = Verdict.unknown("delivery", "unreliable", "harness CPU above 85%")
    assert (verdict.status, verdict.unknown_reason) == ("unknown", "unreliable")
    with pytest.raises(ValueError, match="not_applicable"):
        Verdict.unknown("delivery", "because", "no reason kind")


def test_runs_recorded_before_unknown_read_as_unknown() -> None:
    assert read_status({"status": "unreliable"}) == ("unknown", "unreliable")
    assert read_status({"status": "skipped"}) == ("unknown", "not_applicable")
    assert read_status({"status": "fail", "unknown_reason": None}) == ("fail", None)


def test_every_checker_registers_a_guarantee_that_the_reports_read() -> None:
    assert list(CHECKERS) == list(GUARANTEES)
    core = ["no_error_logs", "delivery", "eviction", "liveness", "persistence", "recovery", "shutdown", "browser",
            "load"]  # fmt: skip
    assert list(CHECKERS)[: len(core)] == core  # the core first, in report order; newer checkers after
    for name, text in GUARANTEES.items():
        assert text and text != name
        assert guarantee(name) == guarantee(f"{name}@variant") == text
    assert guarantee("no_error_logs") == "Safe send"


@pytest.fixture
def extra_checker() -> Iterator[str]:
    """A checker registered the way a new checker module registers itself, removed afterwards."""

    @register("quiet_neighbours", "Neighbours stay quiet")
    def check_quiet_neighbours(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
        return Verdict("quiet_neighbours", "pass", f"{len(ctx.history.records)} records, all quiet")

    try:
        yield "quiet_neighbours"
    finally:
        CHECKERS.pop("quiet_neighbours")
        GUARANTEES.pop("quiet_neighbours")


def test_a_registered_checker_runs_and_the_reports_know_its_guarantee(extra_checker: str) -> None:
    (verdict,) = run_checks(CheckContext(history=History()), {f"{extra_checker}@twice": {}})
    assert (verdict.checker, verdict.status) == ("quiet_neighbours@twice", "pass")
    assert guarantee(verdict.checker) == "Neighbours stay quiet"
    names = ["load", extra_checker, "delivery", "unregistered"]
    assert sorted(names, key=checker_order) == ["delivery", "load", extra_checker, "unregistered"]
    with pytest.raises(ValueError, match="registered twice"):
        register(extra_checker, "again")(checkers.check_delivery)


# ---------------------------------------------------------------------------------------------
# The reports of a run whose verdicts are unknown and error


def write_run(run_dir: Path, scenarios: list[dict[str, Any]]) -> Path:
    run_dir.mkdir()
    summary = {"schema": "wschaos.summary/1", "target": "monitor", "target_file": None, "seed": 7, "wall_s": 3.0,
               "command": "wschaos run", "passed": True, "scenarios": scenarios}  # fmt: skip
    (run_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return run_dir


def scenario(name: str, status: str, found: list[Verdict]) -> dict[str, Any]:
    return {"name": name, "status": status, "duration_s": 1.0, "seed": 1, "run_dir": "", "error": None,
            "reason": None, "phases": {}, "verdicts": [v.to_json() for v in found]}  # fmt: skip


@pytest.fixture
def judged_run(tmp_path: Path) -> Path:
    saturated = Verdict.unknown("delivery", "unreliable", "latency not judged: harness CPU above 85%")
    broken = run_checks(CheckContext(history=History()), {"persistence": {"no_such_option": 1}})
    held = Verdict("liveness", "pass", "all probes succeeded")
    legacy = {**Verdict("eviction", "unreliable", "metrics samples end before the bound").to_json()}
    legacy.pop("unknown_reason")  # as a run recorded before "unknown" wrote it
    scenarios = [scenario("busy", scenario_status([saturated, held]), [saturated, held]),
                 scenario("buggy", scenario_status([*broken, held]), [*broken, held]),
                 {**scenario("old", "pass", []), "verdicts": [legacy]}]  # fmt: skip
    write_reports(write_run(tmp_path / "run", scenarios))
    return tmp_path / "run"


def test_report_json_shows_unknown_and_error_verdicts(judged_run: Path) -> None:
    report = json.loads((judged_run / "report.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(load_schema()).validate(report)
    busy, buggy, old = report["scenarios"]
    assert (busy["status"], busy["verdicts"][0]["unknown_reason"]) == ("unknown", "unreliable")
    assert buggy["status"] == "error" and buggy["verdicts"][0]["guarantee"] == "Nothing lost"
    assert (old["verdicts"][0]["status"], old["verdicts"][0]["unknown_reason"]) == ("unknown", "unreliable")
    assert report["totals"] == {"scenarios": 3, "passed": 1, "failed": 0, "errors": 1, "unknown": 1, "skipped": 0}
    (failure,) = report["failures"]
    assert (failure["scenario"], failure["checker"], failure["status"]) == ("buggy", "persistence", "error")
    assert "unknown option(s) no_such_option" in failure["summary"] and "Traceback" not in failure["first_evidence"]


def test_junit_skips_unknown_verdicts_and_errs_on_a_raising_checker(judged_run: Path) -> None:
    cases = {c.get("name"): c for c in ET.parse(judged_run / "junit.xml").getroot().iter("testcase")}
    skipped = cases["busy::delivery"].find("skipped")
    assert skipped is not None and skipped.get("message", "").startswith("unknown (unreliable): delivery: latency")
    assert cases["busy"].find("skipped") is not None and cases["busy::liveness"].find("skipped") is None
    error = cases["buggy::persistence"].find("error")
    assert error is not None and error.get("type") == "CheckerError" and "Traceback" in (error.text or "")
    assert cases["buggy"].find("error") is not None and cases["buggy"].find("failure") is None


def test_terminal_says_what_could_not_be_judged(judged_run: Path) -> None:
    report = json.loads((judged_run / "report.json").read_text(encoding="utf-8"))
    lines = [click.unstyle(line) for line in summary_lines(report)]
    assert lines[0].endswith("1 of 3 scenario(s) held, 1 unknown")
    assert any(line.split()[:2] == ["busy", "UNKNOWN"] and "delivery (unreliable)" in line for line in lines)
    assert any("buggy: error in the persistence checker" in line for line in lines)
