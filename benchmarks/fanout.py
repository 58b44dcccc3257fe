"""Fan-out throughput, delivery latency and isolation of three broadcast designs, side by side in one run.

The designs (see ``fanout_server.py``): the monitor's own hub and stream behind its real aiohttp
handler; ``websockets.broadcast()``; and an aiohttp ``asyncio.gather`` of ``send_json`` per client.
Each trial starts one server pinned to core 0 and lean client processes pinned to core 1
(``fanout_clients.py``), then has the server broadcast the same ~1 KiB JSON message a fixed number
of times and waits until every healthy client has received every broadcast, or a bound.

- **Throughput** (``--clients``, default 100, 1000 and 5000): broadcasts back to back, one event-loop
  turn between them. Client-messages per second are the healthy clients' messages divided by the
  time from the first broadcast to the last message received. Latency here is mostly queueing
  behind the backlog the server builds.
- **Isolation** (``--isolation-clients``, default 1000, at ``--rate`` broadcasts a second): fault-free,
  with 10% of clients stalled (small receive buffer, never read again), and with 10% held to
  ``--slow-rate`` KB/s by a Toxiproxy ``bandwidth`` toxic. Healthy clients' p99 latency is compared
  with the same design's fault-free p99.

Client CPU above 90% of wall time means the clients, not the server, were the bottleneck: the table
says so. The kinds are interleaved within each round, and ``--rounds`` repeats the throughput trials
(the table shows the median round, by delivered rate).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from common import ROOT, append_results, free_port, pinned, quantile, table

HERE = Path(__file__).resolve().parent
KINDS = ("monitor", "websockets", "gather")
LABEL = {
    "monitor": "monitor hub",
    "websockets": "websockets.broadcast()",
    "gather": "aiohttp gather(send_json)",
}
FAULTS = ("none", "stalled", "slow")
SERVER_CORE, CLIENT_CORE = 0, 1
MAX_CLIENTS_PER_PROC = 2500


# Child processes


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process
    stderr_path: Path

    async def read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            line = await self.proc.stdout.readline()
        if not line:
            tail = self.stderr_path.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"{self.name} exited: {tail}")
        return json.loads(line)

    async def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        await self.proc.stdin.drain()

    async def ask(self, text: str, timeout: float) -> dict[str, Any]:
        await self.send(text)
        return await self.read(timeout)

    async def stop(self, timeout: float = 10.0) -> None:
        """End of input first, then SIGTERM by pid, then SIGKILL by pid."""
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        for signal_it in (self.proc.terminate, self.proc.kill):
            try:
                async with asyncio.timeout(timeout):
                    await self.proc.wait()
                return
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    signal_it()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self.proc.wait()


async def spawn(name: str, argv: list[str], core: int, workdir: Path) -> Child:
    stderr_path = workdir / f"{name}.stderr"
    with stderr_path.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *pinned(argv, core), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, limit=2**26,
        )  # fmt: skip
    return Child(name, proc, stderr_path)


# One trial


@dataclass
class Trial:
    kind: str
    clients: int
    fault: str
    broadcasts: int
    rate: float
    sent: int = 0
    connected: int = 0
    healthy: int = 0
    delivered: int = 0  # log_entry_batch messages received by healthy clients during the run
    span: float = 0.0  # first broadcast to last message received by a healthy client
    issue_seconds: float = 0.0
    complete: bool = False
    latencies: list[float] = field(default_factory=list)
    server_cpu: float = 0.0  # share of one core, over the trial
    server_cpu_seconds: float = 0.0
    client_cpu: float = 0.0
    rss_before: int = 0
    rss_idle: int = 0
    rss_peak: int = 0
    faulty_closed: int = 0
    faulty_left: int | None = None  # faulty clients still registered at the end (monitor only)
    server_stats: dict[str, Any] = field(default_factory=dict)
    timed_out: bool = False
    error: str = ""
    load: float = 0.0  # the machine's 1-minute load average when the trial started
    first_sent_at: float = 0.0
    samples: list[tuple[float, float]] = field(default_factory=list)  # (receive wall time, latency)
    faulty_gone_at: float | None = None  # seconds after the first broadcast: half the faulty cohort's
    # connections to the server had closed (read from the server's sockets)

    def worst_window(self, width: float = 1.0) -> tuple[float, float]:
        """(start, p99) of the ``width``-second window with the highest p99, seconds after the first broadcast."""
        buckets: dict[int, list[float]] = {}
        for at, lat in self.samples:
            buckets.setdefault(int((at - self.first_sent_at) // width), []).append(lat)
        worst = max(buckets.items(), key=lambda kv: quantile(kv[1], 0.99), default=(0, []))
        return worst[0] * width, quantile(worst[1], 0.99)

    @property
    def rate_per_s(self) -> float:
        return self.delivered / self.span if self.span > 0 else 0.0

    @property
    def per_cpu_second(self) -> float:
        """Client-messages delivered per second of server CPU: the rate on a core of its own."""
        return self.delivered / self.server_cpu_seconds if self.server_cpu_seconds > 0 else 0.0

    def p(self, q: float) -> float:
        return quantile(self.latencies, q)


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def run_trial(
    kind: str, clients: int, fault: str, broadcasts: int, rate: float, args: argparse.Namespace, workdir: Path,
    toxiproxy: Any = None, cohort: bool = False,
) -> Trial:  # fmt: skip
    """One server, its clients, ``broadcasts`` broadcasts. With ``cohort`` (the isolation trials), 10% of
    the clients are a separate process that is ``fault`` (stalled, slow, or healthy for ``none``) and is
    not measured, so every trial measures the same 90% under the same load."""
    t = Trial(kind, clients, fault, broadcasts, rate, load=os.getloadavg()[0])
    faulty = clients // 10 if cohort else 0
    t.healthy = clients - faulty
    port = free_port()
    server_argv = [
        sys.executable, str(HERE / "fanout_server.py"), "--kind", kind, "--port", str(port),
        "--heartbeat", str(args.heartbeat), "--max-seconds", "900",
    ]  # fmt: skip
    if args.profile and fault == "none":
        server_argv += ["--profile", str(workdir / f"{kind}-{clients}.prof")]
    children: list[Child] = []
    spy: Child | None = None  # stops by itself when the server exits, and writes its samples then
    server = await spawn(f"server-{kind}", server_argv, SERVER_CORE, workdir)
    children.append(server)
    proxy_name = None
    try:
        hello = await server.read(30)
        t.rss_before = hello["rss"]
        ps_server = psutil.Process(server.proc.pid)
        if args.py_spy and fault == "none":
            out = Path(args.py_spy) / f"{kind}-{clients}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            spy_argv = [binary, "record", "--pid", str(server.proc.pid), "--format", "raw", "--rate", "250",
                        "--nonblocking", "-o", str(out)]  # fmt: skip
            spy = await spawn(f"py-spy-{kind}", spy_argv, CLIENT_CORE, workdir)
        nprocs = max(args.client_procs, -(-t.healthy // MAX_CLIENTS_PER_PROC))
        healthy: list[Child] = []
        for i, count in enumerate(split(t.healthy, nprocs)):
            argv = [
                sys.executable, str(HERE / "fanout_clients.py"), "--port", str(port), "--clients", str(count),
                "--cohort", "healthy", "--sample-every", str(args.sample_every), "--max-seconds", "900",
            ]  # fmt: skip
            healthy.append(await spawn(f"healthy-{i}", argv, CLIENT_CORE, workdir))
        children += healthy
        bad: Child | None = None
        if faulty:
            target_port = port
            if fault == "slow":
                proxy_name = f"fanout-{kind}-{os.getpid()}"
                proxy = await toxiproxy.create_proxy(proxy_name, f"127.0.0.1:{port}")
                await toxiproxy.add_toxic(proxy, "slow", "bandwidth", "downstream", attributes={"rate": args.slow_rate})
                target_port = proxy.listen_port
            argv = [
                sys.executable, str(HERE / "fanout_clients.py"), "--port", str(target_port), "--clients",
                str(faulty), "--cohort", "healthy" if fault == "none" else fault, "--max-seconds", "900",
            ]  # fmt: skip
            bad = await spawn(f"{fault}-cohort", argv, CLIENT_CORE, workdir)
            children.append(bad)
        clients_procs = [*healthy, *([bad] if bad else [])]
        readies = await asyncio.gather(*(c.read(120) for c in clients_procs))
        t.connected = sum(r["ready"] for r in readies)
        await asyncio.sleep(1.0)  # let the greeting messages settle
        stats0 = (await server.ask('{"cmd": "stats"}', 30))["stats"]
        t.rss_idle = stats0["rss"]
        t.rss_peak = stats0["rss"]

        marks0 = [(await c.ask("mark", 30))["mark"] for c in healthy]
        cpu0 = sum(ps_server.cpu_times()[:2])
        mono0 = time.monotonic()
        # A design that waits on its clients may never finish: bound how long it may take.
        limit = args.limit if rate <= 0 else min(args.limit, broadcasts / rate * 1.5 + 10)
        cmd = {"cmd": "run", "count": broadcasts, "rate": rate, "limit": limit}
        wall0 = time.time()
        await server.send(json.dumps(cmd))
        want = t.healthy * broadcasts
        base = sum(m["batches"] for m in marks0)
        done: dict[str, Any] | None = None
        ends = marks0
        reading = asyncio.ensure_future(server.read(limit + 60))
        deadline = mono0 + limit + args.drain
        stall_since = None
        last_delivered = -1
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            if faulty and fault != "none" and t.faulty_gone_at is None:
                established = sum(
                    1 for c in ps_server.net_connections(kind="tcp")
                    if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
                )  # fmt: skip
                if established <= t.connected - faulty // 2:
                    t.faulty_gone_at = time.time() - wall0
            if done is None and reading.done():
                done = reading.result()["done"]
            ends = [(await c.ask("mark", 30))["mark"] for c in healthy]
            got = sum(m["batches"] for m in ends) - base
            rss = psutil.Process(server.proc.pid).memory_info().rss
            t.rss_peak = max(t.rss_peak, rss)
            target = want if done is None else t.healthy * done["sent"]
            if done is not None and got >= target:
                break
            # No progress for a while after the server finished: whatever is missing is not coming.
            if got != last_delivered:
                last_delivered, stall_since = got, time.monotonic()
            elif done is not None and stall_since is not None and time.monotonic() - stall_since > 5:
                break
        cpu1 = sum(ps_server.cpu_times()[:2])
        mono1 = time.monotonic()
        if done is None:
            try:
                done = (await asyncio.wait_for(reading, 30))["done"]
            except TimeoutError:
                t.error = "the server did not finish its broadcasts"
                done = {"sent": 0, "first_sent_at": time.time(), "issue_seconds": limit, "timed_out": True}
        t.sent = done["sent"]
        t.timed_out = bool(done.get("timed_out"))
        t.issue_seconds = done["issue_seconds"]
        t.delivered = sum(m["batches"] for m in ends) - base
        last = max(m["last_frame_at"] for m in ends)
        t.span = max(1e-9, last - done["first_sent_at"])
        t.complete = t.delivered >= t.healthy * t.sent and t.sent == broadcasts
        t.server_cpu_seconds = cpu1 - cpu0
        t.server_cpu = (cpu1 - cpu0) / (mono1 - mono0)
        t.client_cpu = sum(e["cpu"] - s["cpu"] for s, e in zip(marks0, ends, strict=True)) / (mono1 - mono0)
        if bad is not None:
            t.faulty_closed = (await bad.ask("mark", 30))["mark"]["closed_by_server"]
        stats1 = (await server.ask('{"cmd": "stats"}', 30))["stats"]
        t.server_stats = stats1
        if kind == "monitor" and faulty and fault != "none":
            t.faulty_left = stats1["clients"] - t.healthy
        reports = []
        for c in healthy:
            await c.send("stop")
            reports.append(await c.read(60))
        t.first_sent_at = done["first_sent_at"]
        t.samples = [(at, lat) for r in reports for at, lat in r.get("samples", [])]
        t.latencies = [lat for _, lat in t.samples]
    except (RuntimeError, TimeoutError, OSError) as exc:
        t.error = f"{type(exc).__name__}: {exc}"
    finally:
        for c in reversed(children):
            await c.stop()
        if spy is not None:
            await spy.stop(timeout=20)
        if proxy_name is not None and toxiproxy is not None:
            with contextlib.suppress(Exception):
                await toxiproxy.delete_proxy(proxy_name)
    return t


# Rendering


def ms(value: float) -> str:
    return "n/a" if value != value else f"{value * 1000:.1f}"


def kib(value: float) -> str:
    return f"{value / 1024:,.1f}"


def throughput_table(trials: list[Trial]) -> str:
    rows = []
    base = {t.clients: t for t in trials if t.kind == "websockets"}
    for t in trials:
        ref = base.get(t.clients)
        ratio = t.rate_per_s / ref.rate_per_s if ref and ref.rate_per_s else float("nan")
        cpu_ratio = t.per_cpu_second / ref.per_cpu_second if ref and ref.per_cpu_second else float("nan")
        evictions = t.server_stats.get("evictions") or {}
        rows.append([
            f"{t.clients:,}", LABEL[t.kind], f"{t.sent:,} of {t.broadcasts:,}", f"{t.rate_per_s:,.0f}",
            f"{ratio:.2f}x", f"{t.per_cpu_second:,.0f}", f"{cpu_ratio:.2f}x",
            f"{ms(t.p(0.5))} / {ms(t.p(0.99))}", f"{t.issue_seconds:.2f} / {t.span:.2f}",
            f"{t.server_cpu:.0%}", f"{t.client_cpu:.0%}" + (" SATURATED" if t.client_cpu > 0.9 else ""),
            "yes" if t.complete else "NO", kib((t.rss_idle - t.rss_before) / max(1, t.connected)),
            ", ".join(f"{k} {v}" for k, v in evictions.items()) or "-",
        ])  # fmt: skip
    headers = [
        "clients", "design", "broadcasts", "client-msgs/s", "vs websockets", "per server CPU-s", "vs websockets",
        "latency p50 / p99 ms",
        "issue / delivery s", "server CPU", "client CPU", "all delivered", "RSS KiB per idle client",
        "evictions",
    ]  # fmt: skip
    return table(headers, rows)


def isolation_table(trials: list[Trial]) -> str:
    rows = []
    clean = {t.kind: t.p(0.99) for t in trials if t.fault == "none"}
    for t in trials:
        base = clean.get(t.kind, float("nan"))
        ratio = t.p(0.99) / base if base == base and base > 0 else float("nan")
        faulty = t.clients - t.healthy if t.fault != "none" else 0
        if t.kind == "monitor" and faulty:
            gone = f"{faulty - (t.faulty_left or 0)} of {faulty} evicted"
            ev = t.server_stats.get("evictions") or {}
            gone += " (" + (", ".join(f"{k} {v}" for k, v in ev.items()) or "none") + ")"
        elif faulty:
            gone = f"{t.faulty_closed} of {faulty} closed"
        else:
            gone = "-"
        worst_at, worst_p99 = t.worst_window()
        gone_at = "-" if t.faulty_gone_at is None else f"{t.faulty_gone_at:.1f}"
        rows.append([
            LABEL[t.kind], t.fault, f"{t.sent:,} of {t.broadcasts:,}",
            f"{t.delivered:,} of {t.healthy * t.broadcasts:,}", f"{ms(t.p(0.5))} / {ms(t.p(0.99))}",
            f"{ratio:.2f}x", f"{ms(worst_p99)} at {worst_at:.0f} s", gone_at, f"{t.server_cpu:.0%}",
            f"{t.client_cpu:.0%}" + (" SATURATED" if t.client_cpu > 0.9 else ""), f"{t.rss_peak / 2**20:,.0f}", gone,
        ])  # fmt: skip
    headers = [
        "design", "10% of clients", "broadcasts sent", "healthy client-msgs received", "healthy p50 / p99 ms",
        "p99 vs fault-free", "worst 1 s p99 ms (at)", "faulty cohort gone at s", "server CPU", "client CPU",
        "server peak RSS MiB", "faulty clients",
    ]  # fmt: skip
    return table(headers, rows)


# Main


@contextlib.asynccontextmanager
async def pinned_toxiproxy(workdir: Path) -> AsyncIterator[Any]:
    """A Toxiproxy client whose server runs on the clients' core."""
    sys.path.insert(0, str(ROOT))
    from harness.toxiproxy import running_toxiproxy

    async with running_toxiproxy(workdir) as toxiproxy:
        pid = toxiproxy.server.pid if toxiproxy.server is not None else None
        if pid is not None and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > CLIENT_CORE:
            os.sched_setaffinity(pid, {CLIENT_CORE})
        yield toxiproxy


