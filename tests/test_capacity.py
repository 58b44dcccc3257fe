"""Capacity without running a target: the stored file, feed rates given as a share of it, the search's
rates, the one-line error without a calibration, and the delivery verdict against a fault-free phase."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.calibrate import MAX_RATE, START_RATE, TOLERANCE, Search
from harness.capacity import Capacity, CapacityError, lookup, resolve_feed_rate, store, target_key
from harness.checkers import UNKNOWN, UNRELIABLE, CheckContext, CohortInfo, check_delivery
from harness.history import History
from harness.scenario import ScenarioError, parse
from harness.targetspec import TARGETS_DIR, load_target

ROOT = Path(__file__).resolve().parent.parent
SLOW = ROOT / "tests" / "data" / "slow_broadcaster.yaml"


def capacity(rate: float, name: str = "slow_broadcaster") -> Capacity:
    return Capacity(name, None, "0" * 64, rate, 20, 250.0, "2026-01-01T00:00:00+00:00", 2, failed_rate=rate * 1.04)


def scenario_doc(rate: Any) -> dict[str, Any]:
    return {"name": "shared", "cohorts": [{"name": "steady", "clients": 2}], "feed": {"rate": rate},
            "method": [{"wait": 1}], "checks": {"delivery": {}}}  # fmt: skip


def test_a_feed_rate_is_a_number_or_a_percentage() -> None:
    assert parse(scenario_doc(300), "x").feed_rate == 300
    assert parse(scenario_doc("50%"), "x").feed_rate == "50%"
    assert parse(scenario_doc("12.5%"), "x").feed_rate == "12.5%"
    for bad in ("50", "half", "-5%", 30000):
        with pytest.raises(ScenarioError, match=r"feed\.rate"):
            parse(scenario_doc(bad), "x")


def test_a_share_resolves_from_the_stored_capacity(tmp_path: Path) -> None:
    spec, path = load_target(SLOW), tmp_path / "capacity.json"
    monitor = load_target(TARGETS_DIR / "monitor.yaml")
    store(path, monitor, capacity(900.0, "monitor"))
    key = store(path, spec, capacity(240.0))
    assert key == target_key(spec) and key.startswith("slow_broadcaster@")
    rate = resolve_feed_rate("50%", spec, path, "shared")
    assert (rate.rate, rate.share, rate.capacity, rate.capacity_key) == (120.0, 50.0, 240.0, key)
    assert resolve_feed_rate("50%", monitor, path).rate == 450.0  # the other entry is kept
    assert resolve_feed_rate(75, spec, path).rate == 75.0 and resolve_feed_rate(75, spec, path).share is None
    stored = json.loads(path.read_text())
    assert stored["schema"] == "wschaos.capacity/1" and set(stored["targets"]) == {key, target_key(monitor)}
    lookup_back = lookup(path, spec)
    assert lookup_back is not None and lookup_back.rate == 240.0


def test_without_a_capacity_a_share_is_a_one_line_error_naming_calibrate(tmp_path: Path) -> None:
    spec = load_target(SLOW)
    with pytest.raises(CapacityError) as missing:
        resolve_feed_rate("50%", spec, tmp_path / "none.json", "shared")
    message = missing.value.message
    assert "\n" not in message and "scenario shared" in message and "slow_broadcaster" in message
    assert "run `wschaos calibrate --target tests/data/slow_broadcaster.yaml --capacity" in message


def test_a_changed_target_file_needs_a_new_calibration(tmp_path: Path) -> None:
    edited = tmp_path / "slow.yaml"
    edited.write_text(SLOW.read_text())
    path = tmp_path / "capacity.json"
    store(path, load_target(edited), capacity(240.0))
    edited.write_text(SLOW.read_text().replace("max_rate: 250", "max_rate: 100"))
    with pytest.raises(CapacityError, match="its target file changed since it was calibrated"):
        resolve_feed_rate("50%", load_target(edited), path)


def test_wschaos_run_without_a_capacity_says_so_in_one_line_before_starting_anything(tmp_path: Path) -> None:
    scenario = tmp_path / "shared.yaml"
    scenario.write_text(json.dumps(scenario_doc("50%")))
    command = [sys.executable, "-m", "wschaos", "run", str(scenario), "--target", str(SLOW), "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "feed rate 50% is a share of slow_broadcaster's capacity" in done.stderr
    assert "run `wschaos calibrate --target" in done.stderr
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # no run directory: nothing was started


def run_search(limit: float) -> tuple[list[float], Search]:
    search, tried = Search(), []
    while (rate := search.next_rate()) is not None:
        tried.append(rate)
        search.add(rate, rate <= limit)
    return tried, search


def test_the_search_doubles_then_bisects_to_within_the_tolerance() -> None:
    tried, search = run_search(333.0)
    assert tried[:3] == [START_RATE, 2 * START_RATE, 4 * START_RATE]
    assert search.failed is not None and search.failed - search.held <= TOLERANCE * search.failed
    assert 333.0 * (1 - 2 * TOLERANCE) <= search.held <= 333.0 < search.failed
    assert len(tried) <= 10


def test_the_search_goes_down_when_the_first_rate_fails_and_stops_at_the_most() -> None:
    tried, search = run_search(30.0)
    assert tried[0] == START_RATE and tried[1] == START_RATE / 2 and 25 <= search.held <= 30
    tried, search = run_search(1e9)
    assert search.held == MAX_RATE and search.failed is None and tried[-1] == MAX_RATE
    _, search = run_search(0.0)
    assert search.held == 0.0


# ---------------------------------------------------------------------------------------------
# The delivery verdict against the fault-free phase, from hand-built histories

WALL = 1_700_000_000.0


def rec(h: History, t: float, kind: str, **fields: Any) -> None:
    h.record(kind, **fields)["t"] = t
    h.records[-1]["w"] = WALL + t


def overfed_history(delivered_per_s: float, fed_per_s: float = 1000.0) -> History:
    """Two clients; events fed every 10 ms from t=0 to 4 s, a fault at t=1.5; the target sends in order,
    at most ``delivered_per_s`` events a second, in 50 ms batches, and nothing after t=5 s."""
    h = History()
    for client in ("steady-0", "steady-1"):
        rec(h, 0.0, "connect", client=client, cohort="steady", attempt=1)
        rec(h, 0.01, "init", client=client, epoch="e", seq=0)
    per_tick = round(fed_per_s / 100)
    ids = [f"e{i}" for i in range(400 * per_tick)]
    for tick in range(400):
        rec(h, 0.1 + tick * 0.01, "feed", ids=ids[tick * per_tick : (tick + 1) * per_tick], node="n1")
        if tick == 140:
            rec(h, 1.5, "fault_start", fault="stuck", type="stuck_reader", cohort="stuck", params={})
    sent, seq, t = 0, 0, 0.15
    while t < 5.0 and sent < len(ids):
        fed_by = min(len(ids), int((t - 0.1) * fed_per_s))
        batch = ids[sent : min(fed_by, sent + int(delivered_per_s * 0.05))]
        if batch:
            seq, sent = seq + 1, sent + len(batch)
            for client in ("steady-0", "steady-1"):
                rec(h, t, "batch", client=client, seq=seq, ids=batch, sent_at=WALL + t, recv_at=WALL + t + 0.002)
        t += 0.05
    return h


def delivery(h: History, **options: Any) -> Any:
    ctx = CheckContext(history=h, cohorts={"steady": CohortInfo("steady", 2, "probe")}, faulted={"stuck"})
    return check_delivery(ctx, {"cohorts": ["steady"], **options})


def test_a_target_behind_the_feed_before_any_fault_is_unknown_not_fail() -> None:
    verdict = delivery(overfed_history(delivered_per_s=400.0))
    assert (verdict.status, verdict.unknown_reason) == (UNKNOWN, UNRELIABLE)
    assert verdict.summary.startswith("the target does not keep up without faults (fed 1000/s, delivered ")
    assert 350 <= verdict.figures["fault_free_delivered_per_s"] <= 400
    assert "not judged: 2 client(s) of steady" in verdict.summary and "missing ids" in verdict.summary
    assert verdict.evidence[0]["problem"] == "target behind before any fault"
    assert verdict.figures["missing_ids"] > 0 and verdict.figures["fault_free_received_share"] < 0.9


def test_a_target_that_kept_up_before_the_fault_still_fails() -> None:
    h = overfed_history(delivered_per_s=2000.0)
    h.records = [r for r in h.records if not (r["kind"] == "batch" and r["t"] > 3.0)]  # stalls after the fault
    verdict = delivery(h)
    assert verdict.status == "fail" and "fault_free_received_share" not in verdict.figures


def test_latency_already_over_the_bound_before_the_fault_is_unknown() -> None:
    h = overfed_history(delivered_per_s=2000.0)
    for r in h.records:
        if r["kind"] == "batch":
            r["recv_at"] += 1.2  # every event arrives 1.2 s after it was fed, before the fault and after
    verdict = delivery(h, e2e_p99_ms=1000)
    assert verdict.status == UNKNOWN and "end-to-end latency p99 already" in verdict.summary


def test_without_a_fault_the_phase_does_not_apply() -> None:
    h = overfed_history(delivered_per_s=400.0)
    h.records = [r for r in h.records if r["kind"] != "fault_start"]
    assert delivery(h).status == "fail"
