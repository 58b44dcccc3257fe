"""Targets and the feed against real processes on loopback sockets: the monitor, the websockets
broadcaster, and small scripts that misbehave on purpose."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from harness.feed import Feed, FeedError
from harness.history import History
from harness.target import Target, TargetPortInUse
from harness.targetspec import TARGETS_DIR, TargetError, TargetSpec, bundled_monitor, load_target, parse_target
from monitor.logparse import parse_line

pytestmark = [pytest.mark.integration, pytest.mark.timeout(10)]

# A server that logs a JSON record, then lines that are not records, then serves HTTP (no metrics).
SCRIPT_SERVER = textwrap.dedent("""
    import http.server, json, sys
    print(json.dumps({"level": "warning", "msg": "starting up"}))
    print("Traceback (most recent call last):")
    print('  File "app.py", line 1, in <module>')
    sys.stdout.flush()
    server = http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), http.server.SimpleHTTPRequestHandler)
    server.serve_forever()
""")


async def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def persisted(target: Target) -> int:
    async with aiohttp.ClientSession() as session, session.get(target.http_url("/healthz")) as response:
        return int((await response.json())["events_persisted"])


async def wait_persisted(target: Target, count: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (done := await persisted(target)) < count:
        assert time.monotonic() < deadline, f"monitor persisted {done} of {count} events"
        await asyncio.sleep(0.05)


def events(history: History) -> list[str]:
    return [r["event"] for r in history.of("target")]


def script_target(tmp_path: Path, script: str = SCRIPT_SERVER, **extra: Any) -> TargetSpec:
    raw = {"name": "script", "command": ["{python}", "-c", script, "{host}", "{port}"],
           "ready": {"tcp": True, "timeout": 5}, "logs": {"format": "json"}, **extra}  # fmt: skip
    return parse_target(raw, "script target", tmp_path / "script.yaml")


def write_target(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# ---------------------------------------------------------------------------------------------
# The bundled monitor


async def test_monitor_persists_every_fed_event(tmp_path: Path) -> None:
    history = History()
    spec = bundled_monitor()
    async with Target(spec, tmp_path, history) as target:
        assert target.running and await target.health()
        feed = Feed(spec, tmp_path, history, rate=1000, rng=random.Random(7))
        await feed.start()
        await asyncio.sleep(0.4)
        await feed.stop()
        assert len(feed.fed) > 100
        await wait_persisted(target, len(feed.fed))
    assert not target.running
    assert events(history) == ["started", "ready", "stopping", "stopped"]
    assert list(history.of("target"))[-1]["code"] == 0
    stored = target.stored_ids()
    assert stored is not None and sorted(stored) == sorted(feed.fed)
    fed_in_records = [i for r in history.of("feed") for i in r["ids"]]
    assert fed_in_records == feed.fed
    assert {r["node"] for r in history.of("feed")} == {"n1", "n2"}


async def test_kill9_then_restart_on_the_same_port(tmp_path: Path) -> None:
    history = History()
    spec = bundled_monitor()
    target = Target(spec, tmp_path, history)
    port = target.port
    feed = Feed(spec, tmp_path, history, rate=0, rng=random.Random(1))
    async with target:
        await feed.start()
        feed.write(50)
        await wait_persisted(target, 50)
        first = target.pid
        assert first is not None
        await target.kill9()
        assert not target.running and not psutil.pid_exists(first)
        feed.write(30)  # written while the target is down: read after the restart
        await target.restart()
        second = target.pid
        assert second != first and target.port == port and await target.health()
        feed.write(20)
        await wait_persisted(target, 50)  # the restarted monitor counts from zero
        await wait_until(lambda: _stored_count(target) == 100, what="all 100 events stored")
        await feed.stop()
    assert second is not None and not psutil.pid_exists(second)
    assert events(history) == ["started", "ready", "killed", "started", "ready", "stopping", "stopped"]
    stored = target.stored_ids()
    assert stored is not None and sorted(stored) == sorted(feed.fed)


def _stored_count(target: Target) -> int:
    return len(target.stored_ids() or [])


async def test_pause_makes_health_time_out_until_resume(tmp_path: Path) -> None:
    history = History()
    async with Target(bundled_monitor(), tmp_path, history) as target:
        assert await target.health()
        await target.pause()
        started = time.monotonic()
        assert not await target.health()
        assert 0.9 < time.monotonic() - started < 3.0  # it timed out: the process holds its socket
        await target.resume()
        assert await target.health()
        await target.pause()  # stop() must work on a paused target too
        await target.stop(timeout=5)
        await target.stop()  # and twice
        assert not psutil.pid_exists(target.pid or 0)
    assert events(history) == ["started", "ready", "paused", "resumed", "paused", "stopping", "stopped"]


async def test_log_and_metrics_records(tmp_path: Path) -> None:
    history = History()
    async with Target(bundled_monitor(), tmp_path, history) as target, aiohttp.ClientSession() as session:
        async with session.ws_connect(target.ws_url) as ws:
            init = await ws.receive_json(timeout=5)
            assert init["type"] == "init"
            await wait_until(lambda: any(r["clients"] == 1 for r in history.of("metrics")), what="clients == 1")
        await wait_until(lambda: list(history.of("metrics"))[-1]["clients"] == 0, what="clients back to 0")
    logs = list(history.of("log"))
    assert any(r["level"] == "INFO" and "listening" in r["message"] for r in logs)
    assert [r["lineno"] for r in logs] == sorted(r["lineno"] for r in logs)
    # The last sample may be taken while the monitor stops: process figures then, no /metrics.
    sample = [r for r in history.of("metrics") if "rss_bytes" in r["values"]][-1]
    assert sample["values"]["rss_bytes"] > 1_000_000 and "cpu_percent" in sample["values"]
    assert any("monitor_connections_total" in r["values"] for r in history.of("metrics"))


async def test_raw_lines_and_a_target_without_metrics(tmp_path: Path) -> None:
    history = History()
    async with Target(script_target(tmp_path), tmp_path, history) as target:
        await wait_until(lambda: len(list(history.of("metrics"))) >= 2, what="metrics samples")
        await wait_until(lambda: len(list(history.of("log"))) >= 3, what="log records")
    levels = [(r["level"], r["line"][:9]) for r in history.of("log")][:3]
    assert levels == [("WARNING", '{"level":'), ("RAW", "Traceback"), ("RAW", '  File "a')]
    sample = next(iter(history.of("metrics")))
    # No registry gauge: the registry size is the count of its client sockets (none connected).
    assert sample["clients"] == 0 and sample["source"] == "sockets" and sample["values"]["rss_bytes"] > 0
    assert not target.running and target.stored_ids() is None


async def test_text_logs_use_the_level_regex(tmp_path: Path) -> None:
    script = SCRIPT_SERVER.replace('json.dumps({"level": "warning", "msg": "starting up"})', '"12:00 [error] boom"')
    spec = script_target(tmp_path, script, logs={"format": "text", "level_regex": r"\[(?P<level>\w+)\]"})
    history = History()
    async with Target(spec, tmp_path, history):
        await wait_until(lambda: len(list(history.of("log"))) >= 2, what="log records")
    assert [r["level"] for r in history.of("log")][:2] == ["ERROR", "RAW"]


async def test_async_with_stops_the_target_on_an_error(tmp_path: Path) -> None:
    history = History()
    target = Target(script_target(tmp_path), tmp_path, history)
    with pytest.raises(ZeroDivisionError):
        async with target:
            pid = target.pid
            1 / 0  # noqa: B018
    assert pid is not None and not psutil.pid_exists(pid)
    assert events(history)[-2:] == ["stopping", "stopped"]


async def test_a_target_that_dies_by_itself_is_recorded_as_exited(tmp_path: Path) -> None:
    script = SCRIPT_SERVER.replace(
        "server.serve_forever()",
        "import os, threading; threading.Timer(0.3, os._exit, (4,)).start(); server.serve_forever()",
    )
    history = History()
    async with Target(script_target(tmp_path, script), tmp_path, history) as target:
        await wait_until(lambda: "exited" in events(history), what="an exited record")
        assert not target.running
    assert events(history) == ["started", "ready", "exited"]
    assert list(history.of("target"))[-1]["code"] == 4


async def test_reused_workdir_and_concurrent_stops(tmp_path: Path) -> None:
    async with Target(script_target(tmp_path), tmp_path, History()):
        pass
    history = History()
    target = Target(script_target(tmp_path), tmp_path, history)
    await target.start()
    await asyncio.gather(target.stop(), target.stop(), target.stop())
    assert events(history) == ["started", "ready", "stopping", "stopped"]
    assert [r["lineno"] for r in history.of("log")][:1] == [1]  # only this run's lines, counted afresh
    assert len([r for r in history.of("log") if r["level"] == "WARNING"]) == 1


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\ncommand: python -m server\n", "command: 'python -m server' is not of type 'array'"),
        ("command: [a]\n", "(top level): 'name' is a required property"),
        ("name: x\ncomand: [a]\ncommand: [a]\n", "'comand' was unexpected"),
        ("name: x\ncommand: ['{python}', '--port', '{prot}']\n", "command[2]: unknown placeholder {prot}"),
        ("name: x\ncommand: [a]\nenv: {A: '{nope}'}\n", "env.A: unknown placeholder {nope}"),
        ("name: x\ncommand: [a]\nparams: {port: 1}\n", "params.port: 'port' is a built-in placeholder"),
        ("name: x\ncommand: [a]\nready: {http: /h, tcp: true}\n", "ready: give either http"),
        ("name: x\ncommand: [a]\nready: {http: healthz}\n", "ready.http: 'healthz' does not match"),
        ("name: x\ncommand: [a]\nlogs: {format: text, level_regex: 'x'}\n", "logs.level_regex: needs a named group"),
        ("name: x\ncommand: [a]\nlogs: {format: xml}\n", "logs.format: 'xml' is not one of"),
        ("name: x\ncommand: [a]\nfeed: {kind: storagenode_log, files: {n1: '{port}.log'}}\n",
         "feed.files.n1: unknown placeholder {port}"),
        ("name: x\ncommand: [a]\npersistence: {sqlite: a.db, query: DELETE FROM t}\n", "persistence.query"),
        ("name: x\ncommand: [a]\nmessages: {sequence: n}\n", "messages: Additional properties"),
        ("name: x\ncommand: [a\n", "not valid YAML"),
    ],
)  # fmt: skip
def test_bad_target_file_names_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write_target(tmp_path, text)
    with pytest.raises(TargetError) as caught:
        load_target(path)
    assert str(path) in caught.value.message and expected in caught.value.message
    assert caught.value.hint


def test_missing_target_file(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="does not exist"):
        load_target(tmp_path / "nope.yaml")


def test_bundled_targets_load_and_params_override(tmp_path: Path) -> None:
    spec = bundled_monitor()
    assert spec.params == {"heartbeat": 2, "send_timeout": 2, "queue_size": 256, "rate_limit": 50}
    target = Target(spec, tmp_path, History(), params={"heartbeat": 0.5, "not_a_param": 1})
    command = target.command()
    assert command[command.index("--heartbeat") + 1] == "0.5"
    assert command[command.index("--db") + 1] == f"{tmp_path}/monitor.db"
    assert target.ignored_params == ["not_a_param"]
    assert target.ws_url == f"ws://127.0.0.1:{target.port}/ws"
    broadcaster = load_target(TARGETS_DIR / "ws_broadcaster.yaml")
    assert broadcaster.persistence is None and broadcaster.metrics is not None


async def test_command_that_exits_at_once_shows_its_log(tmp_path: Path) -> None:
    script = "import sys; print('config error: no such setting ZZZ', file=sys.stderr); sys.exit(3)"
    history = History()
    target = Target(script_target(tmp_path, script), tmp_path, history)
    with pytest.raises(TargetError) as caught:
        await target.start()
    message = caught.value.message
    assert "exited with code 3 before it was ready" in message and "config error: no such setting ZZZ" in message
    assert not isinstance(caught.value, TargetPortInUse)
    assert events(history) == ["started", "exited"] and not target.running
    await target.stop()  # safe after a failed start


async def test_a_target_that_never_listens_times_out(tmp_path: Path) -> None:
    spec = script_target(tmp_path, "import time; time.sleep(30)", ready={"tcp": True, "timeout": 0.5})
    history = History()
    target = Target(spec, tmp_path, history)
    with pytest.raises(TargetError, match=rf"not ready within 0.5 s \(it does not listen on 127.0.0.1:{target.port}"):
        await target.start()
    assert not target.running and target.pid is not None and not psutil.pid_exists(target.pid)
    assert events(history) == ["started", "stopping", "stopped"]


async def test_missing_program_is_named(tmp_path: Path) -> None:
    spec = parse_target({"name": "x", "command": ["/no/such/server", "{port}"]}, "x", tmp_path / "x.yaml")
    with pytest.raises(TargetError, match=r"cannot run '/no/such/server': no such program"):
        await Target(spec, tmp_path, History()).start()


async def test_port_in_use_is_reported(tmp_path: Path) -> None:
    target = Target(bundled_monitor(), tmp_path, History())
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", target.port))
        squatter.listen()
        with pytest.raises(TargetPortInUse, match=rf"port {target.port} on 127.0.0.1 is already in use"):
            await target.start()
    assert target.pid is None  # nothing was started


async def test_port_in_use_reported_by_the_target_itself(tmp_path: Path) -> None:
    """A target that needs another port which is taken: its own complaint becomes TargetPortInUse."""
    spec = bundled_monitor()
    raw_command = [("{other}" if part == "{port}" else part) for part in spec.command]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        other = squatter.getsockname()[1]
        spec = parse_target({"name": "m", "command": raw_command, "params": {**spec.params, "other": other},
                             "ready": {"http": "/healthz", "timeout": 5}, "logs": {"format": "json"}},
                            "m", tmp_path / "m.yaml")  # fmt: skip
        with pytest.raises(TargetPortInUse, match="already in use") as caught:
            await Target(spec, tmp_path, History()).start()
    assert f"port {other} on 127.0.0.1 is already in use" in caught.value.message  # the monitor's own words


# ---------------------------------------------------------------------------------------------
# The second target: the websockets broadcaster


async def test_ws_broadcaster_delivers_fed_ids(tmp_path: Path) -> None:
    spec = load_target(TARGETS_DIR / "ws_broadcaster.yaml")
    history = History()
    received: list[str] = []
    seqs: list[int] = []
    async with Target(spec, tmp_path, history) as target, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(target.ws_url + "?epoch=x&since=3")
        init = await ws.receive_json(timeout=5)
        assert init["type"] == "init" and init["seq"] == 0 and init["epoch"]
        feed = Feed(spec, tmp_path, history, rate=800, rng=random.Random(3))
        await feed.start()
        await asyncio.sleep(0.3)
        await feed.stop()
        while len(received) < len(feed.fed):
            batch = await ws.receive_json(timeout=3)
            assert batch["type"] == "log_entry_batch"
            seqs.append(batch["seq"])
            received += [event["piece_id"] for event in batch["events"]]
        await wait_until(lambda: any(r["clients"] == 1 for r in history.of("metrics")), what="clients == 1")
        await target.stop()
        closing = await ws.receive(timeout=3)
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1001  # going away
    assert sorted(received) == sorted(feed.fed) and len(received) > 100
    assert seqs == list(range(1, len(seqs) + 1))
    assert all(r["level"] in ("INFO", "DEBUG") for r in history.of("log"))


async def test_ws_broadcaster_health_and_metrics_endpoints(tmp_path: Path) -> None:
    spec = load_target(TARGETS_DIR / "ws_broadcaster.yaml")
    async with Target(spec, tmp_path, History()) as target, aiohttp.ClientSession() as session:
        async with session.get(target.http_url("/healthz")) as response:
            assert response.status == 200 and (await response.json())["status"] == "ok"
        async with session.get(target.http_url("/metrics")) as response:
            assert response.status == 200 and "broadcaster_clients 0" in await response.text()
        async with session.get(target.http_url("/elsewhere")) as response:
            assert response.status == 404


# ---------------------------------------------------------------------------------------------
# The feed on its own


async def test_feed_is_bounded_and_writes_storagenode_lines(tmp_path: Path) -> None:
    history = History()
    feed = Feed(bundled_monitor(), tmp_path, history, rate=5000, rng=random.Random(5), max_events=120)
    await feed.start()
    await wait_until(lambda: not feed.running, timeout=3, what="the feed to stop by itself")
    await feed.stop()
    assert len(feed.fed) == 120 and len(set(feed.fed)) == 120 and feed.done
    assert all(i.startswith(f"F{feed.run_token}-") for i in feed.fed)
    lines = [line for node in ("n1", "n2") for line in (tmp_path / f"{node}.log").read_text().splitlines()]
    parsed = [parse_line(line) for line in lines]
    assert all(p is not None and p.message in ("uploaded", "downloaded") for p in parsed)
    assert sorted(p.fields["Piece ID"] for p in parsed if p is not None) == sorted(feed.fed)
    assert len((tmp_path / "n1.log").read_text().splitlines()) == 60  # round-robin
    assert sum(len(r["ids"]) for r in history.of("feed")) == 120


async def test_feed_rate_and_fraction_carry(tmp_path: Path) -> None:
    feed = Feed(bundled_monitor(), tmp_path, History(), rate=25, rng=random.Random(2))  # 0.5 a tick
    await feed.start()
    await asyncio.sleep(0.5)
    feed.set_rate(0)
    await asyncio.sleep(0.1)
    count = len(feed.fed)
    await asyncio.sleep(0.2)
    await feed.stop()
    assert 7 <= count <= 16 and len(feed.fed) == count
    with pytest.raises(FeedError):
        feed.set_rate(-1)


async def test_feed_for_a_target_without_one_does_nothing(tmp_path: Path) -> None:
    spec = script_target(tmp_path)
    feed = Feed(spec, tmp_path, History(), rate=100, rng=random.Random(0))
    await feed.start()
    assert feed.write(10) == []
    await feed.stop()
    assert feed.fed == [] and not feed.enabled


def test_history_records_are_json(tmp_path: Path) -> None:
    history = History(tmp_path / "h.jsonl")
    Feed(bundled_monitor(), tmp_path, history, rate=0, rng=random.Random(0)).write(3)
    history.close()
    assert [json.loads(line)["kind"] for line in (tmp_path / "h.jsonl").read_text().splitlines()] == ["feed"] * 2
