"""Each fault's lifecycle (prepare, start, heal, cleanup) against a real toxiproxy-server and the
bundled monitor: cleanup releases every task, socket and toxic, and is safe to call twice."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import psutil
import pytest

from harness.clients import Cohort
from harness.errors import HarnessError
from harness.faults import FAULTS, Fault, FaultContext, FaultSpec, make_fault
from harness.history import History
from harness.target import Target
from harness.toxiproxy import Toxiproxy

pytestmark = pytest.mark.integration

COHORT = "c"


@pytest.fixture(autouse=True)
def _no_external_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOXIPROXY_URL", raising=False)


# ---------------------------------------------------------------------------------------------
# Without servers: the catalogue and its parameters


def test_the_catalogue_maps_each_type_to_its_fault() -> None:
    assert sorted(FAULTS) == sorted(cls.type for cls in FAULTS.values())
    for name, cls in FAULTS.items():
        fault = make_fault(FaultSpec(f"f-{name}", name, COHORT, {}))
        assert type(fault) is cls and fault.params == cls.defaults and fault.tasks == set()


def test_parameters_are_merged_with_the_defaults() -> None:
    fault = make_fault(FaultSpec("f", "flap", COHORT, {"cycles": 7}))
    assert fault.params == {"cycles": 7, "cut": 0.5, "up": 0.5}


def test_unknown_parameters_are_refused_with_the_known_ones() -> None:
    spec = FaultSpec("f", "flap", COHORT, {"cycles": 2, "cuts": 1})
    assert FAULTS["flap"].problems(spec) == [("params", "unknown params ['cuts']; known: cut, cycles, up")]
    with pytest.raises(HarnessError, match=r"fault 'f' \(flap\): unknown params \['cuts'\]; known: cut, cycles, up"):
        make_fault(spec)
    with pytest.raises(HarnessError, match=r"unknown params \['x'\]; known: none"):
        make_fault(FaultSpec("n", "network_cut", COHORT, {"x": 1}))


def test_a_network_fault_needs_a_cohort_and_a_server_fault_does_not() -> None:
    with pytest.raises(HarnessError, match=r"fault 'f' \(network_cut\): needs a cohort"):
        make_fault(FaultSpec("f", "network_cut", None, {}))
    assert FAULTS["server_kill"].problems(FaultSpec("k", "server_kill", None, {})) == []


def test_an_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(HarnessError, match=r"unknown fault type 'netwrk_cut'; known: .*churn, .*flap, .*latency"):
        make_fault(FaultSpec("f", "netwrk_cut", COHORT, {}))


# ---------------------------------------------------------------------------------------------
# Against a real toxiproxy-server and the bundled monitor (the plugin's fixtures)


@pytest.fixture
async def ctx(toxiproxy: Toxiproxy, target: Target, history: History) -> AsyncIterator[FaultContext]:
    """One cohort, ``c``, with a proxy of its own to the monitor and no clients."""
    proxy = await toxiproxy.create_proxy("faults-c", f"{target.host}:{target.port}")
    async with aiohttp.ClientSession() as session:
        yield FaultContext(toxiproxy, {COHORT: proxy}, {COHORT: Cohort(COHORT, [])}, target, history,
                           random.Random(1), session, target.spec.make_dialect())  # fmt: skip


async def toxics(ctx: FaultContext) -> list[str]:
    proxy = ctx.proxies[COHORT]
    async with ctx.session.get(f"{ctx.toxiproxy.url}/proxies/{proxy.name}/toxics") as response:
        response.raise_for_status()
        return sorted(t["name"] for t in await response.json())


def connections_to(port: int) -> list[Any]:
    """This process's own TCP sockets to ``port`` (any state: a socket is listed while its fd is open)."""
    return [c for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port]


async def eventually(check: Callable[[], bool], within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def fault_tasks(fault: Fault) -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(f"fault-{fault.spec.name}-")]


async def started(ctx: FaultContext, type: str, **params: Any) -> Fault:
    fault = make_fault(FaultSpec(f"t-{type}", type, COHORT, params))
    await fault.prepare(ctx)
    await fault.start(ctx)
    return fault


async def test_cleanup_before_start_is_safe_twice_for_every_fault(ctx: FaultContext) -> None:
    for name in FAULTS:
        fault = make_fault(FaultSpec(f"t-{name}", name, COHORT, {}))
        await fault.prepare(ctx)
        await fault.cleanup(ctx)
        await fault.cleanup(ctx)
    assert await toxics(ctx) == [] and ctx.target.running and not ctx.target.paused


@pytest.mark.parametrize(
    "type, names",
    [
        ("latency", ["t-latency"]),
        ("slow_consumer", ["t-slow_consumer"]),
        ("slicer", ["t-slicer"]),
        ("slow_close", ["t-slow_close"]),
        ("mid_send_disconnect", ["t-mid_send_disconnect"]),
        ("network_cut", ["t-network_cut-downstream", "t-network_cut-upstream"]),
    ],
)
async def test_cleanup_removes_the_toxics_of_an_unhealed_fault(ctx: FaultContext, type: str, names: list[str]) -> None:
    fault = await started(ctx, type)
    assert await toxics(ctx) == names
    await fault.cleanup(ctx)
    assert await toxics(ctx) == [] and fault.toxics == {}
    await fault.cleanup(ctx)


