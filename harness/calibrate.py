"""Measure a target's capacity: the highest feed rate it delivers in full, without faults, to a crowd of
probe clients, with the end-to-end delivery p99 under a bound.

A bounded search: the rate doubles from ``START_RATE`` until a step fails, then the interval between the
highest rate that held and the lowest that failed is halved until it is narrower than ``TOLERANCE`` of
the latter, or the time budget is spent. Every step is a short real run of the scenario runner (the
target behind Toxiproxy, the probe clients, the feed), judged by the ``delivery`` checker; its run
directory keeps the evidence. A step whose verdict is unknown (the harness itself was saturated) did not
hold: only what was measured fairly counts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.capacity import Capacity, target_digest
from harness.runner import ScenarioResult, run_scenario
from harness.scenario import CohortSpec, Scenario, Step
from harness.targetspec import TargetSpec
from harness.toxiproxy import Toxiproxy

START_RATE = 100.0
GROWTH = 2.0
MAX_RATE = 20000.0  # the most a scenario's feed.rate may be
MIN_RATE = 1.0
TOLERANCE = 0.05
DEFAULT_P99_MS = 250.0
DEFAULT_STEP_S = 3.0
DEFAULT_BUDGET_S = 180.0
COHORT = "crowd"


@dataclass
class CalibrationStep:
    rate: float
    held: bool
    summary: str
    duration_s: float
    run_dir: str
    figures: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # the step could not run: that says nothing about the target's capacity

    def to_json(self) -> dict[str, Any]:
        return {"rate": self.rate, "held": self.held, "summary": self.summary, "duration_s": round(self.duration_s, 2),
                "run_dir": self.run_dir, "error": self.error, **self.figures}  # fmt: skip


@dataclass
class Search:
    """The state of the search: the highest rate that held and the lowest that did not."""

    held: float = 0.0
    failed: float | None = None

    def add(self, rate: float, held: bool) -> None:
        if held:
            self.held = max(self.held, rate)
        else:
            self.failed = rate if self.failed is None else min(self.failed, rate)

    def next_rate(self) -> float | None:
        """The next rate to try, or None when the search is done."""
        if self.failed is None:
            if self.held >= MAX_RATE:
                return None
            return min(MAX_RATE, self.held * GROWTH if self.held else START_RATE)
        if self.failed <= MIN_RATE or self.failed - self.held <= TOLERANCE * self.failed:
            return None
        middle = (self.held + self.failed) / 2
        return float(round(middle)) if middle >= 10 else round(middle, 1)


def default_clients(scenarios: Iterable[Scenario]) -> int:
    """The largest number of probe clients a core scenario starts with."""
    counts = [sum(c.clients for c in s.cohorts if c.kind == "probe") for s in scenarios if s.core]
    return max(counts, default=1) or 1


def step_scenario(rate: float, clients: int, p99_ms: float, step_s: float) -> Scenario:
    """No fault: ``clients`` probe clients, the feed at ``rate`` for ``step_s`` seconds, the delivery checker."""
    return Scenario(
        name="calibrate",
        path=None,
        description=f"calibration step at {rate:g} events a second",
        cohorts=[CohortSpec(COHORT, clients)],
        steps=[Step("wait", step_s)],
        checks={"delivery": {"cohorts": [COHORT], "e2e_p99_ms": p99_ms}},
        feed_rate=rate,
        steady_state=0.0,
        timeout=step_s + 90.0,
        core=False,
    )


async def measure(
    target: TargetSpec, toxiproxy: Toxiproxy, run_dir: Path, index: int, rate: float, clients: int, p99_ms: float,
    step_s: float,
) -> CalibrationStep:  # fmt: skip
    scenario = step_scenario(rate, clients, p99_ms, step_s)
    started = time.monotonic()
    result = await run_scenario(scenario, target, toxiproxy, run_dir / f"step-{index:02d}-{rate:g}", seed=index)
    return CalibrationStep(rate, result.status == "pass", _step_summary(result), time.monotonic() - started,
                           str(result.run_dir), _step_figures(result), result.error)  # fmt: skip


def _step_summary(result: ScenarioResult) -> str:
    if result.error:
        return f"error: {result.error}"
    verdict = next((v for v in result.verdicts if v.checker == "delivery"), None)
    if verdict is None:
        return "no delivery verdict"
    why = f" ({verdict.unknown_reason})" if verdict.unknown_reason else ""
    return f"{verdict.status}{why}: {verdict.summary}"


def _step_figures(result: ScenarioResult) -> dict[str, Any]:
    verdict = next((v for v in result.verdicts if v.checker == "delivery"), None)
    figures = verdict.figures if verdict is not None else {}
    return {k: figures[k] for k in ("events_fed", "missing_ids", "e2e_p50_ms", "e2e_p99_ms") if k in figures}


@dataclass
class Calibration:
    capacity: Capacity
    steps: list[CalibrationStep]
    budget_spent: bool  # the search stopped on its time budget, not because it had narrowed enough

    @property
    def error(self) -> str | None:
        return next((s.error for s in self.steps if s.error), None)

    @property
    def held(self) -> bool:
        return self.capacity.rate > 0 and self.error is None


async def calibrate(
    target: TargetSpec,
    toxiproxy: Toxiproxy,
    run_dir: Path,
    *,
    clients: int,
    p99_ms: float = DEFAULT_P99_MS,
    budget_s: float = DEFAULT_BUDGET_S,
    step_s: float = DEFAULT_STEP_S,
    progress: Callable[[CalibrationStep], None] = lambda _: None,
) -> Calibration:
    """Search for the target's capacity; at least one step runs, and none starts that would end past the budget
    (as long as the slowest step so far)."""
    search, steps = Search(), []
    started = time.monotonic()
    while (rate := search.next_rate()) is not None:
        slowest = max((s.duration_s for s in steps), default=0.0)
        if steps and time.monotonic() - started + slowest > budget_s:
            break
        step = await measure(target, toxiproxy, run_dir, len(steps) + 1, rate, clients, p99_ms, step_s)
        steps.append(step)
        search.add(rate, step.held)
        progress(step)
        if step.error:
            break
    capacity = Capacity(
        target=target.name,
        target_file=str(target.path) if target.path is not None else None,
        target_sha256=target_digest(target),
        rate=search.held,
        clients=clients,
        p99_ms=p99_ms,
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        cpu_count=os.cpu_count() or 1,
        failed_rate=search.failed,
        steps=[s.to_json() for s in steps],
    )
    return Calibration(capacity, steps, budget_spent=search.next_rate() is not None)


def summary_lines(calibration: Calibration) -> list[str]:
    c = calibration.capacity
    if calibration.error:
        return [f"calibration stopped: the step at {calibration.steps[-1].rate:g}/s could not run "
                f"({calibration.error}): no capacity stored"]  # fmt: skip
    if not calibration.held:
        return [f"{c.target} did not deliver every event to {c.clients} clients with e2e p99 under {c.p99_ms:g} ms "
                f"at any rate tried (down to {c.failed_rate:g}/s): no capacity stored"]  # fmt: skip
    bound = "" if c.failed_rate is None else f"; {c.failed_rate:g}/s did not"
    lines = [f"capacity of {c.target}: {c.rate:g} events/s held for {c.clients} clients with e2e p99 under "
             f"{c.p99_ms:g} ms{bound} ({len(calibration.steps)} steps, {c.cpu_count} cores)"]  # fmt: skip
    if c.failed_rate is None:
        stop = "the feed's most was reached" if c.rate >= MAX_RATE else "the budget ran out"
        lines.append(f"  {stop} before any rate failed: the target may deliver more")
    elif calibration.budget_spent:
        lines.append(f"  the budget ran out before the search narrowed: the capacity lies below {c.failed_rate:g}/s")
    lines.append(f'  a scenario\'s feed rate "50%" is {c.rate / 2:g} events/s against this target')
    return lines
