"""One exploration: generated schedules run one after another against the target within a time budget,
each distinct failure confirmed and shrunk, and everything written under the exploration's directory:

    schedules/NNNN.yaml    every schedule tried
    runs/NNNN/             its run (history, result; the target's files only when it failed)
    failure-N/             original.yaml, minimal.yaml, shrink.log and the shrink's runs
    explore.json           the summary: what was tried, what failed, what was exercised

The budget is a hard limit: a run starts only when its planned time and the start-up and teardown
measured so far fit in what is left, and a run still going when the budget ends is cancelled (its
teardown still runs) and not counted.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import __version__
from harness.checkers import checker_name
from harness.errors import HarnessError
from harness.explore.coverage import Coverage
from harness.explore.generate import Options, generate, planned_seconds
from harness.explore.ranges import OPT_IN_CHECKS, STANDARD_CHECKS, fault_range
from harness.explore.shrink import OutOfBudget, Shrinker, Shrunk
from harness.explore.signature import Signature, signature
from harness.runner import ScenarioResult, run_scenario
from harness.scenario import parse
from harness.targetspec import TargetSpec
from harness.toxiproxy import Toxiproxy

SCHEMA = "wschaos.explore/1"
OVERHEAD_S = 5.0  # first guess of a run's start-up and teardown beyond its planned time
RECENT = 5  # the estimate is the largest overhead of this many last runs


def run_seed(base: int, name: str) -> int:
    """The seed a scenario named ``name`` gets from ``wschaos run --seed base``, so that a schedule
    written out runs again with the same seeded choices."""
    return (base ^ zlib.crc32(name.encode())) & 0x7FFFFFFF


@dataclass(frozen=True)
class Settings:
    target: TargetSpec
    out_dir: Path
    budget_s: float
    seed: int
    faults: tuple[str, ...]
    checks: frozenset[str] | None = None
    repeats: int = 3
    left_out: dict[str, str] = field(default_factory=dict)  # fault types not explored, and why
    target_arg: str | None = None  # the --target given, for the command lines written out
    until_shrunk: int | None = None  # end once this many distinct failures are shrunk (None: run out the budget)
    capacity: float | None = None  # the target's calibrated capacity: feed rates are shares of it
    load: bool = False  # Locust users in some schedules
    unjudged: dict[str, str] = field(default_factory=dict)  # checkers the target cannot be judged by, and why
    # failures an earlier exploration found (--known): counted, neither confirmed nor shrunk again
    known: dict[Signature, str] = field(default_factory=dict)  # signature -> where it was found


@dataclass
class Failure:
    number: int
    schedule: str  # the name of the schedule that showed it first
    shrunk: Shrunk
    hits: int = 1  # exploration runs that failed this way
    found_after_s: float = 0.0  # from the start of the exploration to the first run that failed this way
    shrink_s: float = 0.0
    original_run: str = ""  # the run that found it, relative to the exploration's directory
    minimal_run: str = ""  # the last run of the smallest schedule kept that failed this way

    @property
    def dir_name(self) -> str:
        return f"failure-{self.number}"


class Explorer:
    def __init__(self, settings: Settings, progress: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.settings = settings
        self.options = Options(settings.seed, settings.faults, settings.checks, frozenset(settings.target.params),
                               feed_nodes(settings.target), capacity=settings.capacity, load=settings.load,
                               unjudged=frozenset(settings.unjudged))  # fmt: skip
        self.progress = progress
        self.clock = clock
        self.started = clock()
        self.deadline = self.started + settings.budget_s
        self.coverage = Coverage()
        self.failures: dict[Signature, Failure] = {}
        self.tried = 0
        self.runs = {"explore": 0, "shrink": 0}
        self.overheads: list[float] = []
        self.stopped_by = "running"
        self.toxiproxy: Toxiproxy | None = None

    async def explore(self, toxiproxy: Toxiproxy) -> None:
        """Run schedules until the budget ends; a caller that cancels it still has what was found."""
        self.toxiproxy = toxiproxy
        index = 0
        try:
            while True:
                schedule = generate(self.options, index)
                if not self.may_run(schedule):
                    break
                await self.explore_one(schedule, index)
                index += 1
                if self.enough_shrunk():
                    self.stopped_by = "shrunk"
                    self.say(f"{self.shrunk_count()} failure(s) shrunk, as asked: {self.tried} schedules tried")
                    return
        except OutOfBudget:
            pass
        self.stopped_by = "budget"
        self.say(f"budget reached: {self.tried} schedules tried, {len(self.failures)} distinct failure(s)")

    def new_failures(self) -> list[Failure]:
        """The failures not already known from an earlier exploration."""
        return [f for f in self.failures.values() if f.shrunk.state != "known"]

    def shrunk_count(self) -> int:
        return sum(f.shrunk.state == "shrunk" for f in self.failures.values())

    def enough_shrunk(self) -> bool:
        wanted = self.settings.until_shrunk
        return wanted is not None and self.shrunk_count() >= wanted

    async def explore_one(self, schedule: dict[str, Any], index: int) -> None:
        write_yaml(self.settings.out_dir / "schedules" / f"{index:04d}.yaml", schedule)
        self.tried += 1
        self.say(f"{schedule['name']}: {describe_schedule(schedule)}")
        result = await self.run(schedule, self.settings.out_dir / "runs" / f"{index:04d}")
        self.runs["explore"] += 1
        self.coverage.add(schedule, result)
        found = signature(result)
        self.say(f"{schedule['name']}: {result.status.upper()} ({result.duration_s:.1f}s)"
                 + (f": {found}" if found else ""))  # fmt: skip
        if found is not None:
            await self.on_failure(schedule, found, f"runs/{index:04d}")
        self.write_summary()

    async def on_failure(self, schedule: dict[str, Any], found: Signature, run: str) -> None:
        if found in self.failures:
            failure = self.failures[found]
            failure.hits += 1
            self.say(f"the same failure as {failure.dir_name}, not shrunk again")
            return
        failure = Failure(len(self.failures) + 1, schedule["name"], Shrunk(found, self.settings.repeats),
                          found_after_s=round(self.clock() - self.started, 1), original_run=run)  # fmt: skip
        self.failures[found] = failure
        folder = self.settings.out_dir / failure.dir_name
        write_yaml(folder / "original.yaml", schedule)
        log = folder / "shrink.log"
        log.write_text(f"{failure.dir_name}: {schedule['name']} failed: {found}\n"
                       f"run it again: {self.command(folder / 'original.yaml')}\n", encoding="utf-8")  # fmt: skip
        if found in self.settings.known:
            failure.shrunk.state = "known"
            line = f"known: found before in {self.settings.known[found]}; neither confirmed nor shrunk again"
            with log.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
            self.say(f"{failure.dir_name}: {line}")
            return
        runs = iter(range(1, 10**6))
        last_failing = run  # the latest run that failed this way: a kept schedule's last run

        async def runner(candidate: dict[str, Any]) -> Signature | None:
            nonlocal last_failing
            self.runs["shrink"] += 1
            name = f"{failure.dir_name}/runs/{next(runs):03d}"
            got = signature(await self.run(candidate, self.settings.out_dir / name))
            last_failing = name if got == found else last_failing
            return got

        def on_line(line: str) -> None:
            with log.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
            self.say(f"{failure.dir_name}: {line}")

        def on_kept(smaller: dict[str, Any]) -> None:
            write_yaml(folder / "minimal.yaml", smaller)
            failure.minimal_run = last_failing

        shrinker = Shrinker(runner, self.settings.repeats, self.may_run, on_line, on_kept)
        began = self.clock()
        try:
            await shrinker.shrink(schedule, found, failure.shrunk)
        finally:
            failure.shrink_s = round(self.clock() - began, 1)
        if (folder / "minimal.yaml").exists():
            on_line(f"minimal: {describe_schedule(failure.shrunk.minimal or schedule)}; "
                    f"run it: {self.command(folder / 'minimal.yaml')}")  # fmt: skip

    async def run(self, schedule: dict[str, Any], run_dir: Path) -> ScenarioResult:
        """One run, cancelled if it is still going when the budget ends (then OutOfBudget)."""
        assert self.toxiproxy is not None
        scenario = parse(schedule, schedule["name"])
        began = self.clock()
        try:
            async with asyncio.timeout(max(0.0, self.deadline - began)):
                result = await run_scenario(scenario, self.settings.target, self.toxiproxy, run_dir,
                                            run_seed(self.settings.seed, scenario.name))  # fmt: skip
        except TimeoutError:
            raise OutOfBudget from None
        self.overheads.append(self.clock() - began - planned_seconds(schedule))
        if signature(result) is None:
            shutil.rmtree(run_dir / "target", ignore_errors=True)  # the database and feed files: kept for failures
        return result

    def may_run(self, schedule: dict[str, Any]) -> bool:
        overhead = max(self.overheads[-RECENT:], default=OVERHEAD_S)
        return self.clock() + planned_seconds(schedule) + max(overhead, 0.0) <= self.deadline

    def say(self, message: str) -> None:
        now = self.clock()
        elapsed, left = now - self.started, max(0.0, self.deadline - now)
        shrinking = sum(f.shrunk.state == "shrinking" for f in self.failures.values())
        self.progress(f"[{clock_text(elapsed)} elapsed, {clock_text(left)} left] {self.tried} tried, "
                      f"{len(self.failures)} failure(s){', shrinking' if shrinking else ''} | {message}")  # fmt: skip

    def command(self, path: Path) -> str:
        target = f" --target {self.settings.target_arg}" if self.settings.target_arg else ""
        return f"wschaos run {path} --seed {self.settings.seed}{target}"

    def checkers(self) -> list[str]:
        """The checkers the generator can use with these settings."""
        return [n for n in self._wanted_checkers() if n not in self.settings.unjudged]

    def checks_left_out(self) -> dict[str, str]:
        """The checkers these settings would use that the target cannot be judged by, and why."""
        return {n: self.settings.unjudged[n] for n in self._wanted_checkers() if n in self.settings.unjudged}

    def _wanted_checkers(self) -> list[str]:
        allowed = self.settings.checks
        names = [checker_name(n) for n, _ in STANDARD_CHECKS]
        names += [n for n in OPT_IN_CHECKS if n in (allowed or ())]
        for fault_type in self.settings.faults:
            ranges = fault_range(fault_type)
            names += [checker_name(n) for n, _ in ranges.checks] if ranges else []
        names += ["load"] if self.settings.load else []
        return [n for n in dict.fromkeys(names) if allowed is None or n in allowed]

    def summary(self) -> dict[str, Any]:
        s = self.settings
        return {
            "schema": SCHEMA,
            "harness_version": __version__,
            "target": s.target.name,
            "target_file": s.target_arg,
            "seed": s.seed,
            "budget_s": s.budget_s,
            "capacity": s.capacity,
            "load": s.load,
            "repeats": s.repeats,
            "wall_s": round(self.clock() - self.started, 1),
            "stopped_by": self.stopped_by,
            "faults": list(s.faults),
            "faults_left_out": s.left_out,
            "checks": sorted(s.checks) if s.checks is not None else None,
            "checks_left_out": self.checks_left_out(),
            "schedules_tried": self.tried,
            "runs": dict(self.runs),
            "failures": [self.failure_json(f) for f in self.failures.values()],
            "coverage": self.coverage.to_json(list(s.faults), self.checkers()),
        }

    def failure_json(self, failure: Failure) -> dict[str, Any]:
        folder = self.settings.out_dir / failure.dir_name
        original = yaml.safe_load((folder / "original.yaml").read_text(encoding="utf-8"))
        out = {"dir": failure.dir_name, "schedule": failure.schedule, "hits": failure.hits,
               "found_after_s": failure.found_after_s, "shrink_s": failure.shrink_s,
               "original_run": failure.original_run, "minimal_run": failure.minimal_run or None,
               **failure.shrunk.to_json(), "original": size(original)}  # fmt: skip
        if failure.shrunk.signature in self.settings.known:
            out["known_from"] = self.settings.known[failure.shrunk.signature]
        if (folder / "minimal.yaml").exists():
            out["minimal"] = size(yaml.safe_load((folder / "minimal.yaml").read_text(encoding="utf-8")))
        return out

    def write_summary(self) -> Path:
        path = self.settings.out_dir / "explore.json"
        path.write_text(json.dumps(self.summary(), indent=2), encoding="utf-8")
        return path


def known_failures(path: Path) -> dict[Signature, str]:
    """The signatures of the failures an earlier exploration found, from its ``explore.json`` (or its
    folder), each with where it was found."""
    file = path / "explore.json" if path.is_dir() else path
    try:
        summary = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise HarnessError(f"--known {path}: cannot read an exploration's explore.json: {exc}") from None
    if not isinstance(summary, dict) or summary.get("schema") != SCHEMA:
        raise HarnessError(f"--known {path}: not an exploration's summary (expected schema {SCHEMA!r})")
    try:
        return {Signature(**f["signature"]): f"{file}#{f['dir']}" for f in summary.get("failures") or []}
    except (TypeError, KeyError) as exc:
        raise HarnessError(f"--known {path}: a failure without a signature ({exc})") from None


def feed_nodes(target: TargetSpec) -> tuple[str, ...]:
    """The nodes the target's feed writes to (none without a feed)."""
    feed = target.feed
    if feed is None:
        return ()
    return tuple(feed.files) if feed.kind == "storagenode_log" else tuple(feed.nodes)


def size(schedule: dict[str, Any]) -> dict[str, Any]:
    faults = [step["fault"]["type"] for step in schedule["method"] if "fault" in step]
    return {"faults": faults, "clients": sum(c["clients"] for c in schedule["cohorts"]),
            "cohorts": len(schedule["cohorts"]), "steps": len(schedule["method"]),
            "planned_s": planned_seconds(schedule)}  # fmt: skip


def describe_schedule(schedule: dict[str, Any]) -> str:
    shape = size(schedule)
    faults = ", ".join(shape["faults"]) or "no fault"
    return f"{faults}; {shape['clients']} clients in {shape['cohorts']} cohort(s); planned {shape['planned_s']:g}s"


def write_yaml(path: Path, schedule: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(schedule, sort_keys=False), encoding="utf-8")


def clock_text(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"