async def test_heal_removes_the_toxics_and_cleanup_after_it_does_nothing(ctx: FaultContext) -> None:
    fault = await started(ctx, "network_cut")
    await fault.heal(ctx)
    assert await toxics(ctx) == []
    await fault.cleanup(ctx)
    assert [r["type"] for r in ctx.history.of("fault_heal")] == ["network_cut"]


async def test_cleanup_tolerates_a_proxy_already_deleted(ctx: FaultContext) -> None:
    fault = await started(ctx, "network_cut")
    await ctx.toxiproxy.delete_proxy(ctx.proxies[COHORT].name)
    await fault.cleanup(ctx)
    await fault.cleanup(ctx)
    assert fault.toxics == {}


async def test_flap_cleanup_cancels_its_cycle_and_removes_the_cut(ctx: FaultContext) -> None:
    fault = await started(ctx, "flap", cycles=5, cut=5.0, up=5.0)
    await asyncio.sleep(0.3)
    assert await toxics(ctx) == ["t-flap-cut-downstream", "t-flap-cut-upstream"]
    cycle = fault_tasks(fault)
    assert len(cycle) == 1 and fault.tasks == set(cycle)
    await fault.cleanup(ctx)
    assert cycle[0].cancelled() and fault.tasks == set() and fault_tasks(fault) == []
    assert await toxics(ctx) == []
    await fault.cleanup(ctx)


async def test_flap_heal_waits_for_its_cycles(ctx: FaultContext) -> None:
    fault = await started(ctx, "flap", cycles=2, cut=0.1, up=0.1)
    await fault.heal(ctx)
    assert fault.tasks == set() and await toxics(ctx) == []
    await fault.cleanup(ctx)


async def test_churn_cleanup_cancels_every_life_and_closes_every_client(ctx: FaultContext) -> None:
    port = ctx.proxies[COHORT].listen_port
    fault = await started(ctx, "churn", rate=40.0, lifetime=10.0)
    assert await eventually(lambda: len(connections_to(port)) >= 3), "churn clients did not connect"
    lives = fault_tasks(fault)
    assert len(lives) >= 4 and fault.tasks == set(lives)  # the churn loop and its lives
    await fault.cleanup(ctx)
    assert all(t.done() for t in lives) and fault.tasks == set() and fault_tasks(fault) == []
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith(f"probe-{COHORT}-churn")] == []
    assert await eventually(lambda: connections_to(port) == []), connections_to(port)
    await fault.cleanup(ctx)


async def test_churn_heal_ends_the_churn(ctx: FaultContext) -> None:
    port = ctx.proxies[COHORT].listen_port
    fault = await started(ctx, "churn", rate=40.0, lifetime=0.3)
    await asyncio.sleep(0.5)
    await fault.heal(ctx)
    assert fault.tasks == set() and fault_tasks(fault) == []
    assert await eventually(lambda: connections_to(port) == []), connections_to(port)
    assert list(ctx.history.of("connect")), "no churn client connected"


async def test_stuck_reader_cleanup_closes_its_sockets(ctx: FaultContext) -> None:
    port = ctx.target.port
    fault = await started(ctx, "stuck_reader", clients=3)
    # The fault's own sockets, by their local ports: the target's metrics and health checks share this
    # process and may hold a keep-alive connection to the same port at any moment.
    mine = {c.sock.getsockname()[1] for c in fault.stuck if c.sock is not None}  # type: ignore[attr-defined]
    assert len(mine) == 3 and {c.laddr.port for c in connections_to(port)} >= mine
    await fault.cleanup(ctx)
    assert [c for c in connections_to(port) if c.laddr.port in mine] == []
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("stuck-")] == []
    await fault.cleanup(ctx)


async def test_stuck_reader_interrupted_mid_handshake_leaves_no_socket(ctx: FaultContext) -> None:
    """Through a proxy that holds every answer, the handshake hangs; cancelling the start there
    must not leave the half-open socket behind."""
    proxy = ctx.proxies[COHORT]
    await ctx.toxiproxy.add_toxic(proxy, "hold", "timeout", "downstream", attributes={"timeout": 0})
    fault = make_fault(FaultSpec("t-stuck", "stuck_reader", COHORT, {"clients": 2, "via_proxy": True}))
    start = asyncio.create_task(fault.start(ctx))
    assert await eventually(lambda: len(connections_to(proxy.listen_port)) == 1), "the handshake did not begin"
    start.cancel()
    await asyncio.wait([start])
    await fault.cleanup(ctx)
    assert connections_to(proxy.listen_port) == []
    await fault.cleanup(ctx)


async def test_server_pause_cleanup_resumes_the_target(ctx: FaultContext) -> None:
    fault = make_fault(FaultSpec("t-pause", "server_pause", None, {}))
    await fault.start(ctx)
    assert ctx.target.paused
    await fault.cleanup(ctx)
    assert not ctx.target.paused and await ctx.target.health()
    await fault.cleanup(ctx)
