"""wschaos explore: the seeded schedule generator, the shrinker (with fake runners whose failure
condition is known), failure signatures, and one exploration against a mutant of the monitor."""

from __future__ import annotations

import copy
import dataclasses
import html
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from harness.checkers import Verdict
from harness.explore.generate import MAX_SECONDS, Options, generate, planned_seconds
from harness.explore.ranges import TABLE, explorable, fault_range, nameable, unjudged_checks
from harness.explore.reduce import default_target, drop_cohorts, lower, lower_rates
from harness.explore.session import Explorer, Settings, known_failures
from harness.explore.shrink import Shrinker
from harness.explore.signature import Signature, first_failure, reason_class, signature
from harness.faults import FAULTS
from harness.optiontypes import type_problem
from harness.runner import ScenarioResult
from harness.scenario import parse
from harness.targetspec import bundled_monitor, load_target
from reports.explore_html import write_explore_html
from tests.mutants.matrix import mutant_target_file

ROOT = Path(__file__).resolve().parent.parent
MONITOR_PARAMS = frozenset({"heartbeat", "send_timeout", "queue_size", "rate_limit"})
ALL, _ = explorable(external=False)


def options(seed: int = 1, faults: tuple[str, ...] = tuple(ALL), **kwargs: Any) -> Options:
    return Options(seed, faults, target_params=MONITOR_PARAMS, **kwargs)


def fault_steps(schedule: dict[str, Any]) -> list[dict[str, Any]]:
    return [step["fault"] for step in schedule["method"] if "fault" in step]


# ---------------------------------------------------------------------------------------------
# The generator


def test_the_same_seed_gives_the_same_schedules_and_another_seed_others():
    first = [generate(options(seed=5), i) for i in range(40)]
    again = [generate(options(seed=5), i) for i in range(40)]
    other = [generate(options(seed=6), i) for i in range(40)]
    assert first == again
    assert [s["method"] for s in first] != [s["method"] for s in other]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_generated_schedule_is_a_valid_scenario(seed):
    for i in range(120):
        schedule = generate(options(seed=seed), i)
        scenario = parse(copy.deepcopy(schedule), f"schedule {i}")
        assert 1 <= len(scenario.faults()) <= 3
        assert planned_seconds(schedule) <= MAX_SECONDS
        assert scenario.checks
        assert yaml.safe_load(yaml.safe_dump(schedule)) == schedule  # written out, it reads back the same


def test_every_param_a_fault_runs_with_is_within_its_range():
    # A slow_consumer left at its default ceiling of 120 s outlasted its schedule's timeout of 60 s.
    opt_in = ("log_rotation", "malformed_input", "stuck_churn", "steady_requests")
    for i in range(200):
        for step in fault_steps(generate(options(seed=4, faults=tuple(ALL) + opt_in), i)):
            ranges = fault_range(step["type"])
            params = {**FAULTS[step["type"]].defaults, **step.get("params", {})}
            for name, spec in ranges.params.items():
                value = params[name]
                assert value in spec if isinstance(spec, list) else spec[0] <= value <= spec[1], (i, step, name)


@pytest.mark.parametrize("capacity", [60.0, 12000.0])
def test_feed_rates_are_shares_of_a_calibrated_capacity(capacity):
    uncalibrated = [generate(options(seed=2), i) for i in range(80)]
    calibrated = [generate(options(seed=2, capacity=capacity), i) for i in range(80)]
    rates = [s["feed"]["rate"] for s in calibrated]
    bursts = [step["feed_rate"] for s in calibrated for step in s["method"] if "feed_rate" in step][::2]
    assert all(0.1 * capacity - 1 <= r <= capacity for r in rates)
    assert sum(r <= 0.4 * capacity + 1 for r in rates) >= len(rates) // 2  # the floors of some faults aside
    assert bursts and all(0.4 * capacity - 1 <= r <= capacity for r in bursts)
    # the same draws: only the rates differ from the uncalibrated schedules
    for a, b in zip(uncalibrated, calibrated, strict=True):
        assert fault_steps(a) == fault_steps(b) and a["cohorts"] == b["cohorts"]
    for i, schedule in enumerate(calibrated):
        parse(copy.deepcopy(schedule), f"schedule {i}")


