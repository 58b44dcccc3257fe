"""What load to run: a Locust run's users, spawn rate, time and mix of behaviours, within bounds.

Only the description and its checks live here, so reading a scenario never imports the code that runs
Locust (``harness/load.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.errors import HarnessError

MAX_USERS = 5000
MAX_SPAWN_RATE = 1000.0
MAX_TIME_S = 3600.0
MAX_PROCESSES = 16
BEHAVIOURS = ("steady", "switcher", "reconnector", "churner")
DEFAULT_MIX: Mapping[str, float] = {"steady": 6, "switcher": 2, "reconnector": 1, "churner": 1}


class LoadError(HarnessError):
    """Load that cannot be run as asked, or a Locust process that did not do what was asked."""


@dataclass(frozen=True)
class LoadSpec:
    """How many users, how fast they arrive, for how long, and which behaviours."""

    users: int
    spawn_rate: float
    time_s: float
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    processes: int = 1
    reconnect_every: float = 5.0

    def __post_init__(self) -> None:
        problems = bound_problems(self.users, self.spawn_rate, self.time_s, self.processes)
        unknown = sorted(set(self.mix) - set(BEHAVIOURS))
        if unknown:
            problems.append(f"unknown behaviour(s) {unknown} in the mix; known: {', '.join(BEHAVIOURS)}")
        if not any(w > 0 for w in self.mix.values()) or any(w < 0 for w in self.mix.values()):
            problems.append("the mix needs weights of 0 or more, at least one above 0")
        if not 0.1 <= self.reconnect_every <= 3600:
            problems.append(f"reconnect_every must be 0.1 to 3600 s; got {self.reconnect_every}")
        if problems:
            raise LoadError("load: " + "; ".join(problems))

    def mix_text(self) -> str:
        return ",".join(f"{name}={self.mix.get(name, 0):g}" for name in BEHAVIOURS)


def parse_mix(text: str) -> dict[str, float]:
    """``steady=6,switcher=2`` as weights (behaviours left out get 0)."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, weight = part.partition("=")
        try:
            mix[name.strip()] = float(weight)
        except ValueError:
            sep = ""
        if not sep:
            raise LoadError(f"mix: {part!r} is not NAME=WEIGHT (names: {', '.join(BEHAVIOURS)})")
    return mix


def bound_problems(users: int, spawn_rate: float, time_s: float, processes: int = 1) -> list[str]:
    problems = []
    if not 0 <= users <= MAX_USERS:
        problems.append(f"users must be 0 to {MAX_USERS}; got {users}")
    if not 0 < spawn_rate <= MAX_SPAWN_RATE:
        problems.append(f"spawn rate must be above 0 and at most {MAX_SPAWN_RATE:g} a second; got {spawn_rate}")
    if not 1 <= time_s <= MAX_TIME_S:
        problems.append(f"time must be 1 to {MAX_TIME_S:g} s; got {time_s}")
    if not 1 <= processes <= MAX_PROCESSES:
        problems.append(f"processes must be 1 to {MAX_PROCESSES}; got {processes}")
    return problems
