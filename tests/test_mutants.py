"""Every mutant of the monitor is caught by the scenario and checker expected to catch it (the fast
part of the mutant matrix; ``wschaos mutants --full`` runs every pair)."""

from __future__ import annotations

import pytest

from tests.mutants.matrix import CAUGHT_BY, run_matrix

pytestmark = [pytest.mark.integration, pytest.mark.mutants]


@pytest.mark.parametrize("mutant", sorted(CAUGHT_BY))
async def test_mutant_is_caught_for_the_right_reason(mutant, tmp_path):
    scenario, checker = CAUGHT_BY[mutant]
    (cell,) = await run_matrix([mutant], tmp_path, seed=7, progress=lambda _: None)
    if cell.status == "skipped":
        pytest.skip(cell.evidence)
    assert cell.status == "fail", f"{mutant} survived {scenario}: {cell.evidence or cell.status}"
    assert checker in cell.caught_by, f"{mutant} was caught by {cell.caught_by}, expected {checker}"