def test_load_is_added_to_half_the_same_schedules_with_its_check_only_when_the_target_stays():
    plain = [generate(options(seed=3), i) for i in range(120)]
    loaded = [generate(options(seed=3, load=True), i) for i in range(120)]
    with_load = [s for s in loaded if "load" in s]
    assert 40 <= len(with_load) <= 80
    for a, b in zip(plain, loaded, strict=True):
        b = copy.deepcopy(b)
        b.pop("load", None)
        b["checks"].pop("load", None)
        assert b == a
    for i, s in enumerate(with_load):
        parse(copy.deepcopy(s), f"schedule {i}")
        assert s["load"]["users"] == s["load"]["spawn_rate"] and 10 <= s["load"]["users"] <= 40
        process = any(f["type"] in ("server_kill", "server_pause", "server_stop") for f in fault_steps(s))
        assert ("load" in s["checks"]) is not process


def test_every_fault_but_the_one_that_ends_the_run_is_healed_before_the_last_wait():
    for i in range(150):
        schedule = generate(options(seed=9), i)
        healed = {step["heal"] for step in schedule["method"] if "heal" in step}
        for fault in fault_steps(schedule):
            if fault_range(fault["type"]).terminal:  # type: ignore[union-attr]
                assert schedule["method"][-1] == {"fault": fault}
            else:
                assert fault["name"] in healed
        last = max(i for i, step in enumerate(schedule["method"]) if "heal" in step or "fault" in step)
        tail = schedule["method"][last + 1 :]
        assert tail or fault_range(schedule["method"][last].get("fault", {}).get("type", "")).terminal  # type: ignore[union-attr]


def test_only_the_faults_and_checks_asked_for_are_used():
    chosen = ("latency", "churn")
    for i in range(60):
        schedule = generate(options(faults=chosen, checks=frozenset({"delivery", "liveness"})), i)
        assert {f["type"] for f in fault_steps(schedule)} <= set(chosen)
        assert {name.split("@")[0] for name in schedule["checks"]} <= {"delivery", "liveness"}


def test_opt_in_checks_judge_every_schedule_only_when_named_and_bring_their_cohorts():
    opt_in = {"stats", "log_volume", "views", "resume"}
    for i in range(40):
        plain = generate(options(nodes=("n1", "n2")), i)
        assert not opt_in & set(plain["checks"])
        assert {c["name"] for c in plain["cohorts"]}.isdisjoint({"view_one", "view_two", "resumers"})
        schedule = generate(options(checks=frozenset({"no_error_logs", *opt_in}), nodes=("n1", "n2")), i)
        assert parse(copy.deepcopy(schedule), f"schedule {i}").checks  # still a valid scenario
        terminal = any(fault_range(f["type"]).terminal for f in fault_steps(schedule))  # type: ignore[union-attr]
        assert opt_in & set(schedule["checks"]) == (set() if terminal else opt_in)
        cohorts = {c["name"]: c for c in schedule["cohorts"]}
        assert cohorts["view_one"]["view"] == "n1" and cohorts["view_two"]["view"] == ["n1", "n2"]
        assert cohorts["resumers"]["resume_after"] == 1
        assert terminal or schedule["method"][-2:] == [{"feed_rate": 20}, {"wait": 1.5}]  # batches of one node
        faulted = {f.get("cohort") for f in fault_steps(schedule)}
        assert faulted.isdisjoint({"view_one", "view_two", "resumers"})  # no fault spoils what they judge


def test_a_check_no_fault_has_is_a_clear_error():
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="--checks shutdown: none of the faults explored"):
        generate(options(faults=("latency",), checks=frozenset({"shutdown"})), 0)


def test_target_settings_are_only_those_the_target_has():
    for i in range(60):
        schedule = generate(Options(1, ("network_cut", "stuck_reader"), target_params=frozenset({"heartbeat"})), i)
        assert set(schedule.get("target", {})) <= {"heartbeat"}


def test_external_targets_get_no_process_faults():
    usable, left_out = explorable(external=True)
    assert "server_kill" not in usable and "server_kill" in left_out
    assert all(not FAULTS[f].needs_process for f in usable)


