"""The harness end to end, as a user drives it: the CLI, the pytest plugin, a second target, seeds,
and that nothing is left running after a run, a failed run, Ctrl-C or SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest

from harness.history import History
from harness.runner import run_scenario
from harness.scenario import discover, load
from harness.targetspec import load_target
from harness.toxiproxy import running_toxiproxy

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
WSCHAOS = [sys.executable, "-m", "wschaos"]


def wschaos(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WSCHAOS, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})  # fmt: skip


def test_validate_names_the_file_the_field_and_the_problem(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\ncohorts: [{name: a, clients: -1}]\nmethod: [{wait: 1}, {heal: nope}]\nchecks: {}\n")
    result = wschaos("validate", str(bad))
    assert result.returncode == 1
    assert f"{bad}: cohorts.0.clients: -1 is less than the minimum of 0" in result.stderr
    assert "checks" in result.stderr
    garbled = tmp_path / "garbled.yaml"
    garbled.write_text("name: [unclosed\n")
    result = wschaos("validate", str(garbled))
    assert result.returncode == 1 and f"{garbled}: line 2" in result.stderr and "not valid YAML" in result.stderr


def test_unknown_checker_and_fault_are_named(tmp_path):
    bad = tmp_path / "typo.yaml"
    bad.write_text("name: typo\ncohorts: [{name: a, clients: 1}]\nmethod: [{fault: {type: netwrk_cut, cohort: a}}]\n"
                   "checks: {delivry: {}}\n")  # fmt: skip
    result = wschaos("validate", str(bad))
    assert "method.0.fault.type: unknown fault 'netwrk_cut'" in result.stderr
    assert "checks.delivry: unknown checker" in result.stderr


def test_missing_toxiproxy_binary_gets_a_hint(tmp_path):
    result = wschaos("run", "baseline", "--out", str(tmp_path), env={"TOXIPROXY_SERVER": "/nonexistent/toxiproxy"})
    assert result.returncode == 2
    assert "scripts/bootstrap" in result.stderr and "Traceback" not in result.stderr


def test_pytest_collects_scenario_files_as_items(tmp_path):
    junit = tmp_path / "junit.xml"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "scenarios/", "-k", "baseline", f"--junitxml={junit}", "-q",
         "-p", "no:cacheprovider", "--wschaos-out", str(tmp_path / "runs"), "--wschaos-seed", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:]
    cases = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase")]
    assert cases == ["baseline"]
    collect = [sys.executable, "-m", "pytest", "scenarios/", "--collect-only", "-q", "-p", "no:cacheprovider"]
    listed = subprocess.run(collect, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert all(f"{p.name}::{p.stem}" in listed.stdout for p in discover())


async def run_against(target_file: Path, names: list[str], out: Path, seed: int = 3) -> dict[str, object]:
    results = {}
    async with running_toxiproxy(out) as toxiproxy:
        for name in names:
            scenario = load(discover([name])[0])
            results[name] = await run_scenario(scenario, load_target(target_file), toxiproxy, out / name, seed)
    return results


async def test_a_second_target_runs_the_suite_and_its_missing_resume_is_caught(tmp_path):
    """The websockets-based broadcaster holds delivery and eviction, but it has no resume: a client that
    reconnects after a cut gets a fresh init with the same epoch and a silent gap, which is caught. It has
    no database and declares no stats either, so persistence and stats cannot be judged: the baseline is
    unknown, not a pass."""
    target = ROOT / "harness" / "targets" / "ws_broadcaster.yaml"
    results = await run_against(target, ["baseline", "network_cut"], tmp_path)
    baseline = {v.checker: (v.status, v.unknown_reason) for v in results["baseline"].verdicts}
    assert results["baseline"].status == "unknown", baseline
    assert baseline.pop("persistence") == ("unknown", "not_applicable")
    assert baseline.pop("stats") == ("unknown", "not_applicable")
    assert set(baseline.values()) == {("pass", None)}, [v.to_json() for v in results["baseline"].verdicts]
    cut = {v.checker: v for v in results["network_cut"].verdicts}
    assert cut["delivery"].status == "pass" and cut["eviction"].status == "pass"
    assert cut["recovery"].status == "fail" and "silent gap" in cut["recovery"].summary


async def test_same_seed_same_schedule_of_faults(tmp_path):
    target = ROOT / "harness" / "targets" / "monitor.yaml"
    dropped = []
    for run in ("a", "b"):
        await run_against(target, ["mass_drop"], tmp_path / run, seed=11)
        history = History.load(tmp_path / run / "mass_drop" / "history.jsonl")
        dropped.append(sorted(r["client"] for r in history.of("client_fault")))
    assert dropped[0] == dropped[1] and 0 < len(dropped[0]) < 16



async def test_a_scenario_deletes_its_proxies_so_it_runs_again_on_the_same_toxiproxy(tmp_path):
    # wschaos mutants --full runs every scenario once per mutant, with the same seed, on one Toxiproxy.
    target = load_target(ROOT / "harness" / "targets" / "monitor.yaml")
    scenario = load(discover(["baseline"])[0])
    async with running_toxiproxy(tmp_path) as toxiproxy:
        for run in ("a", "b"):
            result = await run_scenario(scenario, target, toxiproxy, tmp_path / run, seed=5)
            assert result.status == "pass", result.error
            assert await toxiproxy.list_proxies() == []


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def until_a_fault_is_on(proc: subprocess.Popen[str]) -> str:
    """Read the run's progress until it says a fault started (the run is then midway, its children
    up), however slowly a loaded machine got it there; the output read so far."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.strip().startswith("fault "):
            break
    time.sleep(0.5)
    return "".join(seen)


