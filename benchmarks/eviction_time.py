"""How long a stuck client stays in the monitor's registry, and which rule evicts it.

For each configuration the monitor runs as a subprocess pinned to core 0, with one reading lean
client connected. Then, three times per case, a stuck client connects (SO_RCVBUF 4096 set before
connect), completes the handshake and never reads again. The time from its connect until the
monitor's /healthz ``clients`` drops back to 1 (polled every 50 ms) is the eviction time; the rise of
``monitor_evictions_total{reason=...}`` in /metrics says which rule fired. While waiting, the kernel
queues of the stuck connection are read from /proc/net/tcp, and the payload bytes the monitor wrote
to it are worked out from ``monitor_bytes_sent_total`` minus what the reading client received.

Cases:

- ``no read, no pong``: lines are fed at 2,000 a second; the client reads nothing, so it cannot
  answer pings either.
- ``no read, pongs``: the same, but the client sends an unsolicited pong every 0.5 s, which resets
  aiohttp's heartbeat: only the send timeout or the queue bound can evict it.
- ``idle, no read, no pong``: no lines are fed, so the monitor's buffers never fill and only the
  heartbeat can evict it: this is the path a half-open peer takes.

A half-open peer is not reproduced here: a client process stopped with SIGSTOP still has a kernel
that ACKs and buffers, so to the monitor it is exactly the ``no read, no pong`` client. A true
half-open peer (nothing ACKed) needs a network cut such as Toxiproxy's ``timeout`` toxic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from common import (
    Feeder,
    append_results,
    evictions,
    parse_metrics,
    pin_self,
    start_monitor,
    stop_process,
    table,
    tcp_queues,
)
from leanclient import OP_PONG, LeanPool, handshake_request, masked_frame

CONFIGS = {
    "defaults (heartbeat 10, send timeout 5, queue 512)": [],
    "heartbeat 2, send timeout 1, queue 64": ["--heartbeat", "2", "--send-timeout", "1", "--queue-size", "64"],
}
CONFIG_VALUES = {
    "defaults (heartbeat 10, send timeout 5, queue 512)": (10.0, 5.0, 512),
    "heartbeat 2, send timeout 1, queue 64": (2.0, 1.0, 64),
}
CASES = ("no read, no pong", "no read, pongs", "idle, no read, no pong")
FEED_RATE = 2000.0
POLL = 0.05
RCVBUF = 4096
LIMIT = 60.0  # give up on one eviction after this long


@dataclass
class Trial:
    seconds: float | None
    reasons: dict[str, int]
    peak_server_tx: int  # bytes in the monitor's socket send queue (unacknowledged)
    peak_client_rx: int  # bytes in the stuck client's socket receive queue
    written: int  # payload bytes the monitor wrote to the stuck client's transport
    rcvbuf: int
    stream_rate: float  # payload bytes a second each client was sent (what the reading client got)


@dataclass
class Result:
    config: str
    case: str
    trials: list[Trial] = field(default_factory=list)


class Probe:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def clients(self) -> int:
        async with self.session.get(f"{self.base}/healthz") as resp:
            return int((await resp.json())["clients"])

    async def metrics(self) -> dict[str, float]:
        async with self.session.get(f"{self.base}/metrics") as resp:
            return parse_metrics(await resp.text())

    async def wait_clients(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while await self.clients() != count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"/healthz clients did not settle at {count}")
            await asyncio.sleep(POLL)


async def feed(feeder: Feeder, stop: asyncio.Event) -> None:
    while not stop.is_set():
        feeder.tick()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.01):
                await stop.wait()


async def stuck_connect(port: int) -> socket.socket:
    """Connect with a small receive buffer, complete the handshake, and read nothing after it."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(10):
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, handshake_request("127.0.0.1", port, "/ws"))
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await loop.sock_recv(sock, 1024)
                if not chunk:
                    raise ConnectionError("closed during the handshake")
                head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0] + b" ":
            raise ConnectionError(f"handshake refused: {head[:100]!r}")
    except BaseException:
        sock.close()
        raise
    return sock