def test_a_check_the_target_cannot_be_judged_by_is_never_drawn():
    # Drawn against a target without persistence, every schedule would end unknown however it behaved.
    unjudged = frozenset({"persistence", "no_error_logs"})
    for i in range(40):
        schedule = generate(options(unjudged=unjudged), i)
        assert schedule["checks"] and not {n.split("@")[0] for n in schedule["checks"]} & unjudged
        assert "persistence" in generate(options(), i)["checks"]


def test_the_checks_a_target_file_leaves_nothing_to_judge_with():
    assert unjudged_checks(bundled_monitor()) == {}
    broadcaster = load_target(ROOT / "harness" / "targets" / "ws_broadcaster.yaml")
    assert set(unjudged_checks(broadcaster)) == {"persistence", "stats"}
    assert "no persistence" in unjudged_checks(broadcaster)["persistence"]
    external = dataclasses.replace(broadcaster, url="ws://127.0.0.1:9/ws", command=[], metrics=None)
    assert set(unjudged_checks(external)) == {"persistence", "stats", "no_error_logs", "log_volume", "eviction",
                                              "shutdown"}  # fmt: skip


def test_the_exploration_says_which_checks_it_left_out_and_why(tmp_path):
    broadcaster = load_target(ROOT / "harness" / "targets" / "ws_broadcaster.yaml")
    settings = Settings(broadcaster, tmp_path, 60.0, 1, ("network_cut",), unjudged=unjudged_checks(broadcaster))
    explorer = Explorer(settings, progress=lambda line: None)
    assert "persistence" not in explorer.checkers() and "delivery" in explorer.checkers()
    # stats is opt-in and not named: it would not have been drawn, so it is not said to be left out
    assert list(explorer.checks_left_out()) == ["persistence"]
    summary = explorer.summary()
    assert list(summary["checks_left_out"]) == ["persistence"] and "persistence" not in summary["coverage"]["outcomes"]
    page = write_explore_html(explorer.write_summary().parent).read_text(encoding="utf-8")
    assert "not judged" in page and "declares no persistence" in page


def test_opt_in_faults_are_drawn_only_when_named_and_bring_what_they_rely_on():
    from harness.errors import HarnessError
    from harness.explore.ranges import OPT_IN
    from wschaos.explore_cmd import choose_faults

    usable, left_out = explorable(external=False)
    opt_in = ("log_rotation", "malformed_input", "steady_requests", "stuck_churn")
    for name in opt_in:
        assert name not in usable and left_out[name].startswith(OPT_IN)
    allowed = nameable(external=False)
    assert set(allowed) == {*usable, *opt_in}
    assert choose_faults("log_rotation,latency", usable, allowed, left_out) == ("log_rotation", "latency")
    assert choose_faults(None, usable, allowed, left_out) == tuple(usable)
    with pytest.raises(HarnessError, match="--faults: server_down cannot be explored: no ranges declared"):
        choose_faults("server_down", usable, allowed, left_out)
    rotating = [generate(options(faults=("log_rotation",)), i) for i in range(20)]
    for i, schedule in enumerate(rotating):
        parse(copy.deepcopy(schedule), f"schedule {i}")
        assert schedule["feed"]["split_lines"] is True  # a half-written line at each rotation
        assert schedule["checks"]["no_error_logs"] == {"allow": ["truncated while not followed"]}
    assert any(f["params"].get("down") for s in rotating for f in fault_steps(s))
    bad = [generate(options(faults=("malformed_input",)), i) for i in range(20)]
    assert all("split_lines" not in s["feed"] and s["checks"]["no_error_logs"] == {} for s in bad)
    for i in range(20):
        chatty = generate(options(faults=("steady_requests",)), i)
        (fault,) = fault_steps(chatty)
        assert chatty["target"]["rate_limit"] == 50 and fault.get("params", {}).get("rate", 25) <= 30
        assert chatty["checks"][f"rate_limit@{fault['cohort']}"] == {"cohort": fault["cohort"]}


