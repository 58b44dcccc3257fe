"""Capacity against a real target that cannot keep up (the websockets broadcaster limited to 250 events a
second, tests/data/slow_broadcaster.yaml): calibration finds its limit, a share of it resolves at run
time, and a fault scenario fed above it gets an unknown delivery verdict, not a failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.calibrate import calibrate, summary_lines
from harness.checkers import UNKNOWN, UNRELIABLE
from harness.history import History
from harness.runner import run_scenario
from harness.scenario import parse
from harness.targetspec import load_target, parse_target
from harness.toxiproxy import Toxiproxy

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
SLOW = ROOT / "tests" / "data" / "slow_broadcaster.yaml"
LIMIT = 250.0  # its max_rate


def wschaos(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wschaos", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


@pytest.mark.timeout(150)
def test_calibrate_finds_the_slow_targets_limit_and_a_share_of_it_is_fed(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    done = wschaos("calibrate", "--target", str(SLOW), "--clients", "4", "--budget", "30", "--out", str(out),
                   timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    stored = json.loads((out / "capacity.json").read_text())["targets"]
    [(key, capacity)] = stored.items()
    assert key.startswith("slow_broadcaster@") and capacity["clients"] == 4 and capacity["p99_ms"] == 250.0
    assert 0.7 * LIMIT <= capacity["rate"] <= 1.15 * LIMIT, done.stdout
    assert capacity["failed_rate"] is not None and capacity["cpu_count"] >= 1 and capacity["date"]
    assert [s["held"] for s in capacity["steps"]][:3] == [True, True, False]  # 100, 200 held; 400 did not
    assert f"capacity of slow_broadcaster: {capacity['rate']:g} events/s held for 4 clients" in done.stdout

    scenario = tmp_path / "half.yaml"
    scenario.write_text(json.dumps({"name": "half", "cohorts": [{"name": "steady", "clients": 3}],
                                    "feed": {"rate": "50%"}, "method": [{"wait": 2}],
                                    "checks": {"delivery": {"e2e_p99_ms": 1000}}}))  # fmt: skip
    done = wschaos("run", str(scenario), "--target", str(SLOW), "--out", str(out), "--seed", "1", timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    history = History.load(out / "latest" / "half" / "history.jsonl")
    [rate] = history.of("feed_rate")
    assert (rate["rate"], rate["share_percent"], rate["capacity"], rate["key"]) == (
        capacity["rate"] / 2, 50.0, capacity["rate"], key)  # fmt: skip
    fed = sum(len(r["ids"]) for r in history.of("feed"))
    assert 0.6 * rate["rate"] * 2 <= fed <= 1.2 * rate["rate"] * 3.5  # about 2 s (to 3 s) at that rate


def stuck_reader(rate: float) -> dict[str, Any]:
    """stuck_reader's shape against the broadcaster: readers that never read join after 1.5 s of feed."""
    return {
        "name": "overfed",
        "target": {"heartbeat": 1},
        "cohorts": [{"name": "steady", "clients": 4}, {"name": "silent", "clients": 0}],
        "feed": {"rate": rate},
        "method": [
            {"wait": 0.5},
            {"fault": {"name": "silent", "type": "stuck_reader", "cohort": "silent", "params": {"clients": 2}}},
            {"wait": 2},
        ],
        "checks": {"delivery": {"cohorts": ["steady"], "e2e_p99_ms": 1000}},
    }


@pytest.mark.timeout(90)
async def test_a_fault_scenario_fed_above_the_targets_capacity_is_unknown_not_failed(
    toxiproxy: Toxiproxy, tmp_path: Path
) -> None:
    target = load_target(SLOW)
    over = await run_scenario(parse(stuck_reader(1000), "overfed"), target, toxiproxy, tmp_path / "over", seed=1)
    [verdict] = over.verdicts
    assert (verdict.status, verdict.unknown_reason) == (UNKNOWN, UNRELIABLE), verdict.summary
    assert verdict.summary.startswith("the target does not keep up without faults (fed ")
    assert verdict.figures["fault_free_delivered_per_s"] <= 1.2 * LIMIT
    assert verdict.figures["fault_free_fed_per_s"] >= 800
    assert verdict.figures["missing_ids"] > 0 or verdict.figures["e2e_p99_ms"] > 1000  # it did fail, for that

    under = await run_scenario(parse(stuck_reader(LIMIT / 2), "fed"), target, toxiproxy, tmp_path / "under", seed=1)
    assert [(v.checker, v.status) for v in under.verdicts] == [("delivery", "pass")], under.verdicts


@pytest.mark.timeout(60)
async def test_a_step_that_cannot_run_stops_the_search_and_nothing_is_claimed(
    toxiproxy: Toxiproxy, tmp_path: Path
) -> None:
    broken = parse_target({"name": "broken", "command": ["{python}", "-c", "import sys; sys.exit(3)"],
                           "ready": {"tcp": True, "timeout": 5}}, "broken.yaml")  # fmt: skip
    result = await calibrate(broken, toxiproxy, tmp_path, clients=2, budget_s=60, step_s=1)
    assert len(result.steps) == 1 and result.error and not result.held
    assert summary_lines(result)[0].startswith("calibration stopped: the step at 100/s could not run (")