def listening_ports(procs: list[psutil.Process]) -> set[int]:
    ports = set()
    for proc in procs:
        try:
            ports |= {c.laddr.port for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
        except psutil.Error:
            pass
    return ports


def interrupt_midway(tmp_path: Path, sig: int) -> tuple[int, list[psutil.Process], set[int], str]:
    proc = subprocess.Popen([*WSCHAOS, "run", "network_cut", "--out", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        seen = until_a_fault_is_on(proc)
        children = descendants(proc.pid)
        ports = listening_ports(children)
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=30)
        output = seen + output
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, children, ports, output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_leaves_no_process_or_port(tmp_path, sig):
    code, children, ports, output = interrupt_midway(tmp_path, sig)
    assert code == 130, output[-2000:]
    assert len(children) >= 2 and ports, "the run had not started its processes"
    time.sleep(0.5)
    alive = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"left running: {[p.cmdline() for p in alive]}"
    still = {c.laddr.port for c in psutil.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN} & ports
    assert still == set(), f"ports still listening: {still}"
    assert "Traceback" not in output


def start_run(tmp_path: Path, *scenarios: str) -> tuple[subprocess.Popen[str], list[psutil.Process]]:
    """A run in a process group of its own, as a terminal's foreground job is, once a fault is on."""
    proc = subprocess.Popen([*WSCHAOS, "run", *scenarios, "--out", str(tmp_path)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    until_a_fault_is_on(proc)
    return proc, descendants(proc.pid)


def test_ctrl_c_to_the_foreground_group_stops_a_multi_scenario_run_with_130(tmp_path):
    proc, children = start_run(tmp_path, "network_cut", "baseline", "mass_drop")
    try:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output[-2000:]
    assert "Toxiproxy" not in output and "Traceback" not in output, output[-2000:]
    assert not re.search(r"(?m)^\s*[A-Z]+ (baseline|mass_drop) \(", output), "a later scenario ran: " + output[-2000:]
    assert len(children) >= 2


def test_kill_9_of_the_harness_leaves_no_child_running(tmp_path):
    proc, children = start_run(tmp_path, "network_cut")
    assert len(children) >= 2, "the run had not started its processes"
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 5
    alive = children
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"left running after kill -9: {[p.cmdline() for p in alive]}"


def test_runs_that_select_nothing_or_cannot_write_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "looks.yaml").mkdir()
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\ncohorts: []\n")
    cases = [
        (["run", str(tmp_path / "empty")], "a directory with no scenario files"),
        (["run", str(tmp_path / "looks.yaml")], "a directory with no scenario files"),
        (["run", "browser_network_cut", "--core"], "--core selects none"),
        (["run", str(tmp_path / "latin1.yaml")], "not UTF-8 text"),
        (["run", "baseline", "--out", "/proc/wschaos-cannot-write"], "cannot write the run directory"),
    ]
    for args, message in cases:
        result = wschaos(*args, timeout=60)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) <= 2, result.stderr


def test_a_scenario_without_a_description_runs(tmp_path):
    text = (ROOT / "scenarios" / "baseline.yaml").read_text(encoding="utf-8")
    bare = tmp_path / "bare.yaml"
    bare.write_text("\n".join(line for line in text.splitlines() if not line.startswith("description")))
    assert "description" not in bare.read_text()
    result = wschaos("run", str(bare), "--out", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


def test_failed_run_leaves_no_process(tmp_path):
    target = tmp_path / "dies.yaml"
    target.write_text(json.dumps({
        "name": "dies", "command": ["{python}", "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"],
        "ready": {"tcp": True, "timeout": 5}, "feed": None,
    }))  # fmt: skip
    mark = f"failed-run-{os.getpid()}-{time.monotonic_ns()}"  # inherited by every child of this run only
    result = wschaos("run", "baseline", "--target", str(target), "--out", str(tmp_path / "runs"),
                     env={"WSCHAOS_TEST_RUN": mark})  # fmt: skip
    assert result.returncode == 1
    assert "exited with code 3" in result.stdout and "boom" in result.stdout
    time.sleep(0.5)
    assert [p.cmdline() for p in started_by(mark)] == []


def started_by(mark: str) -> list[psutil.Process]:
    """Live processes whose environment carries ``mark`` (other tests' processes do not)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("WSCHAOS_TEST_RUN") == mark and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            pass
    return found


def test_mutants_reads_its_catalogue_from_the_mutants_module(tmp_path):
    from tests.mutants.matrix import CAUGHT_BY

    listed = wschaos("mutants", "--list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split()[1] for line in listed.stdout.splitlines()}
    assert rows == {name: f"{scenario}/{checker}:" for name, (scenario, checker) in CAUGHT_BY.items()}
    assert "Logs a normal client disconnect at ERROR." in listed.stdout


def test_mutants_refuses_an_unknown_mutant_or_module(tmp_path):
    unknown = wschaos("mutants", "heartbeat_off", "no_such_mutant", "--out", str(tmp_path))
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "unknown mutant(s): no_such_mutant; known: " in unknown.stderr and "heartbeat_off" in unknown.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was started or written
    missing = wschaos("mutants", "--mutants-module", "tests.no_such_catalogue", "--list")
    assert missing.returncode == 2 and "cannot read the mutant catalogue of python -m tests.no_such_catalogue" in (
        missing.stderr
    )


def test_jobs_run_scenarios_side_by_side_with_the_serial_results(tmp_path):
    result = wschaos("run", "baseline", "slicer", "-j", "2", "--seed", "3", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    summary = json.loads((tmp_path / "latest" / "summary.json").read_text())
    assert [s["name"] for s in summary["scenarios"]] == ["baseline", "slicer"]  # the serial order
    assert {s["status"] for s in summary["scenarios"]} == {"pass"}
    assert "[slicer] fault" in result.stdout  # progress says whose
    starts = {name: os.stat(tmp_path / "latest" / name).st_mtime for name in ("baseline", "slicer")}
    assert abs(starts["baseline"] - starts["slicer"]) < 3.0, "the two ran one after the other"