def test_the_ranges_name_real_params_of_the_right_kind():
    for fault_type, ranges in TABLE.items():
        defaults = FAULTS[fault_type].defaults
        for name, spec in ranges.params.items():
            assert name in defaults, f"{fault_type}.{name}"
            for value in spec:
                assert type_problem(value, defaults[name]) is None, f"{fault_type}.{name}: {value!r}"
        assert set(ranges.shrink_low) <= set(ranges.params)


# ---------------------------------------------------------------------------------------------
# The shrinker, with fake runners

SIG = Signature("fail", "eviction", "ended late")

BIG = {
    "name": "explore-0042",
    "core": False,
    "target": {"heartbeat": 1, "send_timeout": 1},
    "cohorts": [
        {"name": "steady", "clients": 5},
        {"name": "c1", "clients": 7},
        {"name": "c2", "clients": 3},
        {"name": "c3", "clients": 9, "reconnect": False},
    ],
    "feed": {"rate": 390},
    "steady_state": 0.9,
    "timeout": 60,
    "method": [
        {"wait": 0.8},
        {"fault": {"name": "latency_1", "type": "latency", "cohort": "c2", "params": {"latency": 150}}},
        {"wait": 0.5},
        {"fault": {"name": "network_cut_2", "type": "network_cut", "cohort": "c1"}},
        {"feed_rate": 2000},
        {"wait": 1.2},
        {"fault": {"name": "mass_drop_3", "type": "mass_drop", "cohort": "c3", "params": {"share": 0.5}}},
        {"heal": "mass_drop_3"},
        {"wait": 2.0},
        {"heal": "latency_1"},
        {"feed_rate": 390},
        {"wait": 1.1},
        {"heal": "network_cut_2"},
        {"wait": 2.2},
    ],
    "checks": {
        "no_error_logs": {},
        "delivery": {"cohorts": ["steady"]},
        "liveness": {},
        "eviction@c1": {"cohort": "c1", "within": 2.5},
        "recovery@c1": {"cohort": "c1", "within": 5},
        "delivery@c2": {"cohorts": ["c2"]},
        "eviction@c3": {"cohort": "c3", "within": 2},
    },
}


def cut_with_three_clients(schedule: dict[str, Any]) -> bool:
    """The known failure: a network_cut on a cohort of at least 3 clients, judged by an eviction check."""
    sizes = {c["name"]: c["clients"] for c in schedule["cohorts"]}
    has_check = any(k.startswith("eviction") for k in schedule["checks"])
    return has_check and any(f["type"] == "network_cut" and sizes[f["cohort"]] >= 3 for f in fault_steps(schedule))


class FakeRunner:
    def __init__(self, fails: Any, flaky_every: int = 0) -> None:
        self.fails, self.flaky_every, self.calls = fails, flaky_every, 0

    async def __call__(self, schedule: dict[str, Any]) -> Signature | None:
        parse(copy.deepcopy(schedule), "fake run")  # the shrinker only ever runs valid scenarios
        self.calls += 1
        if self.flaky_every and self.calls % self.flaky_every == 0:
            return None
        return SIG if self.fails(schedule) else None


async def test_the_minimal_schedule_keeps_exactly_the_failure():
    runner, kept = FakeRunner(cut_with_three_clients), []
    lines: list[str] = []
    shrinker = Shrinker(runner, repeats=3, on_line=lines.append, on_kept=kept.append)
    out = await shrinker.shrink(copy.deepcopy(BIG), SIG)
    minimal = out.minimal
    assert out.state == "shrunk" and minimal is not None
    assert [f["type"] for f in fault_steps(minimal)] == ["network_cut"]
    assert minimal["cohorts"] == [{"name": "c1", "clients": 3}]
    assert [s for s in minimal["method"] if "wait" in s or "feed_rate" in s] == []
    assert set(minimal["checks"]) == {"eviction@c1"}
    assert minimal["target"] == {"heartbeat": 1}  # the cut's eviction bound is for a 1 s heartbeat
    assert minimal["feed"]["rate"] == 20 and minimal["steady_state"] == 0.2
    assert kept[0] == BIG and kept[-1] == minimal
    assert out.original_hits == 3 and out.kept == len(kept) - 1
    assert any("kept" in line and "drop fault latency_1" in line for line in lines)
    assert any("not kept" in line and "c1: 3 -> 2 clients" in line for line in lines)
    # every kept step was run 3 times; every step not kept stopped at its first run that did not fail
    assert runner.calls == out.runs == 2 + 3 * out.kept + sum("not kept" in line for line in lines)


