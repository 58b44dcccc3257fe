"""Targets without a metrics endpoint and targets already running: the registry size counted from
the target process's own sockets, a ``url:`` target behind Toxiproxy whose process faults and
process checks are not applicable, and loopback-only addresses. The server is
``tests/targets/http_fed_server.py``, fed over HTTP, with no metrics endpoint."""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from harness.checkers import CheckContext, CohortInfo, check_eviction
from harness.clients import StuckClient
from harness.feed import Feed
from harness.history import History
from harness.process import start_child
from harness.runner import run_scenario
from harness.scenario import parse
from harness.target import Target, free_port
from harness.targetspec import TargetError, load_target, parse_target
from harness.toxiproxy import Toxiproxy

ROOT = Path(__file__).resolve().parent.parent
HTTP_FED = ROOT / "tests" / "data" / "targets" / "http_fed.yaml"
SEED = 5


async def wait_until(predicate: Any, within: float = 10.0, what: str = "") -> None:
    for _ in range(int(within / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within}s: {what}")


def socket_counts(history: History) -> list[int | None]:
    return [r["clients"] for r in history.of("metrics") if r.get("source") == "sockets"]


async def test_registry_size_from_the_process_sockets(tmp_path: Path) -> None:
    history = History()
    async with Target(load_target(HTTP_FED), tmp_path, history) as target, aiohttp.ClientSession() as session:
        async with session.ws_connect(target.ws_url) as a, session.ws_connect(target.ws_url) as b:
            assert (await a.receive_json(timeout=5))["kind"] == (await b.receive_json(timeout=5))["kind"] == "hello"
            await wait_until(lambda: socket_counts(history)[-1:] == [2], what="two sockets counted")
        await wait_until(lambda: socket_counts(history)[-1:] == [0], what="back to none")
    assert all(r.get("source") == "sockets" for r in history.of("metrics"))


async def test_stuck_readers_eviction_judged_from_sockets(tmp_path: Path) -> None:
    """Clients that never read nor answer the app-level ping leave the server's sockets, and the
    eviction checker judges it from those counts alone."""
    history = History()
    spec = load_target(HTTP_FED)
    async with Target(spec, tmp_path, history) as target:
        feed = Feed(spec, target.workdir, history, 300, random.Random(1), placeholders=target.placeholders())
        await feed.start()
        stuck = [StuckClient(f"silent-{i}", "silent", target.host, target.port, spec.ws_path, history,
                             answer_heartbeats=True) for i in range(2)]  # fmt: skip
        try:
            for client in stuck:
                await client.start()
            await wait_until(lambda: 2 in socket_counts(history), what="the stuck clients counted")
            await wait_until(lambda: socket_counts(history)[-1:] == [0], within=8, what="the stuck clients evicted")
        finally:
            for client in stuck:
                await client.stop()
            await feed.stop()
    ctx = CheckContext(history=history, cohorts={"silent": CohortInfo("silent", 0, "stuck")})
    verdict = check_eviction(ctx, {"cohort": "silent", "within": 6})
    assert verdict.status == "pass", verdict.summary
    held = check_eviction(ctx, {"cohort": "silent", "within": 0.5})  # the pong timeout alone is 3 s
    assert held.status == "fail", held.summary


@pytest.fixture
async def running_server(tmp_path: Path) -> AsyncIterator[int]:
    """The http_fed server started by the test, as any server the harness did not start."""
    port = free_port()
    with (tmp_path / "server.log").open("wb") as out:
        child = start_child([sys.executable, "-m", "tests.targets.http_fed_server", "--port", str(port)],
                            name="http_fed", output=out, cwd=ROOT)  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        yield port
    finally:
        await child.stop(5.0, group=True)


def external_target(tmp_path: Path, port: int, **extra: Any) -> Path:
    raw = {"name": "outside", "url": f"ws://localhost:{port}/ws", "ready": {"http": "/healthz"},
           "feed": {"kind": "http", "path": "/publish", "batch": 10},
           "messages": {"init_type": "hello", "batch_type": "event", "event_id": "id"}, **extra}  # fmt: skip
    path = tmp_path / "outside.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


async def test_an_external_target_process_fault_is_not_applicable(
    toxiproxy: Toxiproxy, tmp_path: Path, running_server: int
) -> None:
    spec = load_target(external_target(tmp_path, running_server))
    assert spec.external and spec.ws_path == "/ws" and spec.command == []
    scenario = parse({"name": "kill_it", "cohorts": [{"name": "steady", "clients": 1}],
                      "method": [{"fault": {"name": "kill", "type": "server_kill"}}, {"wait": 0.5}],
                      "checks": {"liveness": {}}}, "kill_it")  # fmt: skip
    result = await run_scenario(scenario, spec, toxiproxy, tmp_path / "kill", SEED)
    assert result.status == "skipped" and result.verdicts == []
    assert result.reason == "fault kill (server_kill) needs the target's process: the target is external"


async def test_an_external_target_runs_behind_toxiproxy_and_process_checks_are_not_applicable(
    toxiproxy: Toxiproxy, tmp_path: Path, running_server: int
) -> None:
    spec = load_target(external_target(tmp_path, running_server, persistence={"sqlite": "/nonexistent/x.db",
                                                                              "query": "SELECT 1"}))  # fmt: skip
    # Stuck clients through the cohort's proxy: probe clients would need the json dialect to read its frames.
    scenario = parse({"name": "look", "cohorts": [{"name": "steady", "clients": 2, "kind": "stuck_pong"}],
                      "feed": {"rate": 100},
                      "steady_state": 0.5, "method": [{"wait": 1}],
                      "checks": {"no_error_logs": {}, "persistence": {}, "eviction": {"cohort": "steady"},
                                 "shutdown": {}}}, "look")  # fmt: skip
    result = await run_scenario(scenario, spec, toxiproxy, tmp_path / "look", SEED)
    assert result.status == "unknown", result.error
    for verdict in result.verdicts:
        assert (verdict.status, verdict.unknown_reason) == ("unknown", "not_applicable")
        assert verdict.summary.endswith(": the target is external"), verdict.summary
    history = History.load(tmp_path / "look" / "history.jsonl")
    fed = [i for r in history.of("feed") for i in r["ids"]]
    assert len(fed) >= 50 and not list(history.of("feed_error"))
    connects = [r for r in history.of("connect") if r.get("cohort") == "steady"]
    assert len(connects) == 2, connects  # through their proxy to the server
    assert [r["event"] for r in history.of("target")] == ["ready", "detached"]
    assert await toxiproxy.list_proxies() == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ws://192.168.1.20:8080/ws", r"url: 192\.168\.1\.20 is not a loopback address: the harness sends no traffic"),
        ("ws://example.com:80/ws", r"url: 'example\.com' is not a loopback address"),
        ("ws://127.0.0.1/ws", r"url: 'ws://127\.0\.0\.1/ws' needs a host and a port"),
        ("wss://127.0.0.1:1/ws", r"url: 'wss://127\.0\.0\.1:1/ws' does not match"),
    ],
)
def test_only_loopback_urls(url: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        parse_target({"name": "t", "url": url}, "t.yaml")


def test_command_or_url() -> None:
    with pytest.raises(TargetError, match=r"url: give command .* or url .*, not both"):
        parse_target({"name": "t", "url": "ws://[::1]:9/ws", "command": ["x"]}, "t.yaml")
    with pytest.raises(TargetError, match=r"command: give command .* or url"):
        parse_target({"name": "t"}, "t.yaml")
    assert parse_target({"name": "t", "url": "http://[::1]:9"}, "t.yaml").ws_path == "/ws"


async def test_http_fed_baseline_delivery_passes(toxiproxy: Toxiproxy, tmp_path: Path) -> None:
    spec = load_target(HTTP_FED)
    scenario = parse({"name": "baseline", "cohorts": [{"name": "steady", "clients": 4}], "feed": {"rate": 200},
                      "method": [{"wait": 3}], "checks": {"delivery": {"cohorts": ["steady"]}}},
                     "baseline")  # fmt: skip
    result = await run_scenario(scenario, spec, toxiproxy, tmp_path / "baseline", SEED)
    assert result.status == "pass", [v.summary for v in result.verdicts]


async def test_http_fed_stuck_reader_eviction_from_sockets(toxiproxy: Toxiproxy, tmp_path: Path) -> None:
    spec = load_target(HTTP_FED)
    scenario = parse({"name": "stuck", "cohorts": [{"name": "steady", "clients": 3}, {"name": "silent", "clients": 0}],
                      "feed": {"rate": 300},
                      "method": [{"wait": 0.5}, {"fault": {"name": "silent", "type": "stuck_reader", "cohort": "silent",
                                                           "params": {"clients": 2}}}, {"wait": 6}],
                      "checks": {"delivery": {"cohorts": ["steady"]}, "eviction": {"cohort": "silent", "within": 5}}},
                     "stuck")  # fmt: skip
    result = await run_scenario(scenario, spec, toxiproxy, tmp_path / "stuck", SEED)
    assert result.status == "pass", [v.summary for v in result.verdicts]
    history = History.load(tmp_path / "stuck" / "history.jsonl")
    assert all(r.get("source") == "sockets" for r in history.of("metrics"))
