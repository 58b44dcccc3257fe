"""Churn of clients that fall behind: wave after wave of clients connect, stop reading until the
target ends them (or ``wait`` passes), and vanish. A server that releases what an evicted client held
comes back to where it started; one that leaks a socket, a task or an object per client does not
(the leaks check)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from harness.faultbase import Fault, FaultContext, FaultSpec
from harness.stuck import StuckClient


class StuckChurn(Fault):
    """``waves`` waves of ``clients`` stuck readers each, straight to the target (no proxy: a proxy
    would read for them). Each wave lasts until the target ended every one of its clients or ``wait``
    seconds passed; the harness then resets what is left. It bites when the target ended at least
    half of them itself: they fell behind and were evicted."""

    type = "stuck_churn"
    defaults: ClassVar[dict[str, Any]] = {"waves": 6, "clients": 4, "wait": 4.0, "rcvbuf": 4096}

    def __init__(self, spec: FaultSpec) -> None:
        super().__init__(spec)
        self.live: list[StuckClient] = []
        self.started = 0
        self.ended = 0  # by the target
        self.waves_done = 0

    async def apply(self, ctx: FaultContext) -> None:
        self.spawn(self._churn(ctx), "churn")

    async def settle(self, ctx: FaultContext) -> None:
        await asyncio.wait(list(self.tasks))

    async def _churn(self, ctx: FaultContext) -> None:
        for wave in range(self.params["waves"]):
            await self._wave(ctx, wave)
            self.waves_done += 1

    async def _wave(self, ctx: FaultContext, wave: int) -> None:
        clients = [self._client(ctx, f"{self.spec.cohort}-behind-{wave}-{i}") for i in range(self.params["clients"])]
        self.live = clients
        await asyncio.gather(*(c.start() for c in clients))
        connected = [c for c in clients if c.connected]
        self.started += len(connected)
        deadline = asyncio.get_running_loop().time() + self.params["wait"]
        while True:  # until the target ended them all, or the wait is over
            if not any(c.connected for c in connected) or asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(0.05)
        self.ended += sum(not c.connected for c in connected)
        await self.release(ctx)

    def _client(self, ctx: FaultContext, name: str) -> StuckClient:
        target = ctx.target
        return StuckClient(name, self.spec.cohort or "", target.host, target.port, target.spec.ws_path, ctx.history,
                           answer_heartbeats=True, rcvbuf=self.params["rcvbuf"], dialect=ctx.dialect)  # fmt: skip

    async def undo(self, ctx: FaultContext) -> None:
        await self.cleanup(ctx)

    async def release(self, ctx: FaultContext) -> None:
        clients, self.live = self.live, []
        for client in clients:
            await client.stop()

    def record_bite(self, ctx: FaultContext) -> None:
        figures = {"waves": self.waves_done, "clients": self.started, "ended_by_target": self.ended}
        if self.started and 2 * self.ended >= self.started:
            how = (f"{self.ended} of {self.started} clients that stopped reading were ended by the target "
                   f"({self.waves_done} waves)")  # fmt: skip
            self.subject().record(ctx.history, True, how, **figures)
        else:
            how = (f"the target ended only {self.ended} of {self.started} clients that stopped reading within "
                   f"{self.params['wait']:g}s each: they were not evicted")  # fmt: skip
            self.subject().record(ctx.history, False, how, **figures)


class Rejoin(Fault):
    """Every connected client of the cohort resets its connection and reconnects at once (resuming
    where it was): each comes back as a new connection, after whoever joined meanwhile."""

    type = "rejoin"

    async def apply(self, ctx: FaultContext) -> None:
        clients = [c for c in ctx.cohorts[self.spec.cohort or ""].probes if c.connected]
        await asyncio.gather(*(c.abort(resume_after=True) for c in clients))