async def test_params_shrink_toward_the_low_end_and_back_to_their_defaults():
    schedule = copy.deepcopy(BIG)
    schedule["method"].insert(1, {"fault": {"name": "flap_9", "type": "flap", "cohort": "c2",
                                            "params": {"cycles": 3, "cut": 0.9, "up": 0.8}}})  # fmt: skip

    def flaps_twice(s: dict[str, Any]) -> bool:
        return any(f["type"] == "flap" and f.get("params", {}).get("cycles", 3) >= 2 for f in fault_steps(s))

    out = await Shrinker(FakeRunner(flaps_twice), repeats=2).shrink(schedule, SIG)
    assert out.minimal is not None
    assert fault_steps(out.minimal) == [
        {"name": "flap_9", "type": "flap", "cohort": "c2", "params": {"cycles": 2, "cut": 0.3, "up": 0.3}}
    ]


@pytest.mark.parametrize("needs_users", [0, 7])
async def test_the_load_is_dropped_or_its_users_lowered_to_what_the_failure_needs(needs_users):
    schedule = copy.deepcopy(BIG)
    schedule["load"] = {"users": 30, "spawn_rate": 30}
    schedule["checks"]["load"] = {"max_gaps": 0}

    def fails(s: dict[str, Any]) -> bool:
        return cut_with_three_clients(s) and s.get("load", {}).get("users", 0) >= needs_users

    out = await Shrinker(FakeRunner(fails), repeats=1).shrink(schedule, SIG)
    assert out.minimal is not None and [f["type"] for f in fault_steps(out.minimal)] == ["network_cut"]
    if needs_users:
        assert out.minimal["load"] == {"users": needs_users, "spawn_rate": needs_users}
    else:
        assert "load" not in out.minimal and "load" not in out.minimal["checks"]


async def test_a_flaky_failure_is_reported_with_its_rate_and_not_shrunk():
    runner, kept = FakeRunner(cut_with_three_clients, flaky_every=2), []
    out = await Shrinker(runner, repeats=3, on_kept=kept.append).shrink(copy.deepcopy(BIG), SIG)
    assert out.state == "flaky" and out.rate == "2 of 3"
    assert out.minimal is None and kept == [] and runner.calls == 2
    assert "flaky" in out.log[-1]


async def test_shrinking_stops_before_a_run_the_budget_has_no_room_for():
    runner = FakeRunner(cut_with_three_clients)
    out = await Shrinker(runner, repeats=3, may_run=lambda s: runner.calls < 9).shrink(copy.deepcopy(BIG), SIG)
    assert out.state == "stopped" and runner.calls == 9
    assert out.minimal is not None and cut_with_three_clients(out.minimal)
    assert out.log[-1].startswith("stopped: the budget ends before the next run")


async def test_a_candidate_that_fails_otherwise_is_not_kept():
    async def runner(schedule: dict[str, Any]) -> Signature | None:
        return SIG if len(fault_steps(schedule)) == 3 else Signature("fail", "delivery", "lost")

    out = await Shrinker(runner, repeats=1).shrink(copy.deepcopy(BIG), SIG)
    assert len(fault_steps(out.minimal or {})) == 3
    assert any("failed otherwise: fail / delivery / lost" in line for line in out.log)


async def test_target_settings_a_remaining_fault_relies_on_are_kept():
    async def runner(schedule: dict[str, Any]) -> Signature | None:
        return SIG

    out = await Shrinker(runner, repeats=1).shrink(copy.deepcopy(BIG), SIG)
    assert out.minimal is not None and out.minimal.get("target") is None  # no fault left: nothing relied on
    only_cut = {**copy.deepcopy(BIG), "method": [{"fault": {"name": "cut", "type": "network_cut", "cohort": "c1"}},
                                                 {"wait": 3}, {"heal": "cut"}]}  # fmt: skip
    assert [what for what, _ in default_target(only_cut, None)] == ["target send_timeout back to its default"]