async def send_pongs(sock: socket.socket, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(int(LIMIT * 2) + 10):  # bounded: at most the longest wait
        try:
            await loop.sock_sendall(sock, masked_frame(b"", OP_PONG))
        except OSError:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await stop.wait()
        if stop.is_set():
            return


async def trial(probe: Probe, port: int, reader: LeanPool, case: str) -> Trial:
    await probe.wait_clients(1)
    m0 = await probe.metrics()
    r0 = reader.snapshot()
    t0 = time.monotonic()
    sock = await stuck_connect(port)
    local = sock.getsockname()[1]
    rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    stop = asyncio.Event()
    pongs = asyncio.create_task(send_pongs(sock, stop)) if case == "no read, pongs" else None
    seen_two, elapsed = False, None
    peak_tx = peak_rx = 0
    try:
        while time.monotonic() - t0 < LIMIT:
            clients = await probe.clients()
            queues = tcp_queues()
            peak_tx = max(peak_tx, queues.get((port, local), (0, 0))[0])
            peak_rx = max(peak_rx, queues.get((local, port), (0, 0))[1])
            seen_two = seen_two or clients >= 2
            if clients <= 1 and (seen_two or time.monotonic() - t0 > 2.0):
                elapsed = time.monotonic() - t0
                break
            await asyncio.sleep(POLL)
    finally:
        stop.set()
        if pongs is not None:
            await pongs
        sock.close()
    await asyncio.sleep(0.2)  # let the reading client receive what was sent before the eviction
    m1 = await probe.metrics()
    r1 = reader.snapshot()
    stream_rate = (r1["text_bytes"] - r0["text_bytes"]) / max(r1["mono"] - r0["mono"], 1e-9)
    e0, e1 = evictions(m0), evictions(m1)
    reasons = {k: int(v - e0.get(k, 0)) for k, v in e1.items() if v > e0.get(k, 0)}
    written = int(m1["monitor_bytes_sent_total"] - m0["monitor_bytes_sent_total"]) - (
        r1["text_bytes"] - r0["text_bytes"]
    )
    return Trial(elapsed, reasons, peak_tx, peak_rx, written, rcvbuf, stream_rate)


async def run_config(name: str, extra: list[str], reps: int, workdir: Path) -> list[Result]:
    mon = start_monitor(workdir, *extra, core=0)
    results = []
    feeder = Feeder(mon.log_path, FEED_RATE, max_lines=int(FEED_RATE * 600))
    reader = LeanPool("127.0.0.1", mon.port, sample_every=50)
    stop_feed = asyncio.Event()
    feeding: asyncio.Task[None] | None = None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            probe = Probe(session, mon.base)
            if await reader.connect(1) != 1:
                raise RuntimeError("the reading client could not connect")
            for case in CASES:
                idle = case.startswith("idle")
                if not idle and feeding is None:
                    feeder.start()
                    stop_feed.clear()
                    feeding = asyncio.create_task(feed(feeder, stop_feed))
                    await asyncio.sleep(1.0)  # let the batches reach their steady size
                if idle and feeding is not None:
                    stop_feed.set()
                    await feeding
                    feeding = None
                    feeder.pause()
                    await asyncio.sleep(1.0)  # let the last lines drain
                result = Result(name, case)
                for i in range(reps):
                    t = await trial(probe, mon.port, reader, case)
                    result.trials.append(t)
                    shown = "timed out" if t.seconds is None else f"{t.seconds:.2f} s"
                    print(f"  {name} | {case} | run {i + 1}: {shown}, {t.reasons or 'no eviction counted'}, "
                          f"kernel peak tx {t.peak_server_tx} rx {t.peak_client_rx}, written {t.written}",
                          flush=True)  # fmt: skip
                    await asyncio.sleep(0.5)
                results.append(result)
            if reader.snapshot()["open"] != 1:
                print("  warning: the reading client was disconnected", file=sys.stderr)
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
    return results


def kib(n: float) -> str:
    return f"{n / 1024:,.0f}"


def fill_time(trials: list[Trial]) -> str:
    """The stream's rate per client, and how long it took to fill what the stuck client absorbed."""
    rate = statistics.median(t.stream_rate for t in trials)
    if rate < 1024:
        return f"{kib(rate)} / n/a"
    return f"{kib(rate)} / {statistics.median(t.written for t in trials) / rate:.1f}"


def render(results: list[Result]) -> str:
    rows = []
    for r in results:
        times = [t.seconds for t in r.trials if t.seconds is not None]
        timed_out = len(r.trials) - len(times)
        reasons: Counter[str] = Counter()
        for t in r.trials:
            reasons.update(t.reasons or {"none counted": 1})
        heartbeat, send_timeout, _ = CONFIG_VALUES[r.config]
        if times:
            spread = f"{min(times):.2f} / {statistics.median(times):.2f} / {max(times):.2f}"
        else:
            spread = "n/a"
        if timed_out:
            spread += f" ({timed_out} timed out after {LIMIT:.0f} s)"
        rows.append([
            r.config, r.case, spread, ", ".join(f"{k} x{v}" for k, v in sorted(reasons.items())),
            kib(statistics.median(t.peak_server_tx for t in r.trials)),
            kib(statistics.median(t.peak_client_rx for t in r.trials)),
            kib(statistics.median(t.written for t in r.trials)),
            fill_time(r.trials),
            f"{heartbeat * 1.5:g} / {send_timeout:g}",
        ])  # fmt: skip
    return table(
        ["configuration", "stuck client", "eviction s min / median / max", "reason (monitor_evictions_total)",
         "peak monitor send queue KiB", "peak client recv queue KiB", "payload written to it KiB (median)",
         "stream KiB/s / time to fill s", "heartbeat x1.5 / send timeout s"],
        rows,
    )  # fmt: skip


NOTES = [
    "Eviction time runs from the stuck client's connect until /healthz `clients` is back to 1 (polled every "
    f"{POLL * 1000:.0f} ms). Lines are fed at {FEED_RATE:,.0f}/s except in the idle case.",
    "Queue columns are the kernel queues of the stuck connection from /proc/net/tcp (medians of each run's "
    "peak); 'payload written' is monitor_bytes_sent_total minus what the reading client received over the "
    "same span: kernel buffers plus the monitor's asyncio transport buffer, before a send blocked. "
    "'time to fill' is that divided by the stream's rate per client: a send can only start to time out "
    "after it, so eviction by send timeout takes about time to fill + send timeout, and a quieter stream "
    "takes longer to fill the same buffers.",
    "Half-open: not measured separately. A client stopped with SIGSTOP still has a kernel that ACKs and "
    "buffers, so to the monitor it is the 'no read, no pong' client. A true half-open peer needs a network "
    "cut (e.g. Toxiproxy's timeout toxic); with no traffic to fill buffers it is evicted by the heartbeat, "
    "which is the 'idle, no read, no pong' row.",
]


async def amain(args: argparse.Namespace) -> list[Result]:
    results = []
    for name, extra in CONFIGS.items():
        with tempfile.TemporaryDirectory(prefix="bench-evict-") as tmp:
            results += await run_config(name, extra, args.reps, Path(tmp))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3, help="runs per configuration and case (at most 10)")
    p.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = p.parse_args(argv)
    args.reps = min(max(args.reps, 1), 10)
    pin_self(1)
    results = asyncio.run(amain(args))
    text = render(results)
    print()
    print(text)
    for note in NOTES:
        print(f"- {note}")
    if not args.no_record:
        append_results("eviction_time", text + "\n\n" + "\n".join(f"- {n}" for n in NOTES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
