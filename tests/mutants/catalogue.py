"""The mutant catalogue: every mutant, what it breaks, and the scenario and checker expected to catch
it. ``python -m tests.mutants`` prints it as JSON for ``wschaos mutants``."""

from __future__ import annotations

import inspect
from typing import Any

from tests.mutants.registry import entries

LAUNCHER = "tests.mutants.launch"

ENTRIES = entries()
MUTANTS = {name: entry.apply for name, entry in ENTRIES.items()}
CAUGHT_BY: dict[str, tuple[str, str]] = {name: (e.scenario, e.checker) for name, e in ENTRIES.items()}


def catalogue() -> dict[str, Any]:
    """The catalogue in the form ``wschaos mutants`` reads."""
    return {
        "launcher": LAUNCHER,
        "mutants": [
            {"name": name, "breaks": breaks(name), "scenario": CAUGHT_BY[name][0], "checker": CAUGHT_BY[name][1]}
            for name in MUTANTS
        ],
    }


def breaks(name: str) -> str:
    """The first paragraph of the mutant's docstring, on one line."""
    doc = inspect.getdoc(MUTANTS[name]) or ""
    return " ".join(doc.split("\n\n")[0].split())
