"""Runs scenarios against the mutants and tells which checker caught which mutant, with evidence.

``CAUGHT_BY`` names, for each mutant, the scenario and checker expected to catch it: the fast part
of the matrix that CI runs. ``--full`` runs every scenario against every mutant.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.runner import ScenarioResult, run_scenario
from harness.scenario import discover, load
from harness.targetspec import TargetSpec, bundled_monitor
from harness.toxiproxy import running_toxiproxy
from tests.mutants.mutants import MUTANTS

CAUGHT_BY: dict[str, tuple[str, str]] = {
    "send_json_direct": ("stuck_reader", "no_error_logs"),
    "gather_no_timeout": ("stuck_reader", "delivery"),
    "no_eviction": ("stuck_reader", "eviction"),
    "swallow_cancel": ("graceful_shutdown", "no_error_logs"),
    "unbounded_queue": ("stuck_reader", "eviction"),
    "error_log_on_disconnect": ("mass_drop", "no_error_logs"),
    "drop_when_ingest_full": ("ingest_burst", "persistence"),
    "forget_offsets": ("server_restart", "persistence"),
    "racy_broadcast": ("ingest_burst", "delivery"),
    "heartbeat_off": ("network_cut", "eviction"),
    "resume_silent_gap": ("network_cut", "recovery"),
    "dashboard_no_reconnect": ("browser_network_cut", "browser"),
}


def mutant_target(name: str) -> TargetSpec:
    """The bundled monitor's target, started through the mutant launcher."""
    spec = bundled_monitor()
    command = list(spec.command)
    index = command.index("monitor")
    command[index - 1 : index + 1] = ["-m", "tests.mutants.launch", name]
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


def pairs(mutants: list[str], full: bool) -> list[tuple[str, str]]:
    if full:
        names = [p.stem for p in discover()]
        return [(m, s) for m in mutants for s in names]
    return [(m, CAUGHT_BY[m][0]) for m in mutants]


async def run_matrix(mutants: list[str], out: Path, seed: int, full: bool = False, progress: Any = print) -> list[Cell]:
    unknown = sorted(set(mutants) - set(MUTANTS))
    if unknown:
        raise ValueError(f"unknown mutant(s) {unknown}; known: {', '.join(MUTANTS)}")
    cells = []
    async with running_toxiproxy(out) as toxiproxy:
        for mutant, scenario_name in pairs(mutants, full):
            scenario = load(discover([scenario_name])[0])
            result = await run_scenario(scenario, mutant_target(mutant), toxiproxy,
                                        out / mutant / scenario_name, random.Random(seed).randrange(2**31))
            cells.append(cell(mutant, result))
            progress(f"{mutant:24} {scenario_name:20} {result.status:5} caught by {cells[-1].caught_by}")
    return cells


def caught_for_the_right_reason(c: Cell) -> bool:
    expected_scenario, expected_checker = CAUGHT_BY[c.mutant]
    return c.scenario != expected_scenario or expected_checker in c.caught_by


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
