"""The mutant matrix over this project's catalogue, for the tests: ``wschaos mutants`` without the
command line (``CAUGHT_BY`` names, for each mutant, the scenario and checker expected to catch it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from harness.targetspec import TARGETS_DIR, TargetSpec
from tests.mutants.catalogue import CAUGHT_BY, catalogue
from wschaos import mutants
from wschaos.mutants import Catalogue, Cell

__all__ = ["CATALOGUE", "CAUGHT_BY", "Cell", "mutant_target", "mutant_target_file", "run_matrix"]

CATALOGUE = Catalogue.from_json(catalogue(), "tests.mutants.catalogue")


def mutant_target(name: str) -> TargetSpec:
    return mutants.mutant_target(CATALOGUE, name)


def mutant_target_file(name: str, folder: Path) -> Path:
    """A target file for the mutant (the monitor's, started through the launcher), for commands that
    take ``--target FILE``."""
    raw = yaml.safe_load((TARGETS_DIR / "monitor.yaml").read_text(encoding="utf-8"))
    raw["name"], raw["command"] = f"monitor-{name}", mutant_target(name).command
    path = folder / f"monitor-{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


async def run_matrix(
    names: list[str], out: Path, seed: int, full: bool = False, progress: Callable[[str], Any] = print
) -> list[Cell]:
    return await mutants.run_matrix(CATALOGUE, names, out, seed, full=full, progress=progress)
