"""One registry entry per mutant: the change (a function that patches the monitor at start-up, its
docstring says what it breaks) and the scenario and checker expected to catch it.

A mutant module (a module of this package whose name ends in ``mutants``) registers its mutants with
``@mutant(scenario, checker)``; ``modules()`` finds them, so the catalogue, the launcher and the tests
all see the same set, and a new module needs no other edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

PACKAGE = "tests.mutants"


@dataclass(frozen=True)
class Entry:
    name: str
    apply: Callable[[], None]
    scenario: str  # the scenario expected to catch it
    checker: str  # the checker of that scenario expected to fail


REGISTRY: dict[str, Entry] = {}


def mutant(scenario: str, checker: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Register the decorated function as a mutant caught by ``checker`` in ``scenario``."""

    def register(apply: Callable[[], None]) -> Callable[[], None]:
        name = apply.__name__
        if name in REGISTRY and REGISTRY[name].apply is not apply:
            raise RuntimeError(f"two mutants are named {name!r}")
        REGISTRY[name] = Entry(name, apply, scenario, checker)
        return apply

    return register


def entries() -> dict[str, Entry]:
    """Every registered mutant, after importing every mutant module."""
    for module in modules():
        importlib.import_module(module)
    return dict(REGISTRY)


def modules() -> list[str]:
    """The mutant modules of this package, in name order."""
    path = importlib.import_module(PACKAGE).__path__
    return sorted(f"{PACKAGE}.{m.name}" for m in pkgutil.iter_modules(path) if m.name.endswith("mutants"))
