"""1,000 concurrent Locust WebSocket users through Toxiproxy, held for a minute, the monitor broadcasting.

The harness's own pieces do the work: toxiproxy-server, the monitor (the bundled target) behind one
proxy with the feed writing storagenode lines, and Locust (``harness/locustfile.py``, steady readers by
default) with ``--processes``. After every user runs, the users are held for ``--hold`` seconds, and
over that window the benchmark reports: batches received a second (all users), delivery latency
percentiles (Locust's, over the window), failures, missed batches (seq gaps), the monitor's registry
size (lowest and highest), and the CPU of each process (the monitor, toxiproxy-server, each Locust
process) as a percentage of one core. ``--also`` then tries larger counts, each held ``--also-hold``
seconds, until one does not hold; the largest count that held is reported.

A count holds when every user stays connected (the monitor's registry never below the count), no
Locust request fails, no batch is missed, and the delivery p99 over the window is at most
``--p99-limit`` ms. Locust above 90% CPU means the users, not the monitor, limited the rate.

The soft limit on open files is raised to the hard limit first (each user is a socket in Locust, two
in Toxiproxy and one in the monitor). Everything started is stopped by pid at the end, also on
Ctrl-C; traffic stays on loopback; Locust stops by itself after its ``-t``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from common import append_results, evictions, parse_metrics, table

from harness.load import LocustRun
from harness.loadspec import LoadSpec, parse_mix
from harness.loadtest import Stage, stage
from harness.targetspec import bundled_monitor

CPU_SATURATED = 90.0


@dataclass
class Window:
    """What one count of users did over its hold window."""

    users: int
    hold_s: float
    registry_min: int = 0
    registry_max: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    evicted: dict[str, float] = field(default_factory=dict)  # the monitor's evictions in the window, by reason
    summary: dict[str, Any] = field(default_factory=dict)
    p99_limit: float = 1000.0

    @property
    def rate(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        first, last = self.samples[0], self.samples[-1]
        seconds = last["ts"] - first["ts"]
        return (last["batches"] - first["batches"]) / seconds if seconds > 0 else 0.0

    def during(self, key: str) -> int:
        return self.samples[-1][key] - self.samples[0][key] if self.samples else 0

    def percentile(self, key: str) -> float:
        """The worst of Locust's per-second percentiles (each over its last 10 s) across the window."""
        values = [s[key] for s in self.samples if s.get(key) is not None]
        return max(values, default=0.0)

    @property
    def locust_cpu_max(self) -> float:
        return max((v for k, v in self.cpu.items() if k.startswith("locust")), default=0.0)

    @property
    def held(self) -> bool:
        return (self.registry_min >= self.users and self.summary.get("failures", 1) == 0
                and self.summary.get("gaps", 1) == 0 and self.percentile("p99") <= self.p99_limit)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Measuring


def raise_open_files_limit() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        new = 1_048_576 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def monitor_evictions(staged: Stage) -> dict[str, float]:
    with urllib.request.urlopen(staged.target.http_url("/metrics"), timeout=5) as resp:
        return evictions(parse_metrics(resp.read().decode()))


def registry_size(staged: Stage) -> int:
    with urllib.request.urlopen(staged.target.http_url("/healthz"), timeout=5) as resp:
        return int(json.load(resp)["clients"])


class CpuMeter:
    """CPU seconds of named processes between ``start`` and ``stop``, as a percentage of one core."""

    def __init__(self, processes: dict[str, psutil.Process]) -> None:
        self.processes = processes
        self.before: dict[str, float] = {}
        self.started = 0.0

    @staticmethod
    def seconds(process: psutil.Process) -> float:
        times = process.cpu_times()
        return times.user + times.system

    def start(self) -> None:
        self.started = time.monotonic()
        self.before = {name: self.seconds(p) for name, p in self.processes.items()}

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.started
        out = {}
        for name, p in self.processes.items():
            try:
                out[name] = round(100 * (self.seconds(p) - self.before[name]) / wall, 1)
            except psutil.Error:
                out[name] = float("nan")
        return out


def processes_of(staged: Stage, locust: LocustRun) -> dict[str, psutil.Process]:
    monitor = psutil.Process(staged.target.pid)
    named = {"monitor": monitor}
    named.update({f"monitor child {p.pid}": p for p in monitor.children(recursive=True)})
    assert staged.server.pid is not None
    named["toxiproxy-server"] = psutil.Process(staged.server.pid)
    leader = psutil.Process(locust.pid)
    named["locust master" if leader.children() else "locust"] = leader
    named.update({f"locust worker {i + 1}": p for i, p in enumerate(leader.children(recursive=True))})
    return named


async def hold(staged: Stage, spec: LoadSpec, hold_s: float, p99_limit: float, out: Path) -> Window:
    """Run ``spec.users`` users, wait until all run, and measure ``hold_s`` seconds of them."""
    window = Window(spec.users, hold_s, p99_limit=p99_limit)
    async with LocustRun(spec, staged.host, out, ws_path=staged.target.spec.ws_path) as locust:
        await locust.ramp_up(margin=60)
        await asyncio.sleep(3)  # the last users' first seconds out of the window
        meter = CpuMeter(processes_of(staged, locust))
        evicted_before = await asyncio.to_thread(monitor_evictions, staged)
        meter.start()
        first = len(locust.samples)
        sizes = []
        deadline = time.monotonic() + hold_s
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            sizes.append(await asyncio.to_thread(registry_size, staged))
        window.cpu = meter.stop()
        evicted_after = await asyncio.to_thread(monitor_evictions, staged)
        window.evicted = {k: v - evicted_before.get(k, 0) for k, v in evicted_after.items()
                          if v - evicted_before.get(k, 0) > 0}  # fmt: skip
        window.samples = locust.samples[max(first - 1, 0) :]
        window.registry_min, window.registry_max = min(sizes), max(sizes)
    window.summary = locust.summary or {}
    return window


