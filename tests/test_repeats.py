"""``wschaos run --repeat N``: each scenario N times with seeds of their own; per scenario the pass rate
with its 95% Wilson interval, and a scenario that both held and broke is flaky, with its failing seeds."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from reports.junit import _repeat_properties
from reports.repeats import repeat_stats, wilson

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("passed", "runs", "low", "high"),
    [(0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (5, 10, 0.2366, 0.7634), (19, 20, 0.7639, 0.9911)],
)
def test_the_wilson_interval_matches_its_known_values(passed: int, runs: int, low: float, high: float) -> None:
    got = wilson(passed, runs)
    assert got == pytest.approx((low, high), abs=1e-4)


def results(*statuses: str) -> list[dict[str, object]]:
    names = ["churn" if i == 0 else f"churn#{i + 1}" for i in range(len(statuses))]
    return [{"name": n, "status": s, "seed": 100 + i} for i, (n, s) in enumerate(zip(names, statuses, strict=True))]


def test_a_scenario_that_held_and_broke_is_flaky_with_its_failing_seeds() -> None:
    (entry,) = repeat_stats(results("pass", "fail", "pass", "error", "unknown"))
    assert entry.flaky and (entry.passed, entry.judged) == (2, 4) and entry.failing_seeds == [101, 103]
    assert entry.line().startswith("FLAKY churn: held 2 of 4 (95% interval 15% to 85%), broke with seeds 101, 103")
    (steady,) = repeat_stats(results("pass", "pass", "pass"))
    assert not steady.flaky and steady.line() == "churn: held 3 of 3 (95% interval 44% to 100%)"
    (broken,) = repeat_stats(results("fail", "fail"))
    assert not broken.flaky, "always broken is broken, not flaky"


def test_junit_carries_the_pass_rate_and_the_flaky_property() -> None:
    props = _repeat_properties(results("pass", "fail"))
    assert props["flaky.churn"] == "failing seeds 101"
    assert props["pass_rate.churn"].startswith("FLAKY churn: held 1 of 2")
    assert _repeat_properties([{"name": "churn", "status": "fail", "seed": 1}]) == {}, "only with --repeat"


@pytest.mark.integration
def test_run_repeat_runs_each_scenario_n_times_with_seeds_of_their_own(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "wschaos", "run", "baseline", "--repeat", "2", "--seed", "1",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    run = (tmp_path / "latest").resolve()
    summary = json.loads((run / "summary.json").read_text())
    assert [s["name"] for s in summary["scenarios"]] == ["baseline", "baseline#2"]
    assert len({s["seed"] for s in summary["scenarios"]}) == 2
    assert summary["repeats"] == [{"name": "baseline", "passed": 2, "judged": 2, "flaky": False,
                                   "pass_rate_95": [0.3424, 1.0], "failing_seeds": []}]  # fmt: skip
    assert "baseline: held 2 of 2 (95% interval 34% to 100%)" in done.stdout
    assert (run / "baseline#2" / "history.jsonl.gz").is_file()
    props = {p.get("name"): p.get("value") for p in ET.parse(run / "junit.xml").getroot().iter("property")}
    assert props["pass_rate.baseline"] == "baseline: held 2 of 2 (95% interval 34% to 100%)"
    assert "Repeats" in (run / "index.html").read_text() and "held 2 of 2" in (run / "index.html").read_text()
