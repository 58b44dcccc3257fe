"""What an exploration exercised: how many schedules used each fault type, how many verdicts each
checker gave, and each checker's outcomes (pass, fail, error, unknown with its reason)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from harness.checkers import checker_name
from harness.runner import ScenarioResult


@dataclass
class Coverage:
    faults: Counter[str] = field(default_factory=Counter)  # schedules that used the fault type
    fault_uses: Counter[str] = field(default_factory=Counter)  # faults of that type, over all schedules
    checkers: Counter[str] = field(default_factory=Counter)  # verdicts given
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)  # checker: outcome: verdicts
    statuses: Counter[str] = field(default_factory=Counter)  # scenario statuses
    loaded: int = 0  # schedules with Locust users

    def add(self, schedule: dict[str, Any], result: ScenarioResult) -> None:
        types = [step["fault"]["type"] for step in schedule["method"] if "fault" in step]
        self.fault_uses.update(types)
        self.faults.update(set(types))
        self.statuses[result.status] += 1
        self.loaded += "load" in schedule
        for verdict in result.verdicts:
            name = checker_name(verdict.checker)
            self.checkers[name] += 1
            outcome = verdict.status + (f": {verdict.unknown_reason}" if verdict.unknown_reason else "")
            self.outcomes.setdefault(name, Counter())[outcome] += 1

    def to_json(self, faults: list[str], checkers: list[str]) -> dict[str, Any]:
        """The counts, with a zero for each fault type and checker that could have been and was not."""
        return {
            "statuses": dict(sorted(self.statuses.items())),
            "schedules_with_load": self.loaded,
            "faults": {f: {"schedules": self.faults[f], "uses": self.fault_uses[f]} for f in sorted(faults)},
            "checkers": {c: self.checkers[c] for c in checkers},
            "outcomes": {c: dict(sorted(self.outcomes.get(c, Counter()).items())) for c in checkers},
            "faults_never_used": [f for f in sorted(faults) if not self.faults[f]],
            "checkers_never_run": [c for c in checkers if not self.checkers[c]],
        }