# ---------------------------------------------------------------------------------------------
# Reporting


def figures_table(windows: list[Window], feed_rate: float) -> str:
    rows = []
    for w in windows:
        rows.append([
            f"{w.users:,}", f"{w.hold_s:g}", f"{w.registry_min:,} / {w.registry_max:,}",
            f"{w.rate:,.0f}", f"{w.rate / w.users:.1f}" if w.users else "-",
            f"{w.percentile('p50'):g} / {w.percentile('p99'):g}",
            f"{w.summary.get('p50')} / {w.summary.get('p99')} / {w.summary.get('max_ms')}",
            str(w.during("failures")), str(w.during("gaps")), "yes" if w.held else "NO",
        ])  # fmt: skip
    headers = ["users", "held s", "registry min / max", "batches/s (all users)", "per user/s",
               "window p50 / p99 ms", "run p50 / p99 / max ms", "failures", "missed", "held"]  # fmt: skip
    return table(headers, rows) + f"\n\nFeed: {feed_rate:g} storagenode lines/s."


def cpu_table(windows: list[Window]) -> str:
    names = list(dict.fromkeys(name for w in windows for name in w.cpu))
    rows = [[name, *(f"{w.cpu[name]:.0f}%" if name in w.cpu else "-" for w in windows)] for name in names]
    return table(["process (CPU % of one core)", *(f"{w.users:,} users" for w in windows)], rows)


def notes(windows: list[Window]) -> list[str]:
    out = []
    held = [w.users for w in windows if w.held]
    out.append(f"Largest count that held: {max(held):,}." if held else "No count held.")
    for w in windows:
        if w.locust_cpu_max > CPU_SATURATED:
            out.append(f"At {w.users:,} users a Locust process used {w.locust_cpu_max:.0f}% of a core: the users "
                       "limited the rate there, not the monitor.")  # fmt: skip
        if not w.held:
            why = []
            if w.registry_min < w.users:
                evicted = ", ".join(f"{int(n)} by {reason}" for reason, n in w.evicted.items()) or "none evicted"
                why.append(f"the monitor's registry fell to {w.registry_min:,} ({evicted})")
            if w.summary.get("failures"):
                why.append(f"{w.summary['failures']} failures ({w.summary.get('errors', [])[:2]})")
            if w.summary.get("gaps"):
                why.append(f"{w.summary['gaps']} batches missed")
            if w.percentile("p99") > w.p99_limit:
                why.append(f"p99 {w.percentile('p99'):g} ms over {w.p99_limit:g} ms")
            out.append(f"{w.users:,} users did not hold: {'; '.join(why)}.")
    return out


# ---------------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, workdir: Path) -> list[Window]:
    mix = parse_mix(args.mix)
    windows: list[Window] = []
    async with stage(bundled_monitor(), workdir / "stage", feed_rate=args.feed_rate, seed=1) as staged:
        counts = [(args.users, args.hold), *((n, args.also_hold) for n in args.also)]
        for users, hold_s in counts:
            time_s = users / args.spawn_rate + hold_s + 30
            spec = LoadSpec(users, args.spawn_rate, time_s, mix=mix, processes=args.processes)
            print(f"{users} users: ramping at {args.spawn_rate:g}/s, then holding {hold_s:g}s", flush=True)
            window = await hold(staged, spec, hold_s, args.p99_limit, workdir / f"locust-{users}")
            windows.append(window)
            print(f"  {'held' if window.held else 'did NOT hold'}: {window.rate:,.0f} batches/s, "
                  f"p99 {window.percentile('p99'):g} ms, CPU {window.cpu}", flush=True)  # fmt: skip
            if not window.held:
                break
            await asyncio.sleep(3)  # the last run's users leave the registry
    return windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--hold", type=float, default=60.0, help="seconds the users are held and measured")
    parser.add_argument("--spawn-rate", type=float, default=100.0)
    parser.add_argument("--processes", type=int, default=2, help="Locust processes (--processes)")
    parser.add_argument("--feed-rate", type=float, default=10.0, help="storagenode lines a second")
    parser.add_argument("--mix", default="steady=1")
    parser.add_argument("--also", type=lambda s: [int(x) for x in s.split(",") if x], default=[],
                        help="larger counts to try after the first, e.g. 1500,2000")  # fmt: skip
    parser.add_argument("--also-hold", type=float, default=20.0)
    parser.add_argument("--p99-limit", type=float, default=1000.0, help="ms; a count holds only under it")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    soft, hard = raise_open_files_limit()
    print(f"open files: soft limit {soft}, hard limit {hard}")
    with tempfile.TemporaryDirectory(prefix="load-1000-") as tmp:
        windows = asyncio.run(bench(args, Path(tmp)))
    body = "\n\n".join([figures_table(windows, args.feed_rate), cpu_table(windows),
                        "\n".join(f"- {n}" for n in notes(windows))])  # fmt: skip
    print("\n" + body)
    if not args.no_record:
        title = f"load_1000: {args.users:,} Locust WebSocket users through Toxiproxy, {args.processes} processes"
        append_results(title, body)


if __name__ == "__main__":
    main()
