"""``mutants.html``: the mutant matrix of a ``wschaos mutants`` run, as a page of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reports.html_report import environment


def write_mutants_html(run_dir: Path, cells: list[Any], seed: int) -> Path:
    mutants = list(dict.fromkeys(c.mutant for c in cells))
    scenarios = sorted({c.scenario for c in cells})
    evidence = {}
    for c in cells:
        if c.caught_by and c.mutant not in evidence:
            evidence[c.mutant] = f"{c.scenario}: {c.evidence}"
    page = environment().get_template("mutants.html.j2").render(
        mutants=mutants, scenarios=scenarios, cells={(c.mutant, c.scenario): c for c in cells},
        evidence=evidence, seed=seed,
    )  # fmt: skip
    path = run_dir / "mutants.html"
    path.write_text(page, encoding="utf-8")
    return path
