"""Verdicts that never lie, on real servers over loopback: a broadcaster without seq and without resume
fails recovery with a silent gap (or passes saying its declared semantics allowed it), a target file
that maps the wrong event id gets one error naming the mapping, unknown target keys stop a run before
anything starts, and the Reproduce line gives back the command as it was typed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from harness.runner import ScenarioResult, run_scenario
from harness.scenario import discover, load
from harness.targetspec import bundled_monitor, load_target
from harness.toxiproxy import running_toxiproxy
from reports.json_report import reproduce_command
from tests.test_harness_cli import ROOT, wschaos
from wschaos.cli import scenario_args

DATA = ROOT / "tests" / "data"
NO_SEQ = DATA / "ws_broadcaster_noseq.yaml"
GAPS_ALLOWED = DATA / "ws_broadcaster_noseq_gaps_allowed.yaml"
WRONG_ID = DATA / "ws_broadcaster_wrong_event_id.yaml"
BROADCASTER = ROOT / "harness" / "targets" / "ws_broadcaster.yaml"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def network_cut_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ScenarioResult]:
    """network_cut against the broadcaster without seq, once as it is and once declaring gaps allowed."""
    out = tmp_path_factory.mktemp("noseq")

    async def run() -> dict[str, ScenarioResult]:
        scenario = load(discover(["network_cut"])[0])
        async with running_toxiproxy(out) as toxiproxy:
            return {
                name: await run_scenario(scenario, load_target(path), toxiproxy, out / name, seed=1)
                for name, path in (("forbidden", NO_SEQ), ("allowed", GAPS_ALLOWED))
            }

    return asyncio.run(run())


def verdict(result: ScenarioResult, checker: str) -> tuple[str, str]:
    found = next(v for v in result.verdicts if v.checker == checker)
    return found.status, found.summary


def test_a_reconnect_without_seq_that_loses_events_is_a_silent_gap(network_cut_runs: dict) -> None:
    result = network_cut_runs["forbidden"]
    status, summary = verdict(result, "recovery")
    assert status == "fail" and summary.startswith("silent gap"), summary
    gap = next(v for v in result.verdicts if v.checker == "recovery").evidence[0]
    assert gap["client"].startswith("cut-") and gap["fault"] == "cut" and gap["missing"] > 50
    assert gap["first_missing_ids"].startswith("F")
    assert verdict(result, "delivery")[0] == "pass" and verdict(result, "eviction")[0] == "pass"


def test_declared_gaps_pass_and_say_they_were_allowed(network_cut_runs: dict) -> None:
    status, summary = verdict(network_cut_runs["allowed"], "recovery")
    assert status == "pass", summary
    assert "event(s) missed, allowed by the target's declared semantics (gaps_after_reconnect: allowed)" in summary


def test_a_wrong_event_id_is_one_error_first_and_the_reproduce_line_keeps_the_paths(tmp_path: Path) -> None:
    scenario = "scenarios/baseline.yaml"
    target = str(WRONG_ID.relative_to(ROOT))
    done = wschaos("run", scenario, "--seed", "1", "--target", target, "--out", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if "ERROR baseline" in line)
    assert "delivery:" in lines[first + 1] and "ERROR" in lines[first + 1]
    assert "but none carried a fed id: check the target file's messages.event_id (now 'id')" in lines[first + 1]
    assert "missing" not in lines[first + 1]
    assert f"Reproduce: wschaos run {scenario} --seed 1 --target {target}" in done.stdout


def test_unknown_target_keys_stop_the_run_before_anything_starts(tmp_path: Path) -> None:
    done = wschaos("run", "stuck_reader", "--target", str(BROADCASTER), "--out", str(tmp_path / "runs"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "target: send_timeout is not a param of target 'ws_broadcaster' (its params: heartbeat)" in done.stderr
    assert not (tmp_path / "runs").exists()
    checked = wschaos("validate", "stuck_reader", "network_cut", "--target", str(BROADCASTER))
    assert checked.returncode == 1
    assert "send_timeout is not a param" in checked.stderr and "ok      " in checked.stdout


def test_in_a_suite_a_scenario_the_target_cannot_run_is_an_error_and_the_rest_run(tmp_path: Path) -> None:
    done = wschaos("run", "baseline", "stuck_reader", "--target", str(BROADCASTER), "--seed", "1",
                   "--out", str(tmp_path / "runs"))  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cannot run as written against ws_broadcaster: " in done.stderr and "send_timeout" in done.stderr
    statuses = {line.split()[1]: line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ")
                and line.split()[0] in ("PASS", "FAIL", "ERROR", "UNKNOWN")}  # fmt: skip
    assert statuses["stuck_reader"] == "ERROR" and statuses["baseline"] in ("PASS", "UNKNOWN"), done.stdout


async def test_run_scenario_refuses_unknown_target_keys_too(tmp_path: Path) -> None:
    scenario = load(discover(["stuck_reader"])[0])
    result = await run_scenario(scenario, load_target(BROADCASTER), None, tmp_path, seed=1)  # type: ignore[arg-type]
    assert result.status == "error" and "send_timeout is not a param" in (result.error or "")
    assert set(scenario.target_params) <= set(bundled_monitor().params)


def test_reproduce_gives_scenarios_and_target_as_given() -> None:
    chosen = [load(p) for p in discover(["scenarios/baseline.yaml", "mass_drop"])]
    given = scenario_args(("scenarios/baseline.yaml", "mass_drop"), chosen)
    assert given == {"baseline": "scenarios/baseline.yaml", "mass_drop": "mass_drop"}
    summary = {"seed": 4, "target": "x", "target_file": "/abs/x.yaml", "target_arg": "../x.yaml",
               "scenario_args": given, "scenarios": [{"name": "baseline"}, {"name": "mass_drop"}]}  # fmt: skip
    assert reproduce_command(summary) == "wschaos run scenarios/baseline.yaml mass_drop --seed 4 --target ../x.yaml"
    assert reproduce_command(summary, ["mass_drop"]) == "wschaos run mass_drop --seed 4 --target ../x.yaml"