def test_lower_values_and_dropping_a_cohort_with_its_checks():
    assert lower(9, 1, integer=True) == [1, 5, 8]
    assert lower(1, 1, integer=True) == []
    assert lower(2.0, 0.0, integer=False) == [0.0, 1.0]
    assert lower(0.15, 0.1, integer=False) == []
    rates = {what for what, _ in lower_rates({**BIG, "feed": {"rate": 499}, "method": [{"feed_rate": 60}]}, None)}
    # a rate is lowered by a tenth of it at least, never to one event a second less
    assert rates == {"feed rate 499 -> 20/s", "feed rate 499 -> 259/s", "step 0: feed_rate 60 -> 20",
                     "step 0: feed_rate 60 -> 40"}  # fmt: skip
    no_faults = {**BIG, "method": [{"wait": 1}]}
    dropped = {what: s for what, s in drop_cohorts(no_faults, None)}
    c2 = dropped["drop cohort c2 (3 clients) and its checks"]
    assert [c["name"] for c in c2["cohorts"]] == ["steady", "c1", "c3"] and "delivery@c2" not in c2["checks"]


# ---------------------------------------------------------------------------------------------
# Signatures


def result(*verdicts: Verdict, error: str | None = None, status: str = "fail") -> ScenarioResult:
    return ScenarioResult("x", status, list(verdicts), 1.0, Path("."), 1, error)


def test_a_signature_ignores_numbers_names_and_the_order_of_checks():
    log_line = json.dumps({"level": "ERROR", "msg": "client 11 disconnected unexpectedly", "ts": "2026-12-02"})
    errors = Verdict("no_error_logs", "fail", "1 error line(s)", [{"lineno": 2, "line": log_line}])
    late = Verdict("eviction@c7", "fail", "cohort 'c7' ended late", [{"client": "c7-1", "problem": "ended late 3.2s"}])
    assert first_failure([late, errors]) is errors
    expected = Signature("fail", "no_error_logs", "error client # disconnected unexpectedly")
    assert signature(result(late, errors)) == expected
    assert reason_class(late) == "ended late #s"
    never = Verdict("eviction", "fail", "3 client(s) of 'c2' never left the registry", [{"t": 5.2, "registry": 9}])
    assert reason_class(never) == "" and str(signature(result(never))) == "fail / eviction"
    assert signature(result(Verdict("liveness", "pass", "ok"), status="pass")) is None
    timeout = signature(result(error="scenario did not finish within its timeout of 60s", status="error"))
    assert timeout == Signature("error", None, "scenario did not finish within its timeout of #s")


# ---------------------------------------------------------------------------------------------
# The exploration loop, with runs that are not real: a schedule fails when it has a network cut


class CutFailsExplorer(Explorer):
    async def run(self, schedule: dict[str, Any], run_dir: Path) -> ScenarioResult:
        parse(copy.deepcopy(schedule), "fake run")
        if any(f["type"] == "network_cut" for f in fault_steps(schedule)):
            size = sum(c["clients"] for c in schedule["cohorts"])
            late = Verdict("eviction@c1", "fail", "cohort 'c1' ended late", [{"problem": f"{size} clients late"}])
            done = result(late)
        else:
            done = result(Verdict("liveness", "pass", "ok"), status="pass")
        run_dir.mkdir(parents=True)
        (run_dir / "result.json").write_text(json.dumps(done.to_json()), encoding="utf-8")
        return done


async def explore_with_fake_runs(folder: Path) -> tuple[Explorer, list[dict[str, Any]]]:
    """An exploration that ends once one failure is shrunk; the explorer and the schedules it tried."""
    settings = Settings(bundled_monitor(), folder, 3600.0, 1, ("network_cut", "latency"), repeats=2,
                        until_shrunk=1)  # fmt: skip
    explorer = CutFailsExplorer(settings, progress=lambda line: None)
    await explorer.explore(toxiproxy=None)  # type: ignore[arg-type]  # the fake runs need none
    tried = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted((folder / "schedules").iterdir())]
    return explorer, tried


