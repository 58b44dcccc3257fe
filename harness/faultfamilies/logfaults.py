"""Faults on a log-tailing target's input files and its process while it ingests them.

``log_rotation`` rotates the feed's log files as logrotate does (rename and recreate, or
copytruncate), while the target runs or while it is stopped; ``server_down`` stops the target until
the feed has written a backlog of a given size; ``crash_loop`` kills it (-9) several times at
seeded random moments. Each acts on the target's files or process, so each needs a target the
harness runs: an external target gets the scenario skipped, and a target whose feed writes no files
a one-line error naming the fault.

A rotation runs in the event loop without awaiting, as the feed's writes do, and only when no line is
half-written (a feed that writes lines in pieces waits between them): no line is written between the
copy and the truncation nor split across two files, so whatever the target loses is its own doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import HarnessError
from harness.faultbase import Fault, FaultContext, FaultSpec
from harness.feeds.base import whole_lines
from harness.targetspec import TargetError

log = logging.getLogger(__name__)

MODES = ("rename", "copytruncate")
FILE_FEEDS = ("storagenode_log", "line")
POLL = 0.05
CHECK_POLL = 0.2


def feed_files(ctx: FaultContext, fault: str) -> dict[str, Path]:
    """The log files the target's feed writes, by node; HarnessError if it writes none."""
    feed = ctx.target.spec.feed
    kind = feed.kind if feed is not None else "none"
    if feed is None or not writes_files(ctx):
        raise HarnessError(f"fault {fault!r}: target {ctx.target.spec.name} has no log files to act on "
                           f"(its feed kind is {kind}; needs storagenode_log or line)")  # fmt: skip
    return dict(feed.paths(ctx.target.workdir))


def writes_files(ctx: FaultContext) -> bool:
    """Whether the target's feed writes log files (storagenode_log or line), the files these faults act on."""
    feed = ctx.target.spec.feed
    return feed is not None and feed.kind in FILE_FEEDS


def sizes(files: dict[str, Path]) -> dict[str, int]:
    return {node: path.stat().st_size if path.exists() else 0 for node, path in files.items()}


def rotated_name(path: Path) -> Path:
    """``node.log.N`` with the first N not yet taken, so no earlier rotation is overwritten."""
    n = 1
    while path.with_name(f"{path.name}.{n}").exists():
        n += 1
    return path.with_name(f"{path.name}.{n}")


def rotate(path: Path, mode: str) -> Path:
    """Rotate one file; returns where its content went. Synchronous on purpose (see the module)."""
    target = rotated_name(path)
    if mode == "rename":
        path.rename(target)
        path.touch()  # logrotate's `create`: the writer's next append goes to a new file
    else:
        shutil.copyfile(path, target)
        os.truncate(path, 0)
    return target


async def wait_grown(files: dict[str, Path], goal: dict[str, int], at_least: float, ceiling: float) -> dict[str, int]:
    """Wait ``at_least`` seconds and until every file is larger than its goal (at most ``ceiling``
    seconds); returns the sizes then."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        now_sizes = sizes(files)
        waited = loop.time() - started
        if waited >= at_least and all(now_sizes[n] > goal[n] for n in files):
            return now_sizes
        if waited >= ceiling:
            log.warning("files did not reach %s within %g s (sizes %s)", goal, ceiling, now_sizes)
            return now_sizes
        await asyncio.sleep(POLL)


class TargetFault(Fault):
    """A fault on the target as a whole: every cohort is disturbed."""

    needs_cohort = False
    needs_process = True  # the target's process or the files beside it: not an external target's

    def hits(self, ctx: FaultContext) -> set[str]:
        return set(ctx.cohorts)


class LogRotation(TargetFault):
    """Rotates every feed log file ``times`` times, ``interval`` seconds apart: ``rename`` moves it to
    ``NAME.N`` and creates an empty one; ``copytruncate`` copies it to ``NAME.N`` and truncates it in
    place (same inode). With ``down`` the target is stopped (SIGTERM) before each rotation and started
    after it, once each new file has grown longer than the old one was (``longer``; at most
    ``ceiling`` seconds), so a tailer that judges a file by its size alone cannot tell."""

    type = "log_rotation"
    defaults: ClassVar[dict[str, Any]] = {"mode": "rename", "times": 1, "interval": 1.0, "down": False,
                                          "longer": True, "ceiling": 10.0}  # fmt: skip

    @classmethod
    def problems(cls, spec: FaultSpec) -> list[tuple[str, str]]:
        problems = super().problems(spec)
        if spec.params.get("mode", "rename") not in MODES:
            problems.append(("params.mode", f"must be one of {', '.join(MODES)}, got {spec.params['mode']!r}"))
        if not isinstance(spec.params.get("times", 1), int) or spec.params.get("times", 1) < 1:
            problems.append(("params.times", "must be an integer of 1 or more"))
        return problems

    async def apply(self, ctx: FaultContext) -> None:
        files = feed_files(ctx, self.spec.name)
        for i in range(self.params["times"]):
            if i:
                await asyncio.sleep(self.params["interval"])
            if self.params["down"]:
                await ctx.target.stop()
            await whole_lines(list(files.values()))
            before = sizes(files)
            moved = {node: str(rotate(path, self.params["mode"])) for node, path in files.items()}
            ctx.history.record("log_rotation", fault=self.spec.name, mode=self.params["mode"], sizes=before,
                               moved_to=moved, down=self.params["down"])  # fmt: skip
            if self.params["down"]:
                goal = before if self.params["longer"] else dict.fromkeys(files, -1)
                await wait_grown(files, goal, 0.0, self.params["ceiling"])
                await ctx.target.start()

    def hits(self, ctx: FaultContext) -> set[str]:
        return set(ctx.cohorts) if self.params["down"] else set()


class ServerDown(TargetFault):
    """Stops the target (SIGTERM, or SIGKILL with ``kill``) while the feed goes on writing, and starts
    it again once ``down_s`` seconds have passed and every feed file has grown by ``backlog_kib`` KiB
    (at most ``ceiling`` seconds): the backlog the target must catch up on."""

    type = "server_down"
    defaults: ClassVar[dict[str, Any]] = {"down_s": 1.0, "backlog_kib": 0, "kill": False, "ceiling": 10.0}

    async def apply(self, ctx: FaultContext) -> None:
        files = self.backlog_files(ctx)
        if self.params["kill"]:
            await ctx.target.kill9()
        else:
            await ctx.target.stop()
        before = sizes(files)
        goal = {node: size + 1024 * self.params["backlog_kib"] - 1 for node, size in before.items()}
        after = await wait_grown(files, goal, self.params["down_s"], self.params["ceiling"])
        ctx.history.record("backlog", fault=self.spec.name, bytes={n: after[n] - before[n] for n in files})
        await ctx.target.start()

    def backlog_files(self, ctx: FaultContext) -> dict[str, Path]:
        """The log files whose growth is waited for; none (only ``down_s``, and a log line) when the
        target's feed writes no files: a backlog in bytes means nothing to a server fed over HTTP."""
        if not self.params["backlog_kib"]:
            return {}
        if not writes_files(ctx):
            feed = ctx.target.spec.feed
            kind = feed.kind if feed is not None else "none"
            log.info("%s: backlog_kib does not apply to a %s feed; down for %g s", self.spec.name, kind,
                     self.params["down_s"])  # fmt: skip
            return {}
        return feed_files(ctx, self.spec.name)


