"""Chatty but legitimate clients: a cohort's clients send requests at a steady rate below the
target's advertised limit. Not a fault of theirs: a rate limiter must leave them alone (the
rate_limit check), so the cohort still counts as healthy."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from harness.clients import ProbeClient
from harness.faultbase import Fault, FaultContext, FaultSpec


class Chatty(Fault):
    """Each connected probe client of the cohort sends ``request`` ``rate`` times a second for
    ``duration`` seconds (set ``rate`` to a share of the target's advertised limit, e.g. half)."""

    type = "steady_requests"
    defaults: ClassVar[dict[str, Any]] = {"rate": 25.0, "duration": 10.0, "request": '{"type":"ping"}'}

    def __init__(self, spec: FaultSpec) -> None:
        super().__init__(spec)
        self.sent: dict[str, int] = {}
        self.planned = 0

    async def apply(self, ctx: FaultContext) -> None:
        clients = [c for c in ctx.cohorts[self.spec.cohort or ""].probes if c.connected]
        self.planned = int(self.params["rate"] * self.params["duration"])
        for client in clients:
            self.sent[client.name] = 0
            self.spawn(self._chat(client), f"chat-{client.name}")

    async def _chat(self, client: ProbeClient) -> None:
        loop = asyncio.get_running_loop()
        start, interval = loop.time(), 1.0 / self.params["rate"]
        for n in range(self.planned):
            await asyncio.sleep(max(0.0, start + n * interval - loop.time()))
            if await client.send_request(self.params["request"]):
                self.sent[client.name] += 1

    async def settle(self, ctx: FaultContext) -> None:
        if self.tasks:
            await asyncio.wait(list(self.tasks))

    async def undo(self, ctx: FaultContext) -> None:
        await self.cleanup(ctx)

    def hits(self, ctx: FaultContext) -> set[str]:
        return set()  # legitimate clients: their cohort stays healthy

    def record_bite(self, ctx: FaultContext) -> None:
        sent = sum(self.sent.values())
        want = self.planned * len(self.sent)
        figures = {"clients": len(self.sent), "requests_sent": sent, "requests_planned": want,
                   "rate": self.params["rate"]}  # fmt: skip
        bit = bool(want) and sent >= 0.9 * want
        how = (f"{sent} of {want} requests sent at {self.params['rate']:g}/s by {len(self.sent)} client(s)" if bit
               else f"only {sent} of {want} requests could be sent")  # fmt: skip
        self.subject().record(ctx.history, bit, how, **figures)
