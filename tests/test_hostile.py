"""The hostile fault family against a tiny real aiohttp server on 127.0.0.1, started by each test:
each fault sends what it should, records how the server answered, and closes all it opened (on heal,
and on cleanup mid-attack). Its params are checked before any run, and the ``nofile`` target param
lowers a started target's open-file limit."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp import WSMsgType, web

from harness.dialects import MonitorDialect
from harness.errors import HarnessError
from harness.faultfamilies.hostile import HostileFault
from harness.faults import FAULTS, Fault, FaultContext, FaultSpec, make_fault
from harness.history import History
from harness.scenario import check_target_params, load
from harness.target import Target
from harness.targetspec import load_target

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = ("deep_json", "bad_query", "oversized_headers", "ping_flood_vanish", "unmasked_frames", "slowloris",
           "fd_pressure", "resume_amplification")  # fmt: skip
HEAD = 5  # the tiny server's stream position


@dataclass
class Seen:
    """What the tiny server saw."""

    paths: list[str] = field(default_factory=list)  # raw path and query of every WebSocket upgrade
    texts: list[str] = field(default_factory=list)
    binaries: int = 0
    pings: int = 0
    health: int = 0


SEEN: web.AppKey[Seen] = web.AppKey("seen")


def resume_answer(ws_query: Any) -> list[dict[str, Any]]:
    """A small monitor-like resume: batches after ``since`` up to HEAD, or resync_required."""
    try:
        since = int(ws_query.get("since", ""))
    except ValueError:
        return [{"type": "resync_required", "reason": "bad_since"}]
    if ws_query.get("epoch") != "e1" or not 0 <= since <= HEAD:
        return [{"type": "resync_required", "reason": "no"}]
    batches = [{"type": "log_entry_batch", "seq": s, "sent_at": 0.0, "events": [{"piece_id": f"p{s}"}]}
               for s in range(since + 1, HEAD + 1)]  # fmt: skip
    return [{"type": "resumed", "from_seq": since + 1, "to_seq": HEAD}, *batches]


async def ws_handler(request: web.Request) -> web.StreamResponse:
    seen = request.app[SEEN]
    seen.paths.append(request.raw_path)
    ws = web.WebSocketResponse(autoping=False)
    await ws.prepare(request)
    await ws.send_json({"type": "init", "epoch": "e1", "seq": HEAD})
    if "epoch" in request.query:
        for message in resume_answer(request.query):
            await ws.send_json(message)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            seen.texts.append(msg.data)
        elif msg.type is WSMsgType.BINARY:
            seen.binaries += 1
        elif msg.type is WSMsgType.PING:
            seen.pings += 1  # never answered: the flood's pongs are not the point here
    return ws


async def healthz(request: web.Request) -> web.Response:
    request.app[SEEN].health += 1
    return web.Response(text="ok")


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, Seen]]:
    app = web.Application()
    app[SEEN] = Seen()
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1], app[SEEN]
    finally:
        await runner.cleanup()


@pytest.fixture
async def ctx(server: tuple[int, Seen]) -> AsyncIterator[FaultContext]:
    port = server[0]
    spec = SimpleNamespace(ws_path="/ws", ready=SimpleNamespace(http="/healthz"))
    target = SimpleNamespace(host="127.0.0.1", port=port, spec=spec)  # where the tiny server is, as a Target says
    async with aiohttp.ClientSession() as session:
        yield FaultContext(None, {}, {}, target, History(), random.Random(1), session, MonitorDialect())  # type: ignore[arg-type]


def connections_to(port: int) -> list[Any]:
    return [c for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port]


async def eventually(check: Callable[[], bool], within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def run(ctx: FaultContext, type: str, **params: Any) -> dict[str, Any]:
    """Start, settle and heal the fault, clean up, check nothing of it is left; its bite record."""
    fault = make_fault(FaultSpec(f"t-{type}", type, None, params))
    await fault.start(ctx)
    await fault.settle(ctx)
    await fault.heal(ctx)
    await fault.cleanup(ctx)
    await left_nothing(ctx, fault)
    bites = [r for r in ctx.history.of("fault_bite") if r["fault"] == f"t-{type}"]
    assert len(bites) == 1
    return bites[0]


async def left_nothing(ctx: FaultContext, fault: Fault) -> None:
    assert isinstance(fault, HostileFault) and fault.tasks == set() and fault.conns == set()
    assert await eventually(lambda: connections_to(ctx.target.port) == []), connections_to(ctx.target.port)


# -- each fault sends what it should -----------------------------------------------------------------


async def test_deep_json_sends_json_nested_a_thousand_deep(ctx: FaultContext, server: tuple[int, Seen]) -> None:
    bite = await run(ctx, "deep_json", messages=2, connections=1, interval=0.0)
    texts = server[1].texts
    assert texts == ["[" * 1000 + "]" * 1000, '{"type":"ping","t":' + "[" * 1000 + "]" * 1000 + "}"]
    assert bite["bit"] and bite["figures"]["messages"] == 2 and bite["figures"]["requests"] == 1
    assert bite["figures"]["bytes_sent"] > 4000


async def test_bad_query_sends_nonsense_resume_values_with_the_real_epoch(
    ctx: FaultContext, server: tuple[int, Seen]
) -> None:
    bite = await run(ctx, "bad_query", rounds=1, interval=0.0)
    paths = server[1].paths
    assert "/ws?epoch=e1&since=%C2%B2" in paths and f"/ws?epoch=e1&since={'9' * 5000}" in paths
    assert "/ws?epoch=%FF%FE&since=1" in paths
    outcomes = bite["figures"]["outcomes"]
    assert outcomes["epoch=e1&since=%C2%B2"] == "101 resync_required"
    assert bite["bit"] and bite["figures"]["answers"]["101 resync_required"] >= 12


async def test_bad_query_is_skipped_with_its_reason_when_the_dialect_does_not_resume(
    ctx: FaultContext, server: tuple[int, Seen]
) -> None:
    ctx.dialect = MonitorDialect(resume_query=False)
    bite = await run(ctx, "bad_query")
    assert not bite["bit"] and bite["how"].startswith("skipped: the target's dialect (monitor) does not resume")
    assert server[1].paths == []


async def test_oversized_headers_sends_heads_past_8_kib(ctx: FaultContext, server: tuple[int, Seen]) -> None:
    bite = await run(ctx, "oversized_headers", requests=6, rate=100.0, size=9000)
    answers = bite["figures"]["answers"]
    assert sum(answers.values()) == 6 and bite["figures"]["requests"] == 6
    assert {label.split(":")[0] for label in answers} == {"request_line", "header", "many_headers"}
    assert all(label.endswith(" 400") for label in answers), answers  # aiohttp refuses each
    assert bite["figures"]["bytes_sent"] > 6 * 9000 and server[1].paths == []


async def test_ping_flood_vanish_sends_its_pings_unread_then_resets(
    ctx: FaultContext, server: tuple[int, Seen]
) -> None:
    bite = await run(ctx, "ping_flood_vanish", pings=2000, chunk=500)
    assert bite["figures"]["pings"] == 2000 and bite["figures"]["resets"] == 1
    # The reset drops whatever the server had not read yet: it saw some of the pings, at most all.
    assert await eventually(lambda: server[1].pings > 0) and server[1].pings <= 2000
    assert bite["figures"]["unread_bytes"] >= 0 and bite["figures"]["server_end"] == "open"


async def test_unmasked_frames_sends_each_kind_without_a_mask(ctx: FaultContext, server: tuple[int, Seen]) -> None:
    bite = await run(ctx, "unmasked_frames", connections=4)
    kinds = {label.split(":")[0] for label in bite["figures"]["answers"]}
    assert kinds == {"text", "binary", "ping", "close"} and bite["figures"]["frames"] == 4
    assert "close: 101 close 1000" in bite["figures"]["answers"]  # aiohttp takes an unmasked close as a close


async def test_slowloris_holds_half_sent_requests_open(ctx: FaultContext, server: tuple[int, Seen]) -> None:
    bite = await run(ctx, "slowloris", connections=5, interval=0.1, duration=0.6)
    assert bite["figures"]["held_to_the_end"] == 5 and bite["figures"]["requests"] == 5
    assert bite["figures"]["answers"] == {"at the end: open": 5} and server[1].paths == []


async def test_fd_pressure_opens_sockets_up_to_its_cap(ctx: FaultContext, server: tuple[int, Seen]) -> None:
    bite = await run(ctx, "fd_pressure", cap=20, hold=0.0)
    assert bite["figures"]["held"] == 20 and bite["figures"]["answers"] == {"200": 20}
    assert server[1].health == 20 and "held 20 open" in bite["how"]


async def test_resume_amplification_resumes_the_whole_buffer_again_and_again(
    ctx: FaultContext, server: tuple[int, Seen]
) -> None:
    bite = await run(ctx, "resume_amplification", resumes=4, concurrency=2, read_s=0.2)
    assert server[1].paths.count("/ws?epoch=e1&since=0") == 5  # the probe, then four resumes
    figures = bite["figures"]
    assert figures["since"] == 0 and figures["head_seq"] == HEAD and figures["answers"] == {"resumed: 101": 5}
    assert figures["bytes_received"] > figures["bytes_sent"] > 0 and figures["amplification"] > 1


async def test_cleanup_mid_attack_cancels_it_and_closes_every_socket(ctx: FaultContext) -> None:
    fault = make_fault(FaultSpec("t-slow", "slowloris", None, {"connections": 5, "interval": 0.1, "duration": 30.0}))
    await fault.start(ctx)
    assert await eventually(lambda: len(connections_to(ctx.target.port)) == 5)
    await fault.cleanup(ctx)
    await left_nothing(ctx, fault)
    await fault.cleanup(ctx)


async def test_every_hostile_fault_can_be_cleaned_up_before_it_starts(ctx: FaultContext) -> None:
    for type in HOSTILE:
        fault = make_fault(FaultSpec(f"t-{type}", type, None, {}))
        await fault.cleanup(ctx)
        await fault.cleanup(ctx)


# -- params are checked before any run -------------------------------------------------------------


def test_each_hostile_fault_needs_no_cohort_and_has_a_bounded_duration() -> None:
    for type in HOSTILE:
        assert FAULTS[type].problems(FaultSpec("f", type, None, {})) == []
        assert "duration" in FAULTS[type].defaults


@pytest.mark.parametrize(
    "type, params, message",
    [
        ("deep_json", {"depth": 0}, "params.depth: must be between 1 and 100000, got 0"),
        ("deep_json", {"depth": "deep"}, "params.depth: must be an integer, got 'deep'"),
        ("oversized_headers", {"rate": -1.0}, "params.rate: must be between 0.1 and 1000, got -1.0"),
        ("ping_flood_vanish", {"payload": 200}, "params.payload: must be between 0 and 125, got 200"),
        ("slowloris", {"clients": 5}, "unknown params ['clients']; known: connections, duration, interval"),
        ("fd_pressure", {"cap": True}, "params.cap: must be an integer, got True"),
        ("bad_query", {"values": "NaN"}, "params.values: must be a list, got 'NaN'"),
        ("bad_query", {"values": [1]}, "params.values: must be a list of strings (sent as written), got [1]"),
    ],
)
def test_bad_params_are_named(type: str, params: dict[str, Any], message: str) -> None:
    problems = FAULTS[type].problems(FaultSpec("f", type, None, params))
    assert [f"{where}: {p}" if where != "params" else p for where, p in problems] == [message]
    with pytest.raises(HarnessError, match=r"fault 'f' \(" + type + r"\): "):
        make_fault(FaultSpec("f", type, None, params))


# -- the nofile target param --------------------------------------------------------------------------


def test_any_target_takes_nofile() -> None:
    scenario = load(ROOT / "scenarios" / "hostile_input.yaml")
    for name in ("monitor", "ws_broadcaster", "centrifugo", "socketio"):
        check_target_params(scenario, load_target(ROOT / "harness" / "targets" / f"{name}.yaml"))


async def test_nofile_lowers_the_started_targets_open_file_limit(tmp_path: Path) -> None:
    spec = load_target(ROOT / "harness" / "targets" / "monitor.yaml")
    async with Target(spec, tmp_path, History(), params={"nofile": 300}) as target:
        assert target.ignored_params == []
        assert psutil.Process(target.pid).rlimit(psutil.RLIMIT_NOFILE) == (300, 300)
