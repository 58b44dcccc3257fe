"""External targets: a server already running, given by ``url:`` in the target file.

The harness attaches to it instead of starting it (Toxiproxy still goes in front of it, and its
address must be on the loopback), samples its metrics endpoint if it has one, and never touches
its process. What needs the process cannot be judged: a scenario with a process fault is skipped,
and the checks that read the process's logs, stop it, count its sockets or read a database the
harness cannot reach are ``unknown``, ``not_applicable``, with the reason "the target is external".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from harness.checkers import NOT_APPLICABLE, CheckContext, Verdict, checker_name
from harness.faults import FAULTS
from harness.history import History
from harness.scenario import Scenario
from harness.target import HEALTH_TIMEOUT, READY_POLL, Target
from harness.targetspec import TargetError, TargetSpec, loopback_host

log = logging.getLogger(__name__)

EXTERNAL = "the target is external"


def make_target(spec: TargetSpec, workdir: Path, history: History, params: Mapping[str, Any] | None = None) -> Target:
    """A Target that starts the server, or an ExternalTarget that attaches to it."""
    if spec.external:
        return ExternalTarget(spec, workdir, history, params)
    return Target(spec, workdir, history, params)


class ExternalTarget(Target):
    """A running server the harness attaches to and never starts, stops, pauses or kills."""

    def __init__(
        self, spec: TargetSpec, workdir: Path, history: History, params: Mapping[str, Any] | None = None
    ) -> None:
        assert spec.url is not None
        super().__init__(spec, workdir, history, params)
        self.host, self.port = loopback_host(spec.url)
        self._attached = False

    @property
    def running(self) -> bool:
        return self._attached

    @property
    def paused(self) -> bool:
        return False

    @property
    def counts_sockets(self) -> bool:
        return False  # not our process

    def command(self) -> list[str]:
        return []

    async def _start(self) -> None:
        if self._attached:
            raise TargetError(f"target {self.spec.name} is already attached ({self.spec.url})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.spec.ready.timeout
        while not await self._probe(HEALTH_TIMEOUT):
            if loop.time() > deadline:
                raise TargetError(
                    f"target {self.spec.name} at {self.spec.url} did not answer within {self.spec.ready.timeout:g} s",
                    hint="an external target (url:) must already be running; the harness does not start it",
                )
            await asyncio.sleep(READY_POLL)
        self._attached = True
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        self._tasks = [asyncio.create_task(self._sample_loop(), name=f"target-metrics-{self.spec.name}")]
        self.history.record("target", event="ready", pid=None, code=None, port=self.port, url=self.spec.url)

    async def _stop(self, timeout: float) -> None:
        if not self._attached:
            return
        self._attached = False
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.history.record("target", event="detached", pid=None, code=None)

    async def _kill9(self) -> None:
        raise TargetError(f"cannot kill target {self.spec.name}: {EXTERNAL}")

    async def restart(self) -> None:
        raise TargetError(f"cannot restart target {self.spec.name}: {EXTERNAL}")

    async def pause(self) -> None:
        raise TargetError(f"cannot pause target {self.spec.name}: {EXTERNAL}")

    async def resume(self) -> None:
        raise TargetError(f"cannot resume target {self.spec.name}: {EXTERNAL}")

    def stored_ids(self) -> list[str] | None:
        """The stored ids when its database is a file the harness can read, else None."""
        spec = self.spec.persistence
        if spec is None or not spec.db_path(self.workdir).is_file():
            return None
        return super().stored_ids()

    def log_tail(self, lines: int = 20) -> str:
        return ""

    async def _sample_loop(self) -> None:
        if self.spec.metrics is None or self.spec.metrics.clients is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.2)
            started = loop.time()
            clients, values = await self._fetch_metrics()
            self.history.record("metrics", clients=clients, values=values)
            await asyncio.sleep(max(0.0, 0.2 - (loop.time() - started)))


def external_skip_reason(scenario: Scenario, spec: TargetSpec) -> str | None:
    """Why ``scenario`` cannot run against an external target (a fault that needs the process), or None."""
    if not spec.external:
        return None
    needing = [f for f in scenario.faults() if getattr(FAULTS.get(f.type), "needs_process", False)]
    if not needing:
        return None
    names = ", ".join(f"{f.name} ({f.type})" for f in needing)
    return f"fault {names} needs the target's process: {EXTERNAL}"


def external_cannot_judge(spec: TargetSpec) -> dict[str, str]:
    """The checkers that cannot apply to ``spec`` because it is external, each with why (its file says so)."""
    if not spec.external:
        return {}
    no_log = f"no log of the target's process to read: {EXTERNAL}"
    out = {"no_error_logs": no_log, "log_volume": no_log,
           "shutdown": f"the harness does not stop the target: {EXTERNAL}"}  # fmt: skip
    if spec.metrics is None or spec.metrics.clients is None:
        out["eviction"] = f"no registry size: no metrics gauge, and its process's sockets cannot be counted: {EXTERNAL}"
    return out


def inapplicable(target: Target, ctx: CheckContext, name: str) -> Verdict | None:
    """The not-applicable verdict of check ``name`` against an external target, or None if it applies."""
    checker = checker_name(name)
    why = external_cannot_judge(target.spec).get(checker)
    if why is None and target.spec.external and checker == "persistence" and ctx.stored_ids is None:
        why = f"no database the harness can read: {EXTERNAL}"
    return None if why is None else Verdict.unknown(name, NOT_APPLICABLE, why)


def inapplicable_checks(target: Target, ctx: CheckContext, checks: dict[str, Any]) -> dict[str, Verdict]:
    """The checks of ``checks`` that cannot apply to the target, with their not-applicable verdicts."""
    return {name: verdict for name in checks if (verdict := inapplicable(target, ctx, name)) is not None}
