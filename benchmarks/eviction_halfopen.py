"""How long a half-open client stays in the monitor's registry: a silent network cut made with Toxiproxy.

The monitor runs as a subprocess pinned to core 0 with one reading client connected directly. For
each trial a lean client connects through its own Toxiproxy proxy, and the cut is a ``timeout``
toxic with timeout 0 on both streams: nothing passes either way and nothing is closed, so to the
monitor the peer is half-open (no FIN, no RST, no ACKs from the application). The time from the cut
until ``/healthz`` shows one client again is the eviction time; ``monitor_evictions_total`` says which
rule fired.

aiohttp's heartbeat sends a ping ``heartbeat`` seconds after it last received anything and gives up
``heartbeat / 2`` seconds after that ping (3.14 has no setting for that wait). A client that only
answers pings last spoke right after the previous ping, so where the cut falls in that cycle decides
the eviction time: the trials cut at a fixed phase after a ping the client saw (just after it: the
worst case, about 1.5 x heartbeat; half-way; near the next ping: the best case, about heartbeat / 2).
Each is run idle and with lines fed at 2,000 a second (Toxiproxy drops the data, so the monitor's
send path never backs up and only the heartbeat can notice).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from common import ROOT, Feeder, append_results, evictions, parse_metrics, pin_self, start_monitor, stop_process, table
from leanclient import LeanPool

HEARTBEATS = (2.0, 10.0)
PHASES = (0.02, 0.5, 0.9)  # where the cut falls, as a fraction of the heartbeat after a ping the client saw
FEED_RATE = 2000.0
POLL = 0.05
LIMIT = 60.0  # give up on one eviction after this long


@dataclass
class Trial:
    heartbeat: float
    fed: bool
    phase: float
    seconds: float | None
    reasons: dict[str, int]


async def healthz_clients(session: aiohttp.ClientSession, base: str) -> int:
    async with session.get(f"{base}/healthz") as resp:
        return int((await resp.json())["clients"])


async def metrics(session: aiohttp.ClientSession, base: str) -> dict[str, float]:
    async with session.get(f"{base}/metrics") as resp:
        return parse_metrics(await resp.text())


async def wait_clients(session: aiohttp.ClientSession, base: str, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while await healthz_clients(session, base) != count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"/healthz clients did not settle at {count}")
        await asyncio.sleep(POLL)


async def feed(feeder: Feeder, stop: asyncio.Event) -> None:
    while not stop.is_set():
        feeder.tick()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.01):
                await stop.wait()


async def trial(
    session: aiohttp.ClientSession, base: str, port: int, toxiproxy: object, number: int, heartbeat: float,
    phase: float, fed: bool,
) -> Trial:  # fmt: skip
    from harness.toxiproxy import Toxiproxy

    assert isinstance(toxiproxy, Toxiproxy)
    name = f"halfopen-{os.getpid()}-{number}"
    proxy = await toxiproxy.create_proxy(name, f"127.0.0.1:{port}")
    pool = LeanPool("127.0.0.1", proxy.listen_port)
    try:
        if await pool.connect(1) != 1:
            raise RuntimeError("the client could not connect through the proxy")
        await wait_clients(session, base, 2)
        client = pool.clients[0]
        pings = client.stats.pings
        deadline = time.monotonic() + 3 * heartbeat + 5
        while client.stats.pings == pings:  # wait for a ping: the start of a heartbeat cycle
            if time.monotonic() > deadline:
                raise RuntimeError("the client saw no ping")
            await asyncio.sleep(0.005)
        await asyncio.sleep(phase * heartbeat)
        m0 = await metrics(session, base)
        t0 = time.monotonic()
        for stream in ("downstream", "upstream"):
            await toxiproxy.add_toxic(proxy, f"cut-{stream}", "timeout", stream, attributes={"timeout": 0})
        seconds = None
        while time.monotonic() - t0 < LIMIT:
            if await healthz_clients(session, base) <= 1:
                seconds = time.monotonic() - t0
                break
            await asyncio.sleep(POLL)
        m1 = await metrics(session, base)
    finally:
        with contextlib.suppress(Exception):
            await toxiproxy.delete_proxy(name)
        await pool.close(timeout=1.0)
    e0, e1 = evictions(m0), evictions(m1)
    reasons = {k: int(v - e0.get(k, 0)) for k, v in e1.items() if v > e0.get(k, 0)}
    return Trial(heartbeat, fed, phase, seconds, reasons)


async def run_heartbeat(heartbeat: float, toxiproxy: object, workdir: Path, counter: list[int]) -> list[Trial]:
    mon = start_monitor(workdir, "--heartbeat", f"{heartbeat:g}", core=0)
    trials: list[Trial] = []
    feeder = Feeder(mon.log_path, FEED_RATE, max_lines=int(FEED_RATE * 900))
    reader = LeanPool("127.0.0.1", mon.port)
    stop_feed = asyncio.Event()
    feeding: asyncio.Task[None] | None = None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            if await reader.connect(1) != 1:
                raise RuntimeError("the reading client could not connect")
            for fed in (False, True):
                if fed:
                    feeder.start()
                    feeding = asyncio.create_task(feed(feeder, stop_feed))
                    await asyncio.sleep(1.0)
                for phase in PHASES:
                    counter[0] += 1
                    t = await trial(session, mon.base, mon.port, toxiproxy, counter[0], heartbeat, phase, fed)
                    trials.append(t)
                    shown = "timed out" if t.seconds is None else f"{t.seconds:.2f} s"
                    print(f"  heartbeat {heartbeat:g} s, {'fed' if fed else 'idle'}, cut at {phase:.0%} of the "
                          f"cycle: {shown}, {t.reasons or 'no eviction counted'}", flush=True)  # fmt: skip
    finally:
        stop_feed.set()
        if feeding is not None:
            await feeding
        feeder.close()
        await reader.close()
        loud = mon.loud_lines()
        stop_process(mon.proc)
    if loud:
        print(f"  monitor log lines at WARNING or above: {len(loud)}; first: {loud[0][:300]}")
    return trials


def render(trials: list[Trial]) -> str:
    rows = []
    for t in trials:
        rows.append([
            f"{t.heartbeat:g}", "2,000 lines/s" if t.fed else "idle", f"{t.phase:.0%}",
            "timed out" if t.seconds is None else f"{t.seconds:.2f}",
            ", ".join(f"{k} x{v}" for k, v in sorted(t.reasons.items())) or "none counted",
            f"{t.heartbeat + 1:g}", f"{(1 - t.phase) * t.heartbeat + t.heartbeat / 2:.2f}",
        ])  # fmt: skip
    return table(
        ["heartbeat s", "stream", "cut after the last ping (share of heartbeat)", "eviction s",
         "reason (monitor_evictions_total)", "target: heartbeat + 1 s", "aiohttp's rule: rest of cycle + heartbeat/2"],
        rows,
    )  # fmt: skip


def summary(trials: list[Trial]) -> list[str]:
    out = []
    for hb in sorted({t.heartbeat for t in trials}):
        times = [t.seconds for t in trials if t.heartbeat == hb and t.seconds is not None]
        if times:
            out.append(
                f"heartbeat {hb:g} s: eviction {min(times):.2f} / {statistics.median(times):.2f} / {max(times):.2f} s "
                f"(min / median / max); target {hb + 1:g} s; the worst case, a cut just after a ping, is about "
                f"1.5 x heartbeat = {1.5 * hb:g} s"
            )
    return out


NOTES = [
    "Eviction time runs from the moment the timeout toxics (timeout 0, downstream and upstream) are added until "
    f"/healthz `clients` is back to 1 (polled every {POLL * 1000:.0f} ms).",
    "aiohttp 3.14's WebSocketResponse waits heartbeat/2 for a pong (`_pong_heartbeat = heartbeat / 2.0`, no "
    "parameter), and rounds timers longer than 5 s up to a whole second of loop time. So heartbeat + 1 s holds "
    "for every cut only while heartbeat/2 <= 1 s, i.e. heartbeat <= 2 s; above that a cut just after a ping "
    "is noticed about 1.5 x heartbeat later.",
]


async def amain(args: argparse.Namespace) -> list[Trial]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from harness.toxiproxy import running_toxiproxy

    trials: list[Trial] = []
    counter = [0]
    with tempfile.TemporaryDirectory(prefix="bench-halfopen-") as tmp:
        workdir = Path(tmp)
        async with running_toxiproxy(workdir) as toxiproxy:
            pid = toxiproxy.server.pid if toxiproxy.server is not None else None
            if pid is not None and (os.cpu_count() or 1) > 1:
                os.sched_setaffinity(pid, {1})
            for hb in args.heartbeat:
                trials += await run_heartbeat(hb, toxiproxy, workdir, counter)
    return trials


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--heartbeat", type=float, nargs="+", default=list(HEARTBEATS), help="the monitor's --heartbeat")
    p.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = p.parse_args(argv)
    pin_self(1)
    trials = asyncio.run(amain(args))
    text = render(trials)
    lines = summary(trials) + NOTES
    print()
    print(text)
    for line in lines:
        print(f"- {line}")
    if not args.no_record:
        append_results("eviction_halfopen", text + "\n\n" + "\n".join(f"- {n}" for n in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