class CrashLoop(TargetFault):
    """kill -9 the target ``kills`` times, each after a seeded random ``min_gap``..``max_gap`` seconds
    of running, and start it again ``restart_after`` seconds after each kill.

    After each restart it checks, while the loop goes on, that every id fed before that kill is
    stored exactly once within ``check_within`` seconds, and records a ``crash_check`` (judged by the
    ``crash_persistence`` checker); a target without stored ids gets none."""

    type = "crash_loop"
    defaults: ClassVar[dict[str, Any]] = {"kills": 5, "min_gap": 0.3, "max_gap": 1.0, "restart_after": 0.2,
                                          "check_within": 3.0}  # fmt: skip

    def __init__(self, spec: FaultSpec) -> None:
        super().__init__(spec)
        self.checks: list[asyncio.Task[None]] = []

    @classmethod
    def problems(cls, spec: FaultSpec) -> list[tuple[str, str]]:
        problems = super().problems(spec)
        params = {**cls.defaults, **spec.params}
        if not problems and not 0 <= params["min_gap"] <= params["max_gap"]:
            problems.append(("params.min_gap", "must be 0 or more and at most max_gap"))
        return problems

    async def apply(self, ctx: FaultContext) -> None:
        for i in range(self.params["kills"]):
            running = ctx.rng.uniform(self.params["min_gap"], self.params["max_gap"])
            await asyncio.sleep(running)
            fed = [str(i) for f in ctx.history.of("feed") for i in f.get("ids") or []]
            ctx.history.record("crash", fault=self.spec.name, n=i + 1, after_s=round(running, 3))
            await ctx.target.kill9()
            await asyncio.sleep(self.params["restart_after"])
            await ctx.target.start()
            if ctx.target.spec.persistence is not None:
                self.checks.append(self.spawn(self._check(ctx, i + 1, fed), f"check-{i + 1}"))

    async def _check(self, ctx: FaultContext, n: int, fed: list[str]) -> None:
        """Wait until every id in ``fed`` is stored (at most ``check_within`` s); record what was not."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        stored: Counter[str] = Counter()
        missing = fed
        while missing and loop.time() - started < self.params["check_within"]:
            await asyncio.sleep(CHECK_POLL)
            with contextlib.suppress(TargetError):  # the database may not be there yet, or busy
                stored = Counter(ctx.target.stored_ids() or [])
            missing = [i for i in fed if not stored[i]]
        duplicated = [i for i in fed if stored[i] > 1]
        ctx.history.record("crash_check", fault=self.spec.name, n=n, fed=len(fed), missing=len(missing),
                           duplicated=len(duplicated), first_missing=missing[:5], first_duplicated=duplicated[:5],
                           waited_s=round(loop.time() - started, 3))  # fmt: skip

    async def undo(self, ctx: FaultContext) -> None:
        """Let the last checks finish (each is bounded by ``check_within``)."""
        if self.checks:
            await asyncio.wait(self.checks)
