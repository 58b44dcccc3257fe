"""The fault catalogue's core: network faults on one cohort's proxy (so a fault hits exactly that
cohort), faults on the target's process, and client churn. Every random choice comes from the run's
seeded ``rng``. Other families live in ``harness.faultfamilies``, one module each; importing this
module registers them all in ``FAULTS``. The lifecycle every fault follows is in ``harness.faultbase``."""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
import random
from typing import Any, ClassVar

from harness import faultfamilies
from harness.bite import Cut, SlowWatch, StuckWatch, receiving, record_cut, record_cut_off, record_receiving
from harness.clients import ProbeClient, StuckClient
from harness.faultbase import FAULTS, Fault, FaultContext, FaultSpec, ToxicFault, cancel_all, make_fault

log = logging.getLogger(__name__)

__all__ = ["FAULTS", "Fault", "FaultContext", "FaultSpec", "ToxicFault", "cancel_all", "make_fault"]


class MidSendDisconnect(Fault):
    """Clients vanish while the server is sending. Without ``rst`` the proxy closes each connection
    after ``bytes`` more bytes (limit_data: a FIN, in the middle of a frame unless the count lands on
    a boundary; the clients follow frame boundaries and the bite requires at least one cut inside a
    frame); with ``rst`` it resets them at once (reset_peer with timeout 0, which on established
    connections cuts the stream and makes the server's next write fail with a reset).

    Measured with Toxiproxy 2.12: a reset_peer with a timeout added *before* clients connect holds
    all their data, and removing it then hangs for the API's 25 s limit, so it cannot be used to
    arm connections for a later RST."""

    type = "mid_send_disconnect"
    defaults: ClassVar[dict[str, Any]] = {"bytes": 1500, "rst": False}

    def __init__(self, spec: FaultSpec) -> None:
        super().__init__(spec)
        self.victims: list[str] = []
        self.armed_t = 0.0
        self.receiving: dict[str, float] = {}

    async def apply(self, ctx: FaultContext) -> None:
        self.victims = [c.name for c in ctx.cohorts[self.spec.cohort or ""].clients if c.connected]
        self.armed_t, self.receiving = ctx.history.now(), receiving(ctx.history, self.victims)
        if self.params["rst"]:
            await self.add_toxic(ctx, self.toxic(), "reset_peer", "downstream", {"timeout": 0})
        else:
            await self.add_toxic(ctx, self.toxic(), "limit_data", "downstream", {"bytes": self.params["bytes"]})

    def record_bite(self, ctx: FaultContext) -> None:
        record_cut_off(
            self.subject(), ctx.history, self.victims, self.armed_t, self.receiving, inside_frame=not self.params["rst"]
        )


class MassDrop(Fault):
    """A share of the cohort's clients vanish at the same instant (RST, or FIN without a close frame)."""

    type = "mass_drop"
    defaults: ClassVar[dict[str, Any]] = {"share": 1.0, "rst": True}

    async def apply(self, ctx: FaultContext) -> None:
        cohort = ctx.cohorts[self.spec.cohort or ""]
        victims = cohort.sample(max(1, round(self.params["share"] * len(cohort.clients))), ctx.rng)
        rst = self.params["rst"]
        record_receiving(self.subject(), ctx.history, [c.name for c in victims], "the reset")
        await asyncio.gather(*(c.abort() if rst else c.fin() for c in victims))


class NetworkCut(Fault):
    """Silent both ways: the proxy holds all data (timeout 0). Clients become half-open; healing
    removes the toxics, which closes the held connections, and clients reconnect."""

    type = "network_cut"

    def __init__(self, spec: FaultSpec) -> None:
        super().__init__(spec)
        self.cut_t = 0.0
        self.victims: list[str] = []

    async def apply(self, ctx: FaultContext) -> None:
        self.cut_t = ctx.history.now()
        self.victims = [c.name for c in ctx.cohorts[self.spec.cohort or ""].clients if c.connected]
        for stream in ("downstream", "upstream"):
            await self.add_toxic(ctx, self.toxic(f"-{stream}"), "timeout", stream, {"timeout": 0})

    def record_bite(self, ctx: FaultContext) -> None:
        record_cut(self.subject(), ctx.history, [(self.cut_t, ctx.history.now(), self.victims)])


