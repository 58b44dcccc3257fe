"""Regression gates: which figures of a new run moved past a bound from a base run's, for CI.

A gate expression is a comma-separated list of rules:

- ``FIGURE>+N``: the figure rose by more than N (its own unit: ms, s, a count);
- ``FIGURE>+N%``: the figure rose by more than N percent of its base value (a base of 0 counts any rise);
- ``status``: a scenario's status or a checker's verdict got worse (pass to unknown, fail or error...).

FIGURE is one of the compared figures (``reports.compare.FIGURES``), or a short name: ``p50_ms``,
``p99_ms``, ``e2e_p99_ms``, ``eviction_s`` (every eviction checker's ``evicted_after_s``). Every figure
is better lower, so only a rise is a regression; a figure missing from either run is not judged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from reports.compare import FIGURES, Comparison, compare_runs

ALIASES = {"p50_ms": "latency_p50_ms", "p99_ms": "latency_p99_ms", "eviction_s": "evicted_after_s"}
KNOWN = sorted({name for name, _ in FIGURES} | set(ALIASES) | {"evicted_after_s"})
RULE = re.compile(r"^(?P<figure>[a-z0-9_]+)\s*>\s*\+\s*(?P<bound>\d+(?:\.\d+)?)\s*(?P<percent>%?)$")


class GateError(HarnessError):
    """A ``--fail-on`` expression that cannot be read."""


@dataclass(frozen=True)
class Rule:
    text: str
    figure: str  # the figure's name in the comparison; "status" for verdicts
    bound: float = 0.0
    percent: bool = False

    def matches(self, figure: str) -> bool:
        return figure == self.figure or figure.endswith(f" {self.figure}")

    def exceeded(self, before: float, after: float) -> bool:
        rise = after - before
        if self.percent:
            return rise > 0 if before == 0 else 100.0 * rise / abs(before) > self.bound
        return rise > self.bound


@dataclass(frozen=True)
class Regression:
    scenario: str
    what: str  # the figure or checker that moved
    before: str
    after: str
    rule: str

    def line(self) -> str:
        return f"REGRESSION {self.scenario} {self.what}: {self.before} -> {self.after} (--fail-on {self.rule})"


def parse_gates(expression: str) -> list[Rule]:
    """The rules of a ``--fail-on`` expression; a bad term is a one-line GateError naming it."""
    rules = []
    for term in (t.strip() for t in expression.split(",")):
        if term == "status":
            rules.append(Rule(term, "status"))
            continue
        match = RULE.match(term)
        if match is None:
            raise GateError(
                f"--fail-on {term!r}: expected FIGURE>+N, FIGURE>+N% or status (figures: {', '.join(KNOWN)})"
            )
        figure = match["figure"]
        if figure not in KNOWN:
            raise GateError(f"--fail-on {term!r}: no figure {figure!r} (figures: {', '.join(KNOWN)})")
        rules.append(Rule(term, ALIASES.get(figure, figure), float(match["bound"]), bool(match["percent"])))
    return rules


def baseline_rules(baseline: Path | None, fail_on: str | None) -> list[Rule]:
    """The rules of ``--baseline DIR --fail-on RULES`` (default: status), the baseline checked first."""
    if baseline is None:
        if fail_on is not None:
            raise GateError("--fail-on needs --baseline DIR (the run to compare with)")
        return []
    if not (baseline / "summary.json").is_file() and not (baseline / "report.json").is_file():
        raise GateError(f"--baseline {baseline}: not a run folder (no summary.json or report.json in it)")
    return parse_gates(fail_on or "status")


def regressions(comparison: Comparison, rules: list[Rule]) -> list[Regression]:
    """Every figure and verdict of the new run (B) that moved past a rule from the base run (A)."""
    found = []
    for rule in rules:
        if rule.figure == "status":
            found += [Regression(v.scenario, v.checker, str(v.before), str(v.after), rule.text)
                      for v in comparison.verdicts if v.direction == "worse"]  # fmt: skip
            continue
        for f in comparison.figures:
            if f.before is not None and f.after is not None and rule.matches(f.figure):
                if rule.exceeded(f.before, f.after):
                    found.append(Regression(f.scenario, f.figure, f"{f.before:g}", f"{f.after:g}", rule.text))
    return found


def gate(base: Path, new: Path, rules: list[Rule]) -> tuple[list[str], bool]:
    """The lines to print for the new run gated against the base run, and whether it regressed."""
    found = sorted(regressions(compare_runs(base, new), rules), key=lambda r: r.scenario)  # per scenario
    if not found:
        return [f"No regression from {Path(base).name} (--fail-on {','.join(r.text for r in rules)})"], False
    return [r.line() for r in found] + [f"{len(found)} regression(s) from {Path(base).name}"], True
