"""Shrinking a failing schedule by delta debugging: try the smaller schedules of ``harness.explore.reduce``
one by one and keep each that still fails with the same signature in ``k`` of ``k`` runs, until no
pass finds a smaller one (or the budget ends).

The schedule is first confirmed: its discovery run and ``k - 1`` more. If it fails the same way in
fewer than ``k`` of ``k``, it is flaky: its rate is reported and it is not shrunk, since a candidate
that fails less often could not be told from one that does not fail. The runner is a callable
(schedule -> signature, None when the run did not fail), so the shrinker is tested with a fake one.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError
from harness.explore.reduce import PASSES, Schedule
from harness.explore.signature import Signature
from harness.scenario import parse

Runner = Callable[[Schedule], Awaitable[Signature | None]]
MayRun = Callable[[Schedule], bool]  # whether a run of this schedule can start within the budget


class OutOfBudget(Exception):
    """The next run would not end within the budget."""


@dataclass
class Shrunk:
    signature: Signature
    repeats: int
    # unconfirmed (the budget ended first), flaky, shrinking, shrunk, stopped (by the budget, while
    # shrinking), known (found by an earlier exploration: neither confirmed nor shrunk again)
    state: str = "unconfirmed"
    original_hits: int = 0  # runs of the original that failed with the signature
    original_runs: int = 0
    minimal: Schedule | None = None
    steps: int = 0  # candidates tried
    kept: int = 0
    runs: int = 0
    log: list[str] = field(default_factory=list)

    @property
    def rate(self) -> str:
        return f"{self.original_hits} of {self.original_runs}"

    def to_json(self) -> dict[str, Any]:
        return {"signature": self.signature.to_json(), "state": self.state, "repeats": self.repeats,
                "original_failed": self.rate, "steps": self.steps, "kept": self.kept, "runs": self.runs}  # fmt: skip


@dataclass
class Shrinker:
    runner: Runner
    repeats: int = 3
    may_run: MayRun = lambda schedule: True
    on_line: Callable[[str], None] = lambda line: None  # each line of the log, as it is written
    # the confirmed original, then each smaller schedule kept
    on_kept: Callable[[Schedule], None] = lambda schedule: None
    tried: dict[str, bool] = field(default_factory=dict)

    async def shrink(self, original: Schedule, signature: Signature, result: Shrunk | None = None) -> Shrunk:
        """Confirm ``original`` (which failed once with ``signature``) and shrink it. ``result`` is filled in
        as it goes, so a caller that is interrupted still has what was found."""
        out = result or Shrunk(signature, self.repeats)
        out.state = "unconfirmed"
        try:
            await self._confirm(original, out)
            if out.original_hits < self.repeats:
                out.state = "flaky"
                self._say(out, f"flaky: failed with the signature in {out.rate} runs; not shrunk")
                return out
            out.state, out.minimal = "shrinking", original
            self.on_kept(original)
            await self._reduce(out)
            out.state = "shrunk"
            self._say(out, f"done: no smaller schedule fails the same way ({out.kept} of {out.steps} steps kept)")
        except OutOfBudget:
            out.state = "stopped" if out.state == "shrinking" else out.state
            self._say(out, f"stopped: the budget ends before the next run ({out.kept} of {out.steps} steps kept)")
        return out

    async def _confirm(self, original: Schedule, out: Shrunk) -> None:
        out.original_hits, out.original_runs = 1, 1
        self._say(out, f"original fails: {out.signature} (run 1 of {self.repeats})")
        for i in range(2, self.repeats + 1):
            got = await self._run(original, out)
            out.original_runs += 1
            out.original_hits += got == out.signature
            self._say(out, f"original run {i} of {self.repeats}: {describe(got, out.signature)}")

    async def _reduce(self, out: Shrunk) -> None:
        assert out.minimal is not None
        changed = True
        while changed:
            changed = False
            for make in PASSES:
                while await self._one_step(make, out):
                    changed = True

    async def _one_step(self, make: Callable[..., list[tuple[str, Schedule]]], out: Shrunk) -> bool:
        """Try the pass's candidates on the current schedule; True once one is kept."""
        assert out.minimal is not None
        for what, candidate in make(out.minimal, out.signature.checker):
            key = json.dumps(candidate, sort_keys=True)
            if key in self.tried:
                continue
            problem = invalid(candidate)
            out.steps += 1
            if problem:
                self.tried[key] = False
                self._say(out, f"step {out.steps}: {what}: not tried: {problem}")
                continue
            kept, why = await self._holds(candidate, out)
            self.tried[key] = kept
            self._say(out, f"step {out.steps}: {what}: {'kept' if kept else 'not kept'} ({why})")
            if kept:
                out.kept += 1
                out.minimal = candidate
                self.on_kept(candidate)
                return True
        return False

    async def _holds(self, candidate: Schedule, out: Shrunk) -> tuple[bool, str]:
        for i in range(1, self.repeats + 1):
            got = await self._run(candidate, out)
            if got != out.signature:
                return False, f"run {i} of {self.repeats}: {describe(got, out.signature)}"
        return True, f"failed the same way in {self.repeats} of {self.repeats} runs"

    async def _run(self, schedule: Schedule, out: Shrunk) -> Signature | None:
        if not self.may_run(schedule):
            raise OutOfBudget
        out.runs += 1
        return await self.runner(schedule)

    def _say(self, out: Shrunk, line: str) -> None:
        out.log.append(line)
        self.on_line(line)


def describe(got: Signature | None, wanted: Signature) -> str:
    if got is None:
        return "did not fail"
    if got == wanted:
        return "failed the same way"
    return f"failed otherwise: {got}"


def invalid(schedule: Schedule) -> str | None:
    """Why ``schedule`` is not a valid scenario, or None."""
    try:
        parse(schedule, "candidate")
    except HarnessError as exc:
        return exc.message.replace("\n", "; ")
    return None