class SlowConsumer(ToxicFault):
    """The cohort's link reads at ``rate`` KB/s. It runs until the target's send path to the slow
    link is full (or the target closed it), then for ``hold`` seconds; ``ceiling`` bounds the wait."""

    type = "slow_consumer"
    toxic_type = "bandwidth"
    defaults: ClassVar[dict[str, Any]] = {"rate": 1, "ceiling": 120.0, "hold": 5.0}  # KB/s, s, s

    def __init__(self, spec: FaultSpec) -> None:
        super().__init__(spec)
        self.watch: SlowWatch | None = None

    def attributes(self) -> dict[str, Any]:
        return {"rate": self.params["rate"]}

    async def apply(self, ctx: FaultContext) -> None:
        await super().apply(ctx)
        victims = ctx.cohorts[self.spec.cohort or ""].probes
        self.watch = SlowWatch(self.subject(), ctx.history, victims, ctx.target.port,
                               self.params["ceiling"], self.params["hold"])  # fmt: skip
        self.spawn(self.watch.run(), "bite")

    async def settle(self, ctx: FaultContext) -> None:
        await settle_watch(self.tasks)

    async def undo(self, ctx: FaultContext) -> None:
        if self.watch is not None:
            self.watch.finish("heal")
        await cancel_all(self.tasks)
        await super().undo(ctx)


class Latency(ToxicFault):
    type = "latency"
    toxic_type = "latency"
    defaults: ClassVar[dict[str, Any]] = {"latency": 100, "jitter": 50}  # ms


class Slicer(ToxicFault):
    type = "slicer"
    toxic_type = "slicer"
    defaults: ClassVar[dict[str, Any]] = {"average_size": 64, "size_variation": 32, "delay": 100}  # delay µs


class SlowClose(ToxicFault):
    type = "slow_close"
    toxic_type = "slow_close"
    defaults: ClassVar[dict[str, Any]] = {"delay": 2000}  # ms


class StuckReader(Fault):
    """New clients connect and never read. ``answer_heartbeats`` keeps them sending pongs, which
    defeats eviction that relies on heartbeats alone. The fault runs until the target's send path to
    each is full (or the target closed it), then for ``hold`` seconds; ``ceiling`` bounds the wait: a
    target whose kernel send buffers are not capped may take tens of seconds to fill them.

    They connect straight to the target unless ``via_proxy``: a proxy in between keeps reading from
    the server into its own socket buffers (megabytes), so backpressure would reach the server only
    after tens of seconds, unlike a real stuck client whose small receive buffer fills at once."""

    type = "stuck_reader"
    defaults: ClassVar[dict[str, Any]] = {"clients": 2, "answer_heartbeats": False, "rcvbuf": 4096, "via_proxy": False,
                                          "ceiling": 120.0, "hold": 4.0}  # fmt: skip

    def __init__(self, spec: FaultSpec) -> None:
        super().__init__(spec)
        self.stuck: list[StuckClient] = []
        self.watch: StuckWatch | None = None

    def address(self, ctx: FaultContext) -> tuple[str, int]:
        if self.params["via_proxy"]:
            proxy = self.proxy(ctx)
            return proxy.listen_host, proxy.listen_port
        return ctx.target.host, ctx.target.port

    async def apply(self, ctx: FaultContext) -> None:
        host, port = self.address(ctx)
        cohort = self.spec.cohort or ""
        for i in range(self.params["clients"]):
            client = StuckClient(
                f"{cohort}-stuck-{i}",
                cohort,
                host,
                port,
                ctx.target.spec.ws_path,
                ctx.history,
                answer_heartbeats=self.params["answer_heartbeats"],
                rcvbuf=self.params["rcvbuf"],
                dialect=ctx.dialect,
            )
            self.stuck.append(client)
            await client.start()
        self.watch = StuckWatch(self.subject(), ctx.history, [c for c in self.stuck if c.connected], port,
                                self.params["ceiling"], self.params["hold"])  # fmt: skip
        self.spawn(self.watch.run(), "bite")

    async def settle(self, ctx: FaultContext) -> None:
        await settle_watch(self.tasks)

    async def undo(self, ctx: FaultContext) -> None:
        if self.watch is not None:
            self.watch.finish("heal")
        await cancel_all(self.tasks)
        for client in self.stuck:
            await client.stop()

    async def release(self, ctx: FaultContext) -> None:
        await self.undo(ctx)  # stopping a stopped client does nothing


class Flap(Fault):
    """Repeated silent cuts and heals of the cohort's link."""

    type = "flap"
    defaults: ClassVar[dict[str, Any]] = {"cycles": 3, "cut": 0.5, "up": 0.5}

    def __init__(self, spec: FaultSpec) -> None:
        super().__init__(spec)
        self.cycling: asyncio.Task[None] | None = None
        self.cut = NetworkCut(FaultSpec(f"{spec.name}-cut", "network_cut", spec.cohort, {}))
        self.cuts: list[Cut] = []

    async def apply(self, ctx: FaultContext) -> None:
        self.cycling = self.spawn(self._cycle(ctx), "cycle")

    async def _cycle(self, ctx: FaultContext) -> None:
        for _ in range(self.params["cycles"]):
            await self.cut.apply(ctx)
            try:
                await asyncio.sleep(self.params["cut"])
            finally:
                await self.cut.undo(ctx)
                self.cuts.append((self.cut.cut_t, ctx.history.now(), self.cut.victims))
            await asyncio.sleep(self.params["up"])

    async def undo(self, ctx: FaultContext) -> None:
        if self.cycling is not None:
            await self.cycling

    def record_bite(self, ctx: FaultContext) -> None:
        record_cut(self.subject(), ctx.history, self.cuts)

    async def release(self, ctx: FaultContext) -> None:
        await self.cut.cleanup(ctx)


