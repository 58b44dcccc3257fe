"""Load: Locust's WebSocket users as real Locust processes against the real monitor behind a real
toxiproxy-server, the stats they fold into the History, the load checker, the loaded scenarios (and
the mutants they catch), ``wschaos load``, and stopping Locust on every way out.

Locust is never imported here: it runs only as a subprocess (``python -m locust``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp import web

from harness.checkers import CheckContext, check_load, run_checks
from harness.history import History
from harness.load import (
    LOCUSTFILE,
    ConnectionFolder,
    LocustRun,
    Reports,
    StatsHistoryReader,
    histogram_quantile,
    locust_command,
    summarize,
)
from harness.loadspec import LoadError, LoadSpec, parse_mix
from harness.loadtest import stage
from harness.runner import run_scenario
from harness.scenario import ScenarioError, discover, load, parse
from harness.targetspec import bundled_monitor
from harness.toxiproxy import running_toxiproxy
from tests.mutants.matrix import mutant_target

# Locust processes are heavy: the load tests take turns on one worker (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("load")

ROOT = Path(__file__).resolve().parent.parent
WSCHAOS = Path(sys.executable).with_name("wschaos")


# ---------------------------------------------------------------------------------------------
# Without processes: bounds, commands, Locust's files, the checker


def test_locust_is_never_imported_by_the_harness() -> None:
    code = (
        "import sys, wschaos.cli, harness.runner, harness.load, harness.checkers, harness.scenario\n"
        "print(sorted(m for m in ('locust', 'gevent') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"users": 5001}, "users must be 0 to 5000"),
        ({"spawn_rate": 0}, "spawn rate must be above 0"),
        ({"spawn_rate": 5000}, "spawn rate must be above 0"),
        ({"time_s": 0}, "time must be 1 to 3600"),
        ({"time_s": 7200}, "time must be 1 to 3600"),
        ({"processes": 64}, "processes must be 1 to 16"),
        ({"mix": {"steady": 0}}, "at least one above 0"),
        ({"mix": {"sleeper": 1}}, "unknown behaviour"),
    ],
)
def test_load_is_bounded_in_users_rate_and_time(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(LoadError, match=problem):
        LoadSpec(**{"users": 10, "spawn_rate": 5, "time_s": 10, **kwargs})


def test_parse_mix() -> None:
    assert parse_mix("steady=3, churner=1") == {"steady": 3.0, "churner": 1.0}
    with pytest.raises(LoadError, match="NAME=WEIGHT"):
        parse_mix("steady")


def test_locust_commands_are_headless_bounded_and_on_loopback(tmp_path: Path) -> None:
    spec = LoadSpec(users=50, spawn_rate=25, time_s=12.5, processes=2)
    reports = Reports(tmp_path)
    local = locust_command(spec, "http://127.0.0.1:9", reports, master_port=5600)
    assert local[1:5] == ["-m", "locust", "-f", str(LOCUSTFILE)]
    for flag, value in (("-u", "50"), ("-r", "25"), ("-t", "13s"), ("--processes", "2"),
                        ("--master-bind-host", "127.0.0.1"), ("--master-port", "5600")):  # fmt: skip
        assert local[local.index(flag) + 1] == value
    assert {"--headless", "--csv-full-history", "--json-file", "--html", "--csv"} <= set(local)
    master = locust_command(spec, "http://127.0.0.1:9", reports, role="master", master_port=5600, expect_workers=2)
    assert "--processes" not in master and master[master.index("--master-bind-host") + 1] == "127.0.0.1"
    assert master[master.index("--expect-workers") + 1] == "2"
    worker = locust_command(spec, "", reports, role="worker", master_port=5600)
    assert worker[-5:] == ["--worker", "--master-host", "127.0.0.1", "--master-port", "5600"]


HEADER = (
    "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,"
    "Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,"
    "Total Min Response Time,Total Max Response Time,Total Average Content Size\n"
)


def history_row(ts: int, users: int, name: str, rps: float, p50: str, p99: str, count: int, fails: int,
                size: float = 0.0) -> str:  # fmt: skip
    kind = "" if name == "Aggregated" else "WS"
    return f"{ts},{users},{kind},{name},{rps},0.0,{p50},1,1,1,1,1,1,{p99},1,1,1,{count},{fails},1,1.0,0,9,{size}\n"


def test_stats_history_reader_gives_each_completed_second(tmp_path: Path) -> None:
    path = tmp_path / "locust_stats_history.csv"
    first = history_row(1, 0, "Aggregated", 0, "N/A", "N/A", 0, 0)
    second = (history_row(2, 20, "log_entry_batch", 150.5, "4", "40", 300, 0, 900.0)
              + history_row(2, 20, "seq gap", 0.5, "0", "0", 2, 2, 3.5)
              + history_row(2, 20, "Aggregated", 151.0, "4", "40", 302, 2))  # fmt: skip
    path.write_text(HEADER + first + second[:40])  # the second second is still being written
    reader = StatsHistoryReader(path)
    assert reader.read() == [{"ts": 1, "users": 0, "rps": 0.0, "p50": None, "p99": None, "requests": 0, "failures": 0,
                              "batches": 0, "gaps": 0, "gap_events": 0}]  # fmt: skip
    assert reader.read() == []
    path.write_text(HEADER + first + second)
    (sample,) = reader.read()
    assert sample == {"ts": 2, "users": 20, "rps": 150.5, "p50": 4.0, "p99": 40.0, "requests": 302, "failures": 2,
                      "batches": 300, "gaps": 7, "gap_events": 2}  # fmt: skip


def test_summary_from_locusts_json_report() -> None:
    entries = [
        {"name": "log_entry_batch", "num_requests": 100, "num_failures": 0, "start_time": 10.0,
         "last_request_timestamp": 20.0, "max_response_time": 80.4, "total_content_length": 1000,
         "response_times": {"2": 50, "5": 40, "30": 9, "80": 1}},
        {"name": "seq gap", "num_requests": 2, "num_failures": 2, "start_time": 12.0,
         "last_request_timestamp": 15.0, "total_content_length": 5, "response_times": {"0": 2}},
        {"name": "connect", "num_requests": 12, "num_failures": 1, "start_time": 10.0,
         "last_request_timestamp": 19.0, "total_content_length": 0, "response_times": {"3": 12}},
    ]  # fmt: skip
    summary = summarize(entries, [])
    assert summary["batches"] == 100 and summary["rps"] == 10.0 and summary["duration_s"] == 10.0
    assert (summary["p50"], summary["p90"], summary["p99"]) == (2.0, 5.0, 30.0)
    assert (summary["gaps"], summary["gap_events"], summary["failures"], summary["requests"]) == (5, 2, 3, 114)
    assert (summary["connects"], summary["connect_failures"]) == (12, 1)
    assert histogram_quantile({}, 0.5) is None


def locust_history(final: dict[str, Any] | None = None, cpu: float = 20.0) -> History:
    history = History()
    history.record("locust", phase="sample", role="local", users=10, rps=50.0, p50=3.0, p99=20.0, requests=500,
                   failures=0, batches=480, gaps=0, gap_events=0, cpu={"1": cpu}, cpu_max=cpu)  # fmt: skip
    if final is not None:
        base = {"requests": 1000, "failures": 0, "batches": 950, "rps": 95.0, "p50": 3.0, "p90": 9.0, "p99": 30.0,
                "gaps": 0, "gap_events": 0, "errors": [], "peak_users": 10}  # fmt: skip
        history.record("locust", phase="final", role="local", **{**base, **final})
    return history


def test_load_checker_passes_a_run_that_held() -> None:
    verdict = check_load(CheckContext(history=locust_history({})), {"p99_ms": 100})
    assert verdict.status == "pass", verdict.summary
    assert verdict.figures["batches"] == 950 and verdict.figures["peak_users"] == 10


@pytest.mark.parametrize(
    "final, options, words",
    [
        ({"gaps": 4, "gap_events": 1}, {}, "missed 4 batches in 1 seq gaps"),
        ({"failures": 30, "errors": [{"name": "disconnect", "error": "closed", "occurrences": 30}]},
         {"max_failure_ratio": 0.01}, "30 of 1000 Locust requests failed"),
        ({"p99": 700.0}, {"p99_ms": 500}, "p99 700 ms over the limit of 500 ms"),
        ({"batches": 0}, {}, "received no broadcasts"),
    ],
)  # fmt: skip
def test_load_checker_fails_with_the_reason(final: dict[str, Any], options: dict[str, Any], words: str) -> None:
    verdict = check_load(CheckContext(history=locust_history(final)), options)
    assert verdict.status == "fail" and words in verdict.summary, verdict.summary


def test_load_checker_says_when_the_users_were_the_bottleneck() -> None:
    verdict = check_load(CheckContext(history=locust_history({"p99": 900.0}, cpu=99.0)), {"p99_ms": 500})
    assert (verdict.status, verdict.unknown_reason) == ("unknown", "unreliable") and "99% CPU" in verdict.summary


def test_load_checker_fails_when_no_load_ran() -> None:
    verdict = check_load(CheckContext(history=History()), {})
    assert verdict.status == "fail" and "never ran" in verdict.summary


def test_load_checker_uses_the_last_sample_of_a_run_cut_short() -> None:
    history = locust_history()
    history.record("locust", phase="final", role="local", error="Locust wrote no JSON report")
    (verdict,) = run_checks(CheckContext(history=history), {"load": {}})
    assert verdict.status == "pass" and verdict.figures["batches"] == 480


def test_connection_events_are_recorded_when_they_happened(tmp_path: Path) -> None:
    history = History()
    now = time.time()
    lines = [
        {"user": "churner-7-1", "event": "connect", "w": now - 0.5, "resume": False},
        {"user": "churner-7-1", "event": "close", "w": now - 0.1, "code": 1000, "by": "client", "reason": "x"},
        {"user": "steady-7-2", "event": "connect", "w": now - 0.3, "resume": False},
    ]
    (tmp_path / "connections-7.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines) + '{"user": "half')
    folder = ConnectionFolder(tmp_path, history)
    folder.fold()
    connect, close, _ = history.records
    assert (connect["kind"], connect["client"], connect["cohort"]) == ("connect", "load-churner-7-1", "load")
    assert close["kind"] == "close" and close["code"] == 1000 and close["w"] == now - 0.1
    assert abs((close["t"] - connect["t"]) - 0.4) < 0.01  # event times, not when they were folded
    folder.close_all()
    assert history.records[-1]["client"] == "load-steady-7-2" and history.records[-1]["reason"] == "Locust stopped"
    assert CheckContext(history=history).connected_at("load-churner-7-1", connect["t"] + 0.2)


def test_scenario_load_block_and_load_step() -> None:
    raw = {
        "name": "x", "cohorts": [{"name": "a", "clients": 1}], "checks": {"load": {}},
        "load": {"users": 30, "mix": {"steady": 1}}, "timeout": 40,
        "method": [{"load": {"users": 60, "spawn_rate": 30}}],
    }  # fmt: skip
    scenario = parse(raw, "x.yaml")
    assert scenario.load is not None
    assert (scenario.load.users, scenario.load.spawn_rate, scenario.load.time_s) == (30, 30.0, 40)
    assert scenario.load.mix_text() == "steady=1,switcher=0,reconnector=0,churner=0"
    with pytest.raises(ScenarioError, match="a load step needs a load block"):
        parse({k: v for k, v in raw.items() if k != "load"}, "x.yaml")
    with pytest.raises(ScenarioError, match=r"load\.users"):
        parse({**raw, "load": {"users": 100000}}, "x.yaml")


# ---------------------------------------------------------------------------------------------
# Real Locust processes


def alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
    return out


def final_of(history: History) -> dict[str, Any]:
    return next(r for r in history.records if r["kind"] == "locust" and r.get("phase") == "final")


@pytest.mark.integration
async def test_every_behaviour_against_the_monitor_through_toxiproxy(tmp_path: Path) -> None:
    spec = LoadSpec(users=24, spawn_rate=24, time_s=8, reconnect_every=2,
                    mix={"steady": 3, "switcher": 1, "reconnector": 1, "churner": 1})  # fmt: skip
    async with stage(bundled_monitor(), tmp_path, feed_rate=200) as staged:
        run = LocustRun(spec, staged.host, tmp_path, history=staged.history, track_connections=True)
        async with run:
            await run.ramp_up()
            assert await run.wait(spec.time_s + 20)
        pids = list(run._tracked)
    assert run.returncode == 0 and not alive(pids)
    summary = run.summary
    assert summary is not None
    assert summary["batches"] > 24 * 8, summary
    assert summary["failures"] == 0 and summary["gaps"] == 0, summary["errors"]
    assert summary["connects"] > 30  # churners and reconnectors come back
    names = {e["name"] for e in json.loads(run.reports.json.read_text())}
    assert {"connect", "log_entry_batch", "set_view"} <= names
    for report in (run.reports.html, run.reports.json, tmp_path / "locust_stats.csv", run.reports.history_csv):
        assert report.stat().st_size > 0, report
    samples = [r for r in staged.history.records if r["kind"] == "locust" and r["phase"] == "sample"]
    assert max(s["users"] for s in samples) == 24 and any(s["rps"] > 0 for s in samples)
    load_clients = {r["client"] for r in staged.history.records if r["kind"] == "connect" and r["cohort"] == "load"}
    assert len(load_clients) == 24


class GappyBroadcaster:
    """A WebSocket server speaking the monitor's protocol that skips seq 5 and 6, replays what a client
    missed when it resumes (``?epoch=&since=``), and remembers the query of each connection."""

    def __init__(self) -> None:
        self.queries: list[dict[str, str]] = []
        self.seq = 0
        self.sent: list[tuple[int, str]] = []
        self.clients: set[web.WebSocketResponse] = set()

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=5)
        await ws.prepare(request)
        self.queries.append(dict(request.query))
        await ws.send_json({"type": "init", "epoch": "E1", "seq": self.seq, "nodes": ["n1"]})
        since = request.query.get("since", "")
        if since.isdigit():
            await ws.send_json({"type": "resumed", "epoch": "E1"})
            await self.replay(ws, int(since))
        self.clients.add(ws)  # no await since the replay caught up: no batch falls in between
        try:
            async for _ in ws:
                pass
        finally:
            self.clients.discard(ws)
        return ws

    async def replay(self, ws: web.WebSocketResponse, since: int) -> None:
        while pending := [(seq, message) for seq, message in self.sent if seq > since]:
            for seq, message in pending:
                await ws.send_str(message)
                since = seq

    async def all_connected(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.clients) < count:  # noqa: ASYNC110 (the handler adds them)
                await asyncio.sleep(0.05)

    async def broadcast(self, count: int) -> None:
        for _ in range(count):
            await asyncio.sleep(0.05)
            self.seq += 3 if self.seq == 4 else 1
            message = json.dumps({"type": "log_entry_batch", "seq": self.seq, "sent_at": time.time(), "events": []},
                                 separators=(",", ":"))  # fmt: skip
            self.sent.append((self.seq, message))
            for ws in list(self.clients):
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_str(message)


@pytest.fixture
async def gappy() -> AsyncIterator[tuple[GappyBroadcaster, str]]:
    server = GappyBroadcaster()
    app = web.Application()
    app.router.add_get("/ws", server.handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.integration
async def test_seq_gaps_are_failures_and_reconnects_resume(tmp_path: Path, gappy: tuple[GappyBroadcaster, str]) -> None:
    server, host = gappy
    history = History()
    spec = LoadSpec(users=2, spawn_rate=10, time_s=6, mix={"reconnector": 1}, reconnect_every=1)
    async with LocustRun(spec, host, tmp_path, history=history) as run:
        await run.ramp_up()
        await server.all_connected(2)
        await server.broadcast(60)
        assert await run.wait(30)
    summary = final_of(history)
    assert summary["gaps"] == 4 and summary["gap_events"] == 2, summary  # seq 5 and 6, for each user
    assert any(e["name"] == "seq gap" for e in summary["errors"])
    resumed = [q for q in server.queries if "since" in q]
    assert resumed and all(q["epoch"] == "E1" and q["since"].isdigit() for q in resumed)
    verdict = check_load(CheckContext(history=history), {})
    assert verdict.status == "fail" and "missed 4 batches" in verdict.summary


@pytest.mark.integration
async def test_cancelling_the_harness_stops_every_locust_process(tmp_path: Path) -> None:
    """Ctrl-C and SIGTERM cancel the harness's task: Locust (here with --processes 2) is stopped by pid,
    master and workers, and still leaves its JSON report."""
    spec = LoadSpec(users=4, spawn_rate=4, time_s=120, processes=2, mix={"steady": 1})
    async with stage(bundled_monitor(), tmp_path, feed_rate=50) as staged:
        run = LocustRun(spec, staged.host, tmp_path / "load", history=staged.history)

        async def harness() -> None:
            async with run:
                await run.ramp_up()
                await run.wait(120)

        task = asyncio.create_task(harness())
        async with asyncio.timeout(30):
            while not run.samples or run.samples[-1]["users"] < 4:  # noqa: ASYNC110 (Locust's CSV, a file)
                await asyncio.sleep(0.1)
        pids = [p.pid for p in psutil.Process(run.pid).children(recursive=True)] + [run.pid]  # type: ignore[arg-type]
        assert len(pids) == 3  # the master and two forked workers
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 15
    assert not alive(pids)
    assert final_of(staged.history).get("batches", 0) > 0


@pytest.mark.integration
async def test_master_and_two_workers_on_loopback(tmp_path: Path) -> None:
    """Locust's own distribution: a master that expects two workers, and two worker processes."""
    spec = LoadSpec(users=20, spawn_rate=20, time_s=8, mix={"steady": 3, "switcher": 1})
    async with stage(bundled_monitor(), tmp_path, feed_rate=100) as staged:
        master = LocustRun(spec, staged.host, tmp_path / "master", history=staged.history, role="master",
                           expect_workers=2)  # fmt: skip
        workers = [LocustRun(spec, staged.host, tmp_path / f"worker{i}", role="worker", master_port=master.master_port)
                   for i in range(2)]  # fmt: skip
        async with contextlib.AsyncExitStack() as stack:
            for locust in (master, *workers):
                await stack.enter_async_context(locust)
            await master.ramp_up()
            assert await master.wait(spec.time_s + 30)
            for worker in workers:
                assert await worker.wait(15), "a worker did not stop when its master quit"
    summary = master.summary
    assert summary is not None and summary["peak_users"] == 20
    assert summary["batches"] > 20 * 5 and summary["failures"] == 0 and summary["gaps"] == 0, summary
    log = master.reports.log.read_text()
    assert "2 workers connected" in log and "to 2 ready workers" in log, log[-2000:]
    assert all(w.returncode == 0 for w in workers)
    assert all("Got quit message from master" in w.reports.log.read_text() for w in workers)


