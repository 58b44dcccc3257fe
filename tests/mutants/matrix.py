"""The mutant matrix over this project's catalogue, for the tests: ``wschaos mutants`` without the
command line (``CAUGHT_BY`` names, for each mutant, the scenario and checker expected to catch it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.targetspec import TargetSpec
from tests.mutants.catalogue import CAUGHT_BY, catalogue
from wschaos import mutants
from wschaos.mutants import Catalogue, Cell

__all__ = ["CATALOGUE", "CAUGHT_BY", "Cell", "mutant_target", "run_matrix"]

CATALOGUE = Catalogue.from_json(catalogue(), "tests.mutants.catalogue")


def mutant_target(name: str) -> TargetSpec:
    return mutants.mutant_target(CATALOGUE, name)


async def run_matrix(
    names: list[str], out: Path, seed: int, full: bool = False, progress: Callable[[str], Any] = print
) -> list[Cell]:
    return await mutants.run_matrix(CATALOGUE, names, out, seed, full=full, progress=progress)