async def amain(args: argparse.Namespace) -> tuple[list[Trial], list[Trial]]:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > CLIENT_CORE:
        os.sched_setaffinity(0, {CLIENT_CORE})
    throughput: list[Trial] = []
    isolation: list[Trial] = []
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        workdir = Path(tmp)
        for n in [n for n in args.clients if n > 0]:
            broadcasts = args.broadcasts if n <= 1000 else max(100, args.broadcasts * 1000 // n)
            rounds: dict[str, list[Trial]] = {k: [] for k in args.kinds}
            for r in range(args.rounds):
                for kind in args.kinds:
                    t = await run_trial(kind, n, "none", broadcasts, 0.0, args, workdir)
                    print(f"round {r + 1}: {n} clients, {LABEL[kind]}: {t.rate_per_s:,.0f} msgs/s, "
                          f"{t.per_cpu_second:,.0f} per server CPU-s, p99 {ms(t.p(0.99))} ms, server CPU "
                          f"{t.server_cpu:.0%}, client CPU {t.client_cpu:.0%}, load {t.load:.1f} {t.error}",
                          flush=True)  # fmt: skip
                    rounds[kind].append(t)
            for kind in args.kinds:
                ordered = sorted(rounds[kind], key=lambda t: t.rate_per_s)
                throughput.append(ordered[len(ordered) // 2])
        if args.isolation_clients:
            async with pinned_toxiproxy(workdir) as toxiproxy:
                for fault in args.faults:
                    for kind in args.kinds:
                        t = await run_trial(
                            kind, args.isolation_clients, fault, args.isolation_broadcasts, args.rate, args, workdir,
                            toxiproxy, cohort=True,
                        )  # fmt: skip
                        print(f"isolation {fault}, {LABEL[kind]}: p99 {ms(t.p(0.99))} ms, "
                              f"{t.delivered:,} delivered {t.error}", flush=True)  # fmt: skip
                        isolation.append(t)
        if args.profile:
            for prof in sorted(workdir.glob("*.prof")):
                dest = Path(args.profile) / prof.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(prof.read_bytes())
    return throughput, isolation


def notes(throughput: list[Trial], isolation: list[Trial], args: argparse.Namespace) -> list[str]:
    out = [
        "client-msgs/s: log_entry_batch messages received by all healthy clients, divided by the time from the "
        "first broadcast to the last message received. 'issue' is how long the server took to make its "
        "broadcasts; 'delivery' that span. Lean clients (benchmarks/leanclient.py) in "
        f"{max(args.client_procs, 1)}+ process(es) on core {CLIENT_CORE}; each server on core {SERVER_CORE}; "
        f"SO_SNDBUF {128} KiB per client for all three designs.",
        "RSS per idle client: the server's resident memory with the clients connected and idle, minus before "
        "any client connected, divided by the clients.",
    ]
    loads = [t.load for t in throughput + isolation]
    if loads:
        out.append(
            f"The machine's 1-minute load average at the start of the trials ranged {min(loads):.1f} to "
            f"{max(loads):.1f} ({os.cpu_count()} CPUs): other work shared the machine, so wall-clock rates are "
            "noisy; 'per server CPU-s' (messages delivered per second of the server's own CPU time) is the "
            "steadier comparison."
        )
    for t in throughput + isolation:
        if t.client_cpu > 0.9:
            out.append(
                f"{t.clients} clients, {LABEL[t.kind]}, {t.fault}: the clients used {t.client_cpu:.0%} of their core; "
                "that figure measures the clients as much as the server (a lower bound for the server)."
            )
        if t.error:
            out.append(f"{t.clients} clients, {LABEL[t.kind]}, {t.fault}: {t.error}")
    if isolation:
        out.append(
            f"Isolation: {args.isolation_clients} clients, {args.isolation_broadcasts} broadcasts at {args.rate:g}/s; "
            f"'stalled' clients set SO_RCVBUF 4 KiB and stop reading after the greeting; 'slow' clients connect "
            f"through Toxiproxy with a bandwidth toxic of {args.slow_rate} KB/s downstream; in the fault-free run "
            "they are ordinary reading clients. Latency and counts are of the other 90% (the same clients in "
            "every trial, in their own process), each design compared with its own fault-free run. 'worst 1 s "
            "p99' is the p99 of the one-second window (by receive time, from the first broadcast) where it was "
            "highest; 'faulty cohort gone at' is when half of the faulty clients' connections to the server had "
            "closed, read from the server's sockets every 0.25 s."
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, nargs="+", default=[100, 1000, 5000], help="0 skips the throughput trials")
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument(
        "--broadcasts",
        type=int,
        default=2000,
        help="broadcasts per throughput trial up to 1,000 clients (scaled down above, same total)",
    )
    p.add_argument("--rounds", type=int, default=3, help="repeat the throughput trials; the median round is shown")
    p.add_argument("--isolation-clients", type=int, default=1000, help="0 skips the isolation trials")
    p.add_argument("--faults", nargs="+", choices=FAULTS, default=list(FAULTS))
    p.add_argument("--isolation-broadcasts", type=int, default=1000)
    p.add_argument("--rate", type=float, default=40.0, help="broadcasts a second in the isolation trials")
    p.add_argument("--slow-rate", type=int, default=1, help="KB/s of the slow clients")
    p.add_argument("--heartbeat", type=float, default=10.0)
    p.add_argument("--limit", type=float, default=120.0, help="seconds a server may take to make its broadcasts")
    p.add_argument("--drain", type=float, default=30.0, help="seconds to wait for delivery after that")
    p.add_argument("--client-procs", type=int, default=1, help="processes for the healthy clients (at least)")
    p.add_argument("--sample-every", type=int, default=20, help="clients decode every K-th message for latency")
    p.add_argument("--profile", default="", help="folder to write cProfile stats of each fault-free server")
    p.add_argument("--py-spy", default="", help="folder to write py-spy samples (raw) of each fault-free server")
    p.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = p.parse_args(argv)
    throughput, isolation = asyncio.run(amain(args))
    parts = []
    if throughput:
        parts.append("Throughput (back to back broadcasts, 1 KiB JSON):\n\n" + throughput_table(throughput))
    if isolation:
        title = f"Isolation ({args.isolation_clients} clients, {args.rate:g} broadcasts/s):"
        parts.append(title + "\n\n" + isolation_table(isolation))
    extra = notes(throughput, isolation, args)
    text = "\n\n".join(parts)
    print(text)
    for line in extra:
        print("-", line)
    if not args.no_record:
        append_results("fanout", text + "\n\n" + "\n".join(f"- {n}" for n in extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
