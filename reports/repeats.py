"""A suite run with ``--repeat N``: each scenario ran N times (the k-th run, k >= 2, is named
``NAME#k``), each with its own seed. Per scenario: the pass rate with its 95% Wilson interval, and
whether it is flaky (it both held and broke), with the seeds of the runs that broke, to replay them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

BROKEN = ("fail", "error")
Z95 = 1.959964


def wilson(passed: int, runs: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a pass rate (good for small counts and rates near 0 or 1)."""
    if runs == 0:
        return 0.0, 1.0
    p = passed / runs
    centre = (p + z * z / (2 * runs)) / (1 + z * z / runs)
    half = z * math.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs)) / (1 + z * z / runs)
    return max(0.0, centre - half), min(1.0, centre + half)


def base_name(name: str) -> str:
    return name.split("#", 1)[0]


def repeat_name(name: str, k: int) -> str:
    """The name (and folder) of the k-th run of a scenario, counting from 1."""
    return name if k == 1 else f"{name}#{k}"


@dataclass
class RepeatStats:
    name: str
    passed: int = 0
    judged: int = 0  # runs that held or broke; unknown and skipped runs are not counted
    failing_seeds: list[int] = field(default_factory=list)

    @property
    def flaky(self) -> bool:
        return 0 < self.passed < self.judged

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.passed, self.judged)

    def to_json(self) -> dict[str, Any]:
        low, high = self.interval
        return {"name": self.name, "passed": self.passed, "judged": self.judged, "flaky": self.flaky,
                "pass_rate_95": [round(low, 4), round(high, 4)], "failing_seeds": self.failing_seeds}  # fmt: skip

    def line(self) -> str:
        low, high = self.interval
        text = f"{self.name}: held {self.passed} of {self.judged} (95% interval {low:.0%} to {high:.0%})"
        if self.flaky:
            text = f"FLAKY {text}, broke with seeds {', '.join(map(str, self.failing_seeds))}"
        return text


def repeat_stats(scenarios: list[dict[str, Any]]) -> list[RepeatStats]:
    """Per scenario (its repeats folded in), from results or report entries (``name``, ``status``, ``seed``)."""
    stats: dict[str, RepeatStats] = {}
    for s in scenarios:
        entry = stats.setdefault(base_name(str(s["name"])), RepeatStats(base_name(str(s["name"]))))
        if s["status"] == "pass":
            entry.passed += 1
            entry.judged += 1
        elif s["status"] in BROKEN:
            entry.judged += 1
            entry.failing_seeds.append(int(s["seed"]))
    return list(stats.values())


def repeated(scenarios: list[dict[str, Any]]) -> bool:
    return any("#" in str(s["name"]) for s in scenarios)
