"""Scenario files: parsing, the steps they become, and errors that name the file, the field and the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.faults import FAULTS, FaultSpec, make_fault
from harness.scenario import ScenarioError, Step, discover, load, parse

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "my.yaml"


def doc(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "s",
        "cohorts": [{"name": "a", "clients": 2}, {"name": "b", "clients": 1, "reconnect": False}],
        "method": [{"wait": 0.5}, {"fault": {"type": "network_cut", "cohort": "b"}}, {"heal": "network_cut-1"}],
        "checks": {"delivery": {"cohorts": ["a"]}, "liveness": None},
    }
    return {**raw, **overrides}


def problems(raw: dict[str, Any]) -> str:
    with pytest.raises(ScenarioError) as caught:
        parse(raw, SOURCE)
    return caught.value.message


def test_a_document_becomes_cohorts_steps_and_checks_with_defaults() -> None:
    scenario = parse(doc(), SOURCE)
    assert [(c.name, c.clients, c.kind, c.reconnect) for c in scenario.cohorts] == [
        ("a", 2, "probe", True),
        ("b", 1, "probe", False),
    ]
    assert scenario.steps == [
        Step("wait", 0.5),
        Step("fault", FaultSpec("network_cut-1", "network_cut", "b", {})),  # named after its type and index
        Step("heal", "network_cut-1"),
    ]
    assert scenario.faults() == [scenario.steps[1].value]
    assert scenario.checks == {"delivery": {"cohorts": ["a"]}, "liveness": {}}
    assert (scenario.feed_rate, scenario.steady_state, scenario.timeout, scenario.core) == (200.0, 0.5, 120.0, True)
    assert scenario.load is None and scenario.target_params == {}


def test_a_load_block_takes_the_scenario_timeout_as_its_run_time() -> None:
    scenario = parse(doc(timeout=30, load={"users": 4}), SOURCE)
    assert scenario.load is not None
    assert (scenario.load.users, scenario.load.spawn_rate, scenario.load.time_s) == (4, 4.0, 30)
    assert f"{SOURCE}: load.users: 9000 is greater than the maximum of 5000" in problems(doc(load={"users": 9000}))
    mix = problems(doc(load={"users": 4, "mix": {"steady": 0}}))
    assert mix.startswith(f"{SOURCE}: load: ") and "the mix needs weights of 0 or more" in mix


def test_schema_errors_name_the_file_and_the_field() -> None:
    message = problems(doc(cohorts=[{"name": "a", "clients": -1}], feed={"rate": "fast"}))
    assert f"{SOURCE}: cohorts.0.clients: -1 is less than the minimum of 0" in message
    assert f"{SOURCE}: feed.rate: 'fast' does not match '^[0-9]+(\\\\.[0-9]+)?%$'" in message


@pytest.mark.parametrize(
    "method, problem",
    [
        ([{"fault": {"type": "netwrk_cut", "cohort": "a"}}],
         "method.0.fault.type: unknown fault 'netwrk_cut'; known: "),
        ([{"fault": {"type": "flap", "cohort": "nope"}}], "method.0.fault.cohort: no cohort named 'nope'; have a, b"),
        ([{"fault": {"type": "flap", "cohort": "a", "params": {"cycle": 2}}}],
         "method.0.fault.params: unknown params ['cycle']; known: cut, cycles, up"),
        ([{"fault": {"type": "network_cut"}}], "method.0.fault.cohort: needs a cohort"),
        ([{"fault": {"name": "x", "type": "latency", "cohort": "a"}}, {"fault": {"name": "x", "type": "slicer",
          "cohort": "a"}}], "method.1.fault.name: 'x' is already used"),
        ([{"heal": "x"}, {"fault": {"name": "x", "type": "latency", "cohort": "a"}}],
         "method.0.heal: no fault named 'x' was started before this step"),
        ([{"load": {"users": 2}}], "method.0.load: a load step needs a load block"),
    ],
)  # fmt: skip
def test_method_errors_name_the_step_and_the_field(method: list[dict[str, Any]], problem: str) -> None:
    assert f"{SOURCE}: {problem}" in problems(doc(method=method))


def test_check_errors_name_the_checker_and_the_cohort() -> None:
    message = problems(doc(checks={"delivry": {}, "eviction": {"cohort": "z"}, "delivery": {"cohorts": ["y"]}}))
    assert f"{SOURCE}: checks.delivry: unknown checker; known:" in message
    assert f"{SOURCE}: checks.eviction.cohort: no cohort named 'z'" in message
    assert f"{SOURCE}: checks.delivery.cohorts: no cohort named 'y'" in message


def test_option_and_param_types_are_checked_before_a_run() -> None:
    message = problems(doc(checks={"delivery": {"cohorts": ["a"], "settle_s": "quick", "latency_p99_ms": "quick"}}))
    assert f"{SOURCE}: checks.delivery: " in message and "settle_s" in message and "latency_p99_ms" in message
    fault = {"type": "mass_drop", "cohort": "b", "params": {"rst": "no", "share": "most"}}
    message = problems(doc(method=[{"fault": fault}, {"heal": "mass_drop-1"}]))
    assert "params.rst" in message and "params.share" in message


def test_cohort_names_must_be_unique() -> None:
    message = problems(doc(cohorts=[{"name": "a", "clients": 1}, {"name": "a", "clients": 1}]))
    assert f"{SOURCE}: cohorts: cohort names must be unique" in message


def test_every_problem_is_reported_at_once() -> None:
    message = problems(doc(method=[{"heal": "x"}, {"fault": {"type": "nope", "cohort": "q"}}]))
    assert len(message.splitlines()) == 3


def test_files_that_cannot_be_read_or_are_not_yaml_mappings(tmp_path: Path) -> None:
    garbled = tmp_path / "garbled.yaml"
    garbled.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match=rf"{garbled}: line 2, column 1: not valid YAML"):
        load(garbled)
    listed = tmp_path / "listed.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ScenarioError, match=rf"{listed}: a scenario file holds a mapping"):
        load(listed)
    with pytest.raises(ScenarioError, match=rf"{tmp_path / 'missing.yaml'}: cannot read"):
        load(tmp_path / "missing.yaml")


def test_discover_finds_names_paths_and_directories(tmp_path: Path) -> None:
    every = discover()
    assert every and all(p.suffix == ".yaml" for p in every)
    assert discover(["baseline"]) == [ROOT / "scenarios" / "baseline.yaml"]
    assert discover([str(ROOT / "scenarios")]) == every
    with pytest.raises(ScenarioError, match="no scenario named 'basline'; known: baseline"):
        discover(["basline"])


def test_every_bundled_scenario_parses_and_its_faults_are_in_the_catalogue() -> None:
    for path in discover():
        scenario = load(path)
        assert scenario.name == path.stem
        for spec in scenario.faults():
            assert type(make_fault(spec)) is FAULTS[spec.type]


def test_reading_scenarios_imports_neither_the_runner_nor_the_locust_process_manager() -> None:
    code = (
        "import sys, harness.scenario\n"
        "print(sorted(m for m in ('harness.load', 'harness.runner', 'harness.cli') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_faults_do_not_import_scenarios() -> None:
    code = "import sys, harness.faults\nprint('harness.scenario' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
