"""Scenario files: YAML checked against a JSON schema, then against each other's names."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from harness.errors import HarnessError
from harness.faults import FAULTS, FaultSpec
from harness.loadspec import DEFAULT_MIX, MAX_SPAWN_RATE, LoadError, LoadSpec
from harness.targetspec import HARNESS_PARAMS, TargetSpec

SCHEMA = json.loads((Path(__file__).parent / "scenario.schema.json").read_text())
DEFAULT_STEADY_S = 0.5  # fault-free seconds before and after the method (the run probes liveness at the heal)
SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"


class ScenarioError(HarnessError):
    """A scenario file that cannot be run; the message names the file, the field and the problem."""


@dataclass(frozen=True)
class CohortSpec:
    name: str
    clients: int
    kind: str = "probe"
    reconnect: bool = True
    rcvbuf: int | None = None
    view: str | list[str] | None = None  # the view its clients ask for: a node or a list of nodes
    resume_after: float | None = None  # seconds after each init, a resume request by message


@dataclass(frozen=True)
class Step:
    action: str  # wait, fault, heal, feed_rate, load
    value: Any


@dataclass
class Scenario:
    name: str
    path: Path | None
    description: str
    cohorts: list[CohortSpec]
    steps: list[Step]
    checks: dict[str, dict[str, Any]]
    target_params: dict[str, Any] = field(default_factory=dict)
    feed_rate: float | str = 200.0  # events a second, or "50%": a share of the target's capacity
    feed_split_lines: bool = False  # write each batch's last line in two pieces, with a pause
    steady_state: float = DEFAULT_STEADY_S
    timeout: float = 120.0
    core: bool = True
    load: LoadSpec | None = None  # Locust users for the whole method

    def faults(self) -> list[FaultSpec]:
        return [s.value for s in self.steps if s.action == "fault"]

    def cohort(self, name: str) -> CohortSpec:
        return next(c for c in self.cohorts if c.name == name)


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def parse(raw: Any, source: str, path: Path | None = None) -> Scenario:
    """Validate a loaded document and build the Scenario, or raise ScenarioError."""
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(raw), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{source}: {_where(e)}: {e.message}" for e in errors[:10]]
        hint = "a scenario has name, cohorts, method and checks; harness/scenario.schema.json gives every field"
        raise ScenarioError("\n".join(lines), hint=hint)
    cohorts = [CohortSpec(**c) for c in raw["cohorts"]]
    steps = [_step(entry, i) for i, entry in enumerate(raw["method"])]
    checks = {name: (opts or {}) for name, opts in raw["checks"].items()}
    scenario = Scenario(
        name=raw["name"],
        path=path,
        description=raw.get("description", ""),
        cohorts=cohorts,
        steps=steps,
        checks=checks,
        target_params=raw.get("target", {}),
        feed_rate=raw.get("feed", {}).get("rate", 200.0),
        feed_split_lines=raw.get("feed", {}).get("split_lines", False),
        steady_state=raw.get("steady_state", DEFAULT_STEADY_S),
        timeout=raw.get("timeout", 120.0),
        core=raw.get("core", True),
        load=_load(raw.get("load"), raw.get("timeout", 120.0), source),
    )
    _check_names(scenario, source)
    return scenario


def _step(entry: dict[str, Any], index: int) -> Step:
    action, value = next(iter(entry.items()))
    if action == "fault":
        value = FaultSpec(
            name=value.get("name", f"{value['type']}-{index}"),
            type=value["type"],
            cohort=value.get("cohort"),
            params=value.get("params", {}),
        )
    return Step(action, value)


def _load(raw: dict[str, Any] | None, timeout: float, source: str) -> LoadSpec | None:
    """The load block; Locust's run time is the scenario's timeout, so it stops by itself at the latest then."""
    if raw is None:
        return None
    try:
        return LoadSpec(
            users=raw["users"],
            spawn_rate=raw.get("spawn_rate", min(MAX_SPAWN_RATE, max(1.0, float(raw["users"])))),
            time_s=timeout,
            mix=dict(raw.get("mix", DEFAULT_MIX)),
            processes=raw.get("processes", 1),
            reconnect_every=raw.get("reconnect_every", 5.0),
        )
    except LoadError as exc:
        raise ScenarioError(f"{source}: load: {exc.message}") from None


def _check_names(scenario: Scenario, source: str) -> None:
    from harness.checkers import CHECKERS, checker_name, option_problem

    problems: list[str] = []
    cohort_names = [c.name for c in scenario.cohorts]
    if len(set(cohort_names)) != len(cohort_names):
        problems.append("cohorts: cohort names must be unique")
    for i, cohort in enumerate(scenario.cohorts):
        for option in ("view", "resume_after"):
            if getattr(cohort, option) is not None and cohort.kind != "probe":
                problems.append(f"cohorts.{i}.{option}: only probe cohorts take it (this one is {cohort.kind})")
    started: set[str] = set()
    for i, step in enumerate(scenario.steps):
        where = f"method.{i}"
        if step.action == "fault":
            spec: FaultSpec = step.value
            if spec.type not in FAULTS:
                problems.append(f"{where}.fault.type: unknown fault {spec.type!r}; known: {_known(FAULTS)}")
            else:
                problems += [f"{where}.fault.{field}: {p}" for field, p in FAULTS[spec.type].problems(spec)]
            if spec.cohort is not None and spec.cohort not in cohort_names:
                problems.append(f"{where}.fault.cohort: no cohort named {spec.cohort!r}; have {_known(cohort_names)}")
            if spec.name in started:
                problems.append(f"{where}.fault.name: {spec.name!r} is already used")
            started.add(spec.name)
        elif step.action == "heal" and step.value not in started:
            problems.append(f"{where}.heal: no fault named {step.value!r} was started before this step")
        elif step.action == "load" and scenario.load is None:
            problems.append(f"{where}.load: a load step needs a load block (users, spawn_rate, mix)")
    for name, opts in scenario.checks.items():
        if checker_name(name) not in CHECKERS:
            problems.append(f"checks.{name}: unknown checker; known: {_known(CHECKERS)}")
        elif problem := option_problem(name, opts):
            problems.append(f"checks.{name}: {problem}")
        cohort = opts.get("cohort")
        if cohort is not None and cohort not in cohort_names:
            problems.append(f"checks.{name}.cohort: no cohort named {cohort!r}")
        for c in opts.get("cohorts", []):
            if c not in cohort_names:
                problems.append(f"checks.{name}.cohorts: no cohort named {c!r}")
    if problems:
        raise ScenarioError("\n".join(f"{source}: {p}" for p in problems))


def check_target_params(scenario: Scenario, target: TargetSpec) -> None:
    """A scenario's ``target:`` keys must be params of the target it runs against: a setting the
    target does not have would be dropped and the scenario run under other conditions than it says."""
    unknown = sorted(set(scenario.target_params) - set(target.params) - HARNESS_PARAMS)
    if unknown:
        source = scenario.path or scenario.name
        raise ScenarioError(
            f"{source}: target: {_known(unknown)} {'is not a param' if len(unknown) == 1 else 'are not params'} "
            f"of target {target.name!r} "
            f"(its params: {_known(target.params) or 'none'})",
            hint="remove the key from the scenario's target section, or give the target file that param",
        )


def _known(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def load(path: Path) -> Scenario:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except IsADirectoryError:
        raise ScenarioError(f"{path}: a directory, not a scenario file") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(f"{path}: {at}not valid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: a scenario file holds a mapping (name, cohorts, method, checks)")
    return parse(raw, str(path), path)


def discover(names_or_paths: Iterable[str] = ()) -> list[Path]:
    """Scenario files for the given names or paths; every file in scenarios/ when none are given. A
    directory without scenario files is an error, never an empty run."""
    wanted = list(names_or_paths)
    if not wanted:
        return _in_directory(SCENARIO_DIR)
    paths = []
    for item in wanted:
        path = Path(item)
        if path.is_dir():
            paths += _in_directory(path)
        elif path.suffix in (".yaml", ".yml") or path.exists():
            paths.append(path)
        else:
            candidate = SCENARIO_DIR / f"{item}.yaml"
            if not candidate.exists():
                known = ", ".join(p.stem for p in sorted(SCENARIO_DIR.glob("*.yaml")))
                raise ScenarioError(f"no scenario named {item!r}; known: {known}")
            paths.append(candidate)
    return paths


def _in_directory(directory: Path) -> list[Path]:
    found = sorted(p for p in [*directory.glob("*.yaml"), *directory.glob("*.yml")] if p.is_file())
    if not found:
        raise ScenarioError(f"{directory}: a directory with no scenario files (*.yaml)")
    return found
