"""The mutant matrix: scenarios run against broken variants of the bundled monitor, and which checker
caught which variant.

The variants live outside the product, in a catalogue module (the project's ``tests.mutants`` by
default). The product never imports it: ``python -m MODULE``, run as a subprocess in the project's
root, prints the catalogue as JSON (``{"launcher": MODULE, "mutants": [{"name", "breaks",
"scenario", "checker"}]}``), and ``python -m LAUNCHER NAME [monitor args]`` starts the monitor with
one variant applied. ``scenario`` and ``checker`` name the scenario and checker expected to catch it:
the fast part of the matrix; ``full`` runs every scenario against every variant.
"""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.runner import ScenarioResult, run_scenario
from harness.scenario import discover, load
from harness.targetspec import PROJECT_ROOT, TargetSpec, bundled_monitor
from harness.toxiproxy import running_toxiproxy

DEFAULT_MODULE = "tests.mutants"
CATALOGUE_TIMEOUT = 60.0


class MutantsError(HarnessError):
    """The catalogue could not be read, or names a mutant it does not have."""


@dataclass(frozen=True)
class Mutant:
    name: str
    breaks: str
    scenario: str  # the scenario expected to catch it
    checker: str  # the checker of that scenario expected to fail


@dataclass(frozen=True)
class Catalogue:
    launcher: str  # a module run as ``python -m LAUNCHER NAME [monitor args]``
    mutants: dict[str, Mutant]

    @classmethod
    def from_json(cls, raw: Any, source: str) -> Catalogue:
        try:
            mutants = [Mutant(m["name"], m["breaks"], m["scenario"], m["checker"]) for m in raw["mutants"]]
            launcher = raw["launcher"]
        except (KeyError, TypeError) as exc:
            raise MutantsError(f"{source}: not a mutant catalogue (missing {exc})") from None
        if not isinstance(launcher, str) or not launcher:
            raise MutantsError(f"{source}: the catalogue's launcher must be a module name")
        return cls(launcher, {m.name: m for m in mutants})

    def check_names(self, names: list[str]) -> None:
        unknown = [n for n in names if n not in self.mutants]
        if unknown:
            raise MutantsError(f"unknown mutant(s): {', '.join(unknown)}; known: {', '.join(self.mutants)}")


def read_catalogue(module: str = DEFAULT_MODULE, root: Path = PROJECT_ROOT) -> Catalogue:
    """The catalogue printed by ``python -m MODULE`` run in ``root``."""
    command = [sys.executable, "-m", module]
    hint = f"it runs in {root}: run wschaos from a checkout of the project, or name another --mutants-module"
    try:
        done = subprocess.run(command, cwd=root, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=CATALOGUE_TIMEOUT)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise MutantsError(f"python -m {module} printed no catalogue within {CATALOGUE_TIMEOUT:.0f}s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise MutantsError(f"cannot read the mutant catalogue of python -m {module}: {last}", hint=hint)
    try:
        raw = json.loads(done.stdout)
    except ValueError:
        raise MutantsError(f"python -m {module} did not print a JSON catalogue", hint=hint) from None
    return Catalogue.from_json(raw, f"python -m {module}")


def mutant_target(catalogue: Catalogue, name: str) -> TargetSpec:
    """The bundled monitor's target, started through the catalogue's launcher."""
    catalogue.check_names([name])
    spec = bundled_monitor()
    command = list(spec.command)
    index = command.index("monitor")
    command[index - 1 : index + 1] = ["-m", catalogue.launcher, name]
    return dataclasses.replace(spec, name=f"monitor+{name}", command=command)


@dataclass
class Cell:
    mutant: str
    scenario: str
    status: str
    caught_by: list[str]
    evidence: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def cell(mutant: str, result: ScenarioResult) -> Cell:
    failed = [v for v in result.verdicts if v.status == "fail"]
    evidence = ""
    if failed:
        first = failed[0]
        evidence = f"{first.checker}: {first.summary}"
    elif result.error:
        evidence = f"error: {result.error}"
    elif result.status == "skipped":
        evidence = f"skipped: {result.reason}"
    return Cell(mutant, result.name, result.status, [v.checker for v in failed], evidence)


def pairs(catalogue: Catalogue, mutants: list[str], full: bool) -> list[tuple[str, str]]:
    if full:
        names = [p.stem for p in discover()]
        return [(m, s) for m in mutants for s in names]
    return [(m, catalogue.mutants[m].scenario) for m in mutants]


async def run_matrix(
    catalogue: Catalogue,
    mutants: list[str],
    out: Path,
    seed: int,
    full: bool = False,
    progress: Callable[[str], Any] = print,
) -> list[Cell]:
    catalogue.check_names(mutants)
    cells = []
    async with running_toxiproxy(out) as toxiproxy:
        for mutant, scenario_name in pairs(catalogue, mutants, full):
            scenario = load(discover([scenario_name])[0])
            result = await run_scenario(scenario, mutant_target(catalogue, mutant), toxiproxy,
                                        out / mutant / scenario_name, random.Random(seed).randrange(2**31))
            cells.append(cell(mutant, result))
            progress(f"{mutant:24} {scenario_name:20} {result.status:5} caught by {cells[-1].caught_by}")
    return cells


def caught_for_the_right_reason(catalogue: Catalogue, c: Cell) -> bool:
    expected = catalogue.mutants[c.mutant]
    return c.scenario != expected.scenario or expected.checker in c.caught_by


def matrix_table(cells: list[Cell]) -> str:
    """A markdown table: mutants by scenarios, each cell the checkers that failed."""
    scenarios = sorted({c.scenario for c in cells})
    mutants = list(dict.fromkeys(c.mutant for c in cells))
    by = {(c.mutant, c.scenario): c for c in cells}
    lines = ["| mutant | " + " | ".join(scenarios) + " |", "| --- |" + " --- |" * len(scenarios)]
    for m in mutants:
        row = []
        for s in scenarios:
            c = by.get((m, s))
            row.append("" if c is None else (", ".join(c.caught_by) or ("error" if c.status == "error" else "held")))
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    return "\n".join(lines)
