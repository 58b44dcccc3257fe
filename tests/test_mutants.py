"""Every mutant of the monitor is caught by the scenario and checker expected to catch it (the fast
part of the mutant matrix; ``wschaos mutants --full`` runs every pair)."""

from __future__ import annotations

import pytest

from tests.mutants.matrix import CAUGHT_BY, run_matrix

pytestmark = [pytest.mark.integration, pytest.mark.mutants]


def with_its_group(mutant: str) -> object:
    """A mutant caught in a browser scenario takes its turn with the browser tests (one Chromium at a
    time under ``--dist loadgroup``)."""
    scenario, _ = CAUGHT_BY[mutant]
    return pytest.param(mutant, marks=pytest.mark.xdist_group("browser")) if scenario.startswith("browser_") else mutant


@pytest.mark.parametrize("mutant", [with_its_group(m) for m in sorted(CAUGHT_BY)])
async def test_mutant_is_caught_for_the_right_reason(mutant, tmp_path):
    scenario, checker = CAUGHT_BY[mutant]
    (cell,) = await run_matrix([mutant], tmp_path, seed=7, progress=lambda _: None)
    if cell.status == "skipped":
        pytest.skip(cell.evidence)
    assert cell.status == "fail", f"{mutant} survived {scenario}: {cell.evidence or cell.status}"
    assert checker in cell.caught_by, f"{mutant} was caught by {cell.caught_by}, expected {checker}"