class ServerKill(Fault):
    """kill -9 the target, and start it again after ``restart_after`` seconds (also when healed)."""

    type = "server_kill"
    needs_cohort = False
    needs_process = True
    defaults: ClassVar[dict[str, Any]] = {"restart_after": 1.0}

    async def apply(self, ctx: FaultContext) -> None:
        await ctx.target.kill9()
        await asyncio.sleep(self.params["restart_after"])
        await ctx.target.restart()

    def hits(self, ctx: FaultContext) -> set[str]:
        return set(ctx.cohorts)


class ServerPause(Fault):
    """SIGSTOP the target; healing sends SIGCONT."""

    type = "server_pause"
    needs_cohort = False
    needs_process = True

    def __init__(self, spec: FaultSpec) -> None:
        super().__init__(spec)
        self.paused = False

    async def apply(self, ctx: FaultContext) -> None:
        self.paused = True
        await ctx.target.pause()

    async def undo(self, ctx: FaultContext) -> None:
        self.paused = False
        await ctx.target.resume()

    async def release(self, ctx: FaultContext) -> None:
        if self.paused and ctx.target.paused:
            await self.undo(ctx)

    def hits(self, ctx: FaultContext) -> set[str]:
        return set(ctx.cohorts)


class ServerStop(Fault):
    """A graceful stop (SIGTERM): every client should get 1001 within a bound."""

    type = "server_stop"
    needs_cohort = False
    needs_process = True
    defaults: ClassVar[dict[str, Any]] = {"timeout": 10.0}

    async def apply(self, ctx: FaultContext) -> None:
        await ctx.target.stop(timeout=self.params["timeout"])

    def hits(self, ctx: FaultContext) -> set[str]:
        return set(ctx.cohorts)


class Churn(Fault):
    """Short-lived clients come and go through the cohort's proxy: some close cleanly, some RST."""

    type = "churn"
    defaults: ClassVar[dict[str, Any]] = {"rate": 20.0, "lifetime": 0.3, "max_clients": 400}

    def __init__(self, spec: FaultSpec) -> None:
        super().__init__(spec)
        self.clients: set[ProbeClient] = set()  # started and not yet stopped

    async def apply(self, ctx: FaultContext) -> None:
        self.spawn(self._churn(ctx), "churn")

    async def _churn(self, ctx: FaultContext) -> None:
        proxy = self.proxy(ctx)
        url = proxy.url(ctx.target.spec.ws_path)
        for i in range(self.params["max_clients"]):
            client = ProbeClient(
                f"{self.spec.cohort}-churn-{i}",
                f"{self.spec.cohort}-churn",
                url,
                ctx.history,
                ctx.dialect,
                reconnect=False,
                session=ctx.session,
                rng=random.Random(ctx.rng.random()),
            )
            self.spawn(self._live(client, ctx.rng.random() < 0.5, ctx.rng.random()), f"life-{i}")
            await asyncio.sleep(ctx.rng.expovariate(self.params["rate"]))

    async def _live(self, client: ProbeClient, rst: bool, share: float) -> None:
        self.clients.add(client)
        await client.start()
        try:
            await asyncio.sleep(self.params["lifetime"] * (0.5 + share))
        finally:
            if rst:
                await client.abort()
            await client.stop()
            self.clients.discard(client)

    async def undo(self, ctx: FaultContext) -> None:
        await cancel_all(self.tasks)  # the churn and every life it started
        await self.release(ctx)

    async def release(self, ctx: FaultContext) -> None:
        for client in list(self.clients):
            await client.stop()
            self.clients.discard(client)

    def hits(self, ctx: FaultContext) -> set[str]:
        return {f"{self.spec.cohort}-churn"}


async def settle_watch(tasks: set[asyncio.Task[Any]]) -> None:
    """Wait for the fault's bite watch (its only task) to end; its failure is logged, not raised."""
    for task in list(tasks):
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            log.warning("bite watch %s ended with %r", task.get_name(), task.exception())


for _module in pkgutil.iter_modules(faultfamilies.__path__):
    importlib.import_module(f"{faultfamilies.__name__}.{_module.name}")