def wschaos(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([str(WSCHAOS), *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, **kwargs)  # fmt: skip


@pytest.mark.integration
def test_wschaos_load_writes_locusts_reports(tmp_path: Path) -> None:
    proc = wschaos("load", "--users", "10", "--spawn-rate", "10", "--time", "5", "--feed-rate", "100",
                   "--out", str(tmp_path))  # fmt: skip
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    run_dir = (tmp_path / "latest").resolve()
    for name in ("locust.html", "locust.json", "locust_stats.csv", "locust_stats_history.csv", "load.json",
                 "history.jsonl.gz", "toxiproxy.log"):  # fmt: skip
        assert (run_dir / name).exists(), name
    result = json.loads((run_dir / "load.json").read_text())
    assert result["verdict"]["status"] == "pass" and result["summary"]["peak_users"] == 10
    assert "batches received" in out and "PASS" in out


@pytest.mark.integration
def test_sigterm_to_wschaos_load_stops_locust_toxiproxy_and_the_target(tmp_path: Path) -> None:
    proc = wschaos("load", "--users", "5", "--spawn-rate", "5", "--time", "120", "--processes", "2",
                   "--out", str(tmp_path))  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            children = psutil.Process(proc.pid).children(recursive=True)
            if sum("locust" in " ".join(c.cmdline()) for c in children if c.is_running()) >= 3:
                break
            assert time.monotonic() < deadline and proc.poll() is None, "Locust did not start"
            time.sleep(0.2)
        time.sleep(2)
        pids = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, out
    assert "interrupted" in out
    assert len(pids) >= 5  # toxiproxy-server, the monitor, Locust's master and two workers
    assert not alive(pids)


# ---------------------------------------------------------------------------------------------
# The loaded scenarios: they hold on the monitor and catch broken servers

LOADED = ["mass_drop_loaded", "network_cut_loaded", "slow_consumer_loaded"]
# (mutant, loaded scenario, the checker that must catch it)
CAUGHT_UNDER_LOAD = [
    ("error_log_on_disconnect", "mass_drop_loaded", "no_error_logs"),
    ("resume_silent_gap", "mass_drop_loaded", "load"),  # the reconnecting Locust users find the gaps
    ("heartbeat_off", "network_cut_loaded", "eviction"),
    ("gather_no_timeout", "slow_consumer_loaded", "delivery"),
]


async def run_loaded(name: str, target: Any, out: Path, seed: int) -> Any:
    async with running_toxiproxy(out) as toxiproxy:
        return await run_scenario(load(discover([name])[0]), target, toxiproxy, out / name, seed)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("name", LOADED)
async def test_loaded_scenario_holds_on_the_monitor(name: str, tmp_path: Path) -> None:
    result = await run_loaded(name, bundled_monitor(), tmp_path, seed=11)
    failed = [f"{v.checker}: {v.summary}" for v in result.verdicts if v.status != "pass"]
    assert result.status == "pass", result.error or failed
    load_verdict = next(v for v in result.verdicts if v.checker == "load")
    assert load_verdict.figures["batches"] > 0 and load_verdict.figures["gaps"] == 0


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.mutants
@pytest.mark.parametrize("mutant, name, checker", CAUGHT_UNDER_LOAD)
async def test_loaded_scenario_catches_the_mutant(mutant: str, name: str, checker: str, tmp_path: Path) -> None:
    result = await run_loaded(name, mutant_target(mutant), tmp_path, seed=11)
    failed = [v.checker for v in result.verdicts if v.status == "fail"]
    assert result.status == "fail", f"{mutant} survived {name}: {result.error or result.status}"
    assert checker in failed, f"{mutant} was caught by {failed}, expected {checker}"