def test_the_coverage_counts_an_opt_in_check_only_when_named(tmp_path):
    for checks, wanted in ((None, set()), (frozenset({"delivery", "stats"}), {"delivery", "stats"})):
        settings = Settings(bundled_monitor(), tmp_path, 60.0, 1, ("latency",), checks=checks)
        assert set(Explorer(settings, progress=lambda line: None).checkers()) >= wanted
        assert ("stats" in Explorer(settings, progress=lambda line: None).checkers()) is bool(checks)


def test_the_coverage_counts_the_load_check_when_there_is_load(tmp_path):
    for load, wanted in ((False, set()), (True, {"load"})):
        settings = Settings(bundled_monitor(), tmp_path, 60.0, 1, ("latency",), load=load)
        checkers = Explorer(settings, progress=lambda line: None).checkers()
        assert {"no_error_logs", "delivery"} <= set(checkers) and set(checkers) & {"load"} == wanted


class FakeClock:
    """A clock each fake run moves on by ten seconds, so a budget ends after a known number of runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TimedCutFailsExplorer(CutFailsExplorer):
    async def run(self, schedule: dict[str, Any], run_dir: Path) -> ScenarioResult:
        self.clock.now += 10.0  # type: ignore[attr-defined]
        return await super().run(schedule, run_dir)


async def test_a_failure_an_earlier_exploration_found_is_counted_but_not_shrunk_again(tmp_path):
    first, _ = await explore_with_fake_runs(tmp_path / "first")
    known = known_failures(first.write_summary().parent)
    (sig,) = known
    assert sig == next(iter(first.failures)) and known[sig].endswith("explore.json#failure-1")
    settings = Settings(bundled_monitor(), tmp_path / "again", 300.0, 1, ("network_cut", "latency"), repeats=2,
                        known=known)  # fmt: skip
    explorer = TimedCutFailsExplorer(settings, progress=lambda line: None, clock=FakeClock())
    await explorer.explore(toxiproxy=None)  # type: ignore[arg-type]
    summary = explorer.summary()
    (failure,) = summary["failures"]
    assert failure["state"] == "known" and failure["hits"] >= 2 and failure["known_from"] == known[sig]
    assert summary["runs"]["shrink"] == 0 and explorer.new_failures() == []
    assert summary["schedules_tried"] == summary["runs"]["explore"] >= 20  # the budget went on exploring
    assert "known" in (tmp_path / "again" / "failure-1" / "shrink.log").read_text(encoding="utf-8")
    page = write_explore_html(explorer.write_summary().parent).read_text(encoding="utf-8")
    assert "known: found before in" in page


def test_known_refuses_what_is_not_an_explorations_summary(tmp_path):
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match=r"--known .*: cannot read an exploration's explore\.json"):
        known_failures(tmp_path / "nowhere.json")
    (tmp_path / "report.json").write_text(json.dumps({"schema": "wschaos.report/1"}), encoding="utf-8")
    with pytest.raises(HarnessError, match="not an exploration's summary"):
        known_failures(tmp_path / "report.json")


async def test_until_shrunk_ends_the_exploration_once_that_many_failures_are_shrunk(tmp_path):
    explorer, tried = await explore_with_fake_runs(tmp_path)
    summary = explorer.summary()
    assert summary["stopped_by"] == "shrunk" and len(summary["failures"]) == 1
    (failure,) = summary["failures"]
    assert failure["state"] == "shrunk" and failure["minimal"]["faults"] == ["network_cut"]
    assert len(tried) == summary["schedules_tried"]
    # it stopped at the first schedule with a cut: every one before it passed
    cuts = [any(f["type"] == "network_cut" for f in fault_steps(s)) for s in tried]
    assert cuts == [False] * (len(tried) - 1) + [True]


async def test_the_report_shows_both_schedules_side_by_side_with_a_failing_run_of_each(tmp_path):
    explorer, tried = await explore_with_fake_runs(tmp_path)
    original = tried[-1]
    page = write_explore_html(explorer.write_summary().parent).read_text(encoding="utf-8")
    found = page.split('id="found-by-explore"')[1].split('id="coverage"')[0]
    minimal = yaml.safe_load((tmp_path / "failure-1" / "minimal.yaml").read_text(encoding="utf-8"))
    assert html.escape(yaml.safe_dump(original, sort_keys=False), quote=True) in found
    assert html.escape(yaml.safe_dump(minimal, sort_keys=False), quote=True) in found
    original_size = sum(c["clients"] for c in original["cohorts"])
    minimal_size = sum(c["clients"] for c in minimal["cohorts"])
    assert minimal_size < original_size  # the two runs' evidence differ, so each is the right run's
    assert f"problem={original_size} clients late" in found and f"problem={minimal_size} clients late" in found
    assert "fail / eviction" in found and "done: no smaller schedule fails the same way" in found
    assert "latency" in page.split('id="coverage"')[1]


# ---------------------------------------------------------------------------------------------
# The command line


def wschaos(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wschaos", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "soon"], "wschaos: --budget: 'soon' is not a duration"),
        (["--faults", "netwrk_cut"], "wschaos: --faults: unknown fault type 'netwrk_cut'; known: churn"),
        (["--checks", "delivry"], "wschaos: --checks: unknown checker(s) delivry; known: no_error_logs"),
        (["--known", "nowhere/explore.json"], "wschaos: --known nowhere/explore.json: cannot read an exploration's"),
        (["--target", "harness/targets/ws_broadcaster.yaml", "--checks", "delivery,persistence"],
         "wschaos: --checks: persistence cannot judge ws_broadcaster: the target file declares no persistence"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, args, message):
    done = wschaos("explore", "--out", str(tmp_path), *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(message) and "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# One exploration against a mutant of the monitor

MUTANT = "error_log_on_disconnect"  # caught by no_error_logs as soon as a client goes away


@pytest.mark.integration
@pytest.mark.slow
def test_explore_finds_and_shrinks_a_mutant_and_the_minimal_schedule_fails_on_its_own(tmp_path):
    target = mutant_target_file(MUTANT, tmp_path)
    out = tmp_path / "runs"
    done = wschaos("explore", "--target", str(target), "--budget", "45s", "--seed", "3", "--faults", "mass_drop",
                   "--repeats", "2", "--out", str(out), timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    (explore_dir,) = out.glob("*-explore")
    summary = json.loads((explore_dir / "explore.json").read_text(encoding="utf-8"))
    assert summary["stopped_by"] == "budget" and summary["schedules_tried"] >= 1
    assert summary["coverage"]["faults"]["mass_drop"]["schedules"] >= 1
    assert summary["coverage"]["outcomes"]["no_error_logs"].get("fail", 0) >= 1
    (failure,) = summary["failures"]
    assert failure["signature"]["checker"] == "no_error_logs"
    folder = explore_dir / failure["dir"]
    assert {"original.yaml", "minimal.yaml", "shrink.log"} <= {p.name for p in folder.iterdir()}
    assert "original run 2 of 2: failed the same way" in (folder / "shrink.log").read_text(encoding="utf-8")
    page = (explore_dir / "index.html").read_text(encoding="utf-8")
    assert f'id="{failure["dir"]}"' in page and "no_error_logs</b> fail" in page
    again = wschaos("run", str(folder / "minimal.yaml"), "--target", str(target), "--seed", "3",
                    "--out", str(tmp_path / "again"), timeout=60)  # fmt: skip
    assert again.returncode == 1, again.stdout + again.stderr
    assert "no_error_logs: FAIL" in again.stdout


@pytest.mark.integration
def test_ctrl_c_writes_what_was_found_and_exits_130(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "wschaos", "explore", "--budget", "60s", "--seed", "1",
                             "--faults", "latency", "--out", str(tmp_path)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline, children = time.monotonic() + 30, []
        while time.monotonic() < deadline and len(children) < 2:  # toxiproxy-server and the target
            time.sleep(0.1)
            children = psutil.Process(proc.pid).children(recursive=True)
        time.sleep(2.0)
        children = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output[-2000:]
    assert len(children) >= 2 and "Traceback" not in output
    time.sleep(0.5)
    alive = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"left running: {[p.cmdline() for p in alive]}"
    (explore_dir,) = tmp_path.glob("*-explore")
    summary = json.loads((explore_dir / "explore.json").read_text(encoding="utf-8"))
    assert summary["stopped_by"] == "interrupted" and summary["schedules_tried"] == 1
    assert "Found by explore" in (explore_dir / "index.html").read_text(encoding="utf-8")
