"""Regression gates: ``wschaos report --compare BASE NEW --fail-on RULES`` exits 1 on a regression and
says which figure moved in which scenario, 0 when the runs are equal; a bad rule is a one-line error;
``wschaos run --baseline DIR`` gates at the end of a run."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reports.compare import Comparison, figure_changes, verdict_changes
from reports.gates import GateError, parse_gates, regressions
from reports.json_report import SCHEMA_ID

ROOT = Path(__file__).resolve().parent.parent
RULES = "eviction_s>+1,p99_ms>+20%,status"


def report(label: str, p99: float = 20.0, evicted: float = 1.0, status: str = "pass") -> dict[str, Any]:
    scenario = {
        "name": "stuck_reader", "status": status, "duration_s": 8.0,
        "verdicts": [{"checker": "delivery", "status": "pass"}, {"checker": "eviction", "status": status}],
        "delivery": {"latency_p50_ms": 5.0, "latency_p99_ms": p99, "lost": 0},
        "evictions": [{"checker": "eviction", "evicted_after_s": evicted}],
    }  # fmt: skip
    other = {"name": "baseline", "status": "pass", "duration_s": 6.0, "verdicts": [],
             "delivery": {"latency_p99_ms": 10.0}, "evictions": []}  # fmt: skip
    run = {"label": label, "target": "monitor", "seed": 1, "passed": status == "pass", "reproduce": "wschaos run"}
    return {"schema": SCHEMA_ID, "run": run, "scenarios": [other, scenario]}


def compare(a: dict[str, Any], b: dict[str, Any]) -> Comparison:
    return Comparison(a, b, verdict_changes(a, b), figure_changes(a, b))


def moved(a: dict[str, Any], b: dict[str, Any], rules: str = RULES) -> list[tuple[str, str]]:
    return [(r.scenario, r.what) for r in regressions(compare(a, b), parse_gates(rules))]


def test_an_equal_run_passes_every_gate() -> None:
    assert moved(report("a"), report("b")) == []


def test_each_rule_names_the_figure_that_moved_in_its_scenario() -> None:
    assert moved(report("a"), report("b", p99=24.1)) == [("stuck_reader", "latency_p99_ms")]
    assert moved(report("a"), report("b", p99=23.9)) == [], "a rise within 20% passes"
    assert moved(report("a"), report("b", evicted=2.5)) == [("stuck_reader", "eviction evicted_after_s")]
    assert moved(report("a"), report("b", evicted=1.9)) == []
    assert moved(report("a"), report("b", status="fail")) == [("stuck_reader", "(scenario)"),
                                                              ("stuck_reader", "eviction")]  # fmt: skip
    assert moved(report("a"), report("b", p99=5.0, evicted=0.1)) == [], "better is never a regression"
    assert moved(report("a", p99=0.0), report("b", p99=0.5), "p99_ms>+10%") == [("stuck_reader", "latency_p99_ms")]


@pytest.mark.parametrize(
    ("expression", "says"),
    [("p98_ms>+1", "no figure 'p98_ms'"), ("p99_ms<3", "expected FIGURE>+N"), ("p99_ms>+x%", "expected"),
     ("", "expected")],
)  # fmt: skip
def test_a_bad_rule_is_an_error_naming_it(expression: str, says: str) -> None:
    with pytest.raises(GateError, match=re.escape(says)):
        parse_gates(expression)


def wschaos(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wschaos", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)  # fmt: skip


def run_dir(tmp_path: Path, name: str, data: dict[str, Any]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps(data))
    return folder


def test_report_compare_fail_on_exits_1_and_says_what_moved(tmp_path: Path) -> None:
    base = run_dir(tmp_path, "base", report("base"))
    worse = run_dir(tmp_path, "worse", report("worse", p99=40.0, evicted=3.0))
    done = wschaos("report", "--compare", str(base), str(worse), "--fail-on", RULES)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "REGRESSION stuck_reader latency_p99_ms: 20 -> 40 (--fail-on p99_ms>+20%)" in done.stderr
    assert "REGRESSION stuck_reader eviction evicted_after_s: 1 -> 3 (--fail-on eviction_s>+1)" in done.stderr
    assert "2 regression(s) from base" in done.stderr


def test_report_compare_fail_on_exits_0_for_an_equal_run(tmp_path: Path) -> None:
    base = run_dir(tmp_path, "base", report("base"))
    same = run_dir(tmp_path, "same", copy.deepcopy(report("same")))
    done = wschaos("report", "--compare", str(base), str(same), "--fail-on", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No regression from base" in done.stdout


def test_a_bad_fail_on_is_a_one_line_error(tmp_path: Path) -> None:
    base = run_dir(tmp_path, "base", report("base"))
    done = wschaos("report", "--compare", str(base), str(base), "--fail-on", "p99_ms>>3")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "--fail-on 'p99_ms>>3': expected FIGURE>+N" in done.stderr and "Traceback" not in done.stderr


def test_run_baseline_is_checked_before_the_run_starts(tmp_path: Path) -> None:
    done = wschaos("run", "baseline", "--baseline", str(tmp_path), "--out", str(tmp_path / "runs"))
    assert done.returncode == 2 and "--baseline" in done.stderr and "not a run folder" in done.stderr
    base = run_dir(tmp_path, "base", report("base"))
    done = wschaos("run", "baseline", "--baseline", str(base), "--fail-on", "p99>+1", "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "no figure 'p99'" in done.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "r").exists(), "nothing ran"
    done = wschaos("run", "baseline", "--fail-on", "status", "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "--fail-on needs --baseline" in done.stderr


@pytest.mark.integration
def test_run_with_a_baseline_fails_on_a_regression_and_passes_without(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    base = run_dir(tmp_path, "base", report("base"))
    data = json.loads((base / "report.json").read_text())
    data["scenarios"] = [dict(data["scenarios"][0], delivery={"latency_p99_ms": 0.001})]  # baseline's p99 was tiny
    (base / "report.json").write_text(json.dumps(data))
    done = wschaos("run", "baseline", "--seed", "1", "--out", str(out), "--baseline", str(base),
                   "--fail-on", "p99_ms>+20%,status")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "REGRESSION baseline latency_p99_ms: 0.001 ->" in done.stderr
    done = wschaos("run", "baseline", "--seed", "1", "--out", str(out), "--baseline", str(base),
                   "--fail-on", "status")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No regression from base" in done.stdout
