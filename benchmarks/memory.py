"""The monitor's resident memory per idle client and per stalled client.

The monitor runs as a subprocess pinned to core 0 (``python -m monitor``, default settings: queue 512,
send timeout 5 s, heartbeat 10 s, ``--sndbuf`` 128 KiB); clients run in child processes on core 1.

- **Idle**: RSS with no client, then with ``--idle`` lean clients connected and idle (after their
  greeting messages); the difference divided by the clients.
- **Stalled**: with one reading client and lines fed at ``--rate`` a second, ``--stalled`` clients
  complete the handshake with a 4 KiB receive buffer and never read again. RSS is sampled every
  0.1 s until the monitor has evicted them all; the peak minus the RSS just before they connected,
  divided by the clients, is the memory a stalled client holds at most. The kernel's send queue of
  each stalled connection (``/proc/net/tcp``, kernel memory, not in RSS) is shown beside it.

What bounds a stalled client: the kernel send buffer (``--sndbuf``, which Linux doubles), the
asyncio transport's buffer (written to directly up to its 64 KiB high-water mark, then by the writer
with up to aiohttp's 64 KiB writer limit more before it waits), and the client's queue of at most
``queue_size`` messages. Queued messages are the broadcast's one serialized string, shared by every
client that queued it, so a queue costs a pointer per message per client, plus the shared strings.
"""

from __future__ import annotations

import argparse
import json
import select
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from common import (
    ROOT,
    Feeder,
    append_results,
    evictions,
    pin_self,
    pinned,
    start_monitor,
    stop_process,
    table,
    tcp_queues,
)

HERE = Path(__file__).resolve().parent


def read_json_line(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError("the client process did not answer in time")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("the client process exited")
    return json.loads(line)


def cohort(port: int, count: int, kind: str, workdir: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(HERE / "fanout_clients.py"), "--port", str(port), "--clients", str(count),
            "--cohort", kind, "--max-seconds", "300"]  # fmt: skip
    with (workdir / f"{kind}.stderr").open("wb") as err:
        return subprocess.Popen(pinned(argv, 1), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=ROOT)


def stop_cohort(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None and proc.stdin is not None:
        try:
            proc.stdin.write(b"stop\n")
            proc.stdin.flush()
            read_json_line(proc, 15)
        except (OSError, TimeoutError, RuntimeError, ValueError):
            pass
    stop_process(proc)


def settle_rss(proc: psutil.Process, seconds: float = 1.5) -> int:
    """The smallest RSS over ``seconds`` (allocations in flight come and go; this is what stays)."""
    low = proc.memory_info().rss
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.1)
        low = min(low, proc.memory_info().rss)
    return low


def wait_clients(mon: Any, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while mon.healthz()["clients"] != count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"/healthz clients did not reach {count}")
        time.sleep(0.1)


def idle_trial(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    (workdir / "idle").mkdir()
    mon = start_monitor(workdir / "idle", core=0)
    clients = None
    try:
        server = psutil.Process(mon.proc.pid)
        time.sleep(1.0)
        before = settle_rss(server)
        clients = cohort(mon.port, args.idle, "healthy", workdir)
        ready = read_json_line(clients, 120)["ready"]
        wait_clients(mon, ready)
        time.sleep(2.5)  # past the first stats broadcast (every 2 s)
        after = settle_rss(server)
    finally:
        if clients is not None:
            stop_cohort(clients)
        stop_process(mon.proc)
    return {"clients": ready, "before": before, "after": after, "per_client": (after - before) / max(1, ready)}


class FeedThread(threading.Thread):
    def __init__(self, feeder: Feeder, limit: float) -> None:
        super().__init__(name="feeder", daemon=True)
        self.feeder, self.limit, self.stopping = feeder, limit, threading.Event()

    def run(self) -> None:
        end = time.monotonic() + self.limit
        self.feeder.start()
        while not self.stopping.is_set() and time.monotonic() < end:
            self.feeder.tick()
            self.stopping.wait(0.005)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


def stalled_trial(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    (workdir / "stalled").mkdir()
    mon = start_monitor(workdir / "stalled", core=0)
    reader = stalled = None
    feeder = Feeder(mon.log_path, args.rate, max_lines=int(args.rate * 200))
    feeding = FeedThread(feeder, 180)
    try:
        server = psutil.Process(mon.proc.pid)
        reader = cohort(mon.port, 1, "healthy", workdir)
        read_json_line(reader, 60)
        wait_clients(mon, 1)
        feeding.start()
        time.sleep(3.0)
        base = settle_rss(server, 2.0)
        m0 = mon.metrics()
        t0 = time.monotonic()
        stalled = cohort(mon.port, args.stalled, "stalled", workdir)
        ready = read_json_line(stalled, 120)["ready"]
        peak, peak_at, peak_tx_total, peak_queue = base, 0.0, 0, 0
        samples = 0
        gone_at = None
        while time.monotonic() - t0 < 90:
            rss = server.memory_info().rss
            if rss > peak:
                peak, peak_at = rss, time.monotonic() - t0
            if samples % 5 == 0:
                queues = tcp_queues()
                tx = sum(tx for (local, _), (tx, _) in queues.items() if local == mon.port)
                peak_tx_total = max(peak_tx_total, tx)
                m = mon.metrics()
                peak_queue = max(peak_queue, int(m.get("monitor_outbound_queue_max", 0)))
                if mon.healthz()["clients"] <= 1 and time.monotonic() - t0 > 2:
                    gone_at = time.monotonic() - t0
                    break
            samples += 1
            time.sleep(0.1)
        m1 = mon.metrics()
        time.sleep(2.0)
        after = settle_rss(server, 2.0)
    finally:
        feeding.stop()
        feeder.close()
        for proc in (stalled, reader):
            if proc is not None:
                stop_cohort(proc)
        stop_process(mon.proc)
    e0, e1 = evictions(m0), evictions(m1)
    reasons = {k: int(v - e0.get(k, 0)) for k, v in e1.items() if v > e0.get(k, 0)}
    return {
        "clients": ready, "base": base, "peak": peak, "peak_at": peak_at, "after": after, "gone_at": gone_at,
        "per_client": (peak - base) / max(1, ready), "kernel_tx_per_client": peak_tx_total / max(1, ready),
        "peak_queue": peak_queue, "reasons": reasons,
    }  # fmt: skip


def kib(n: float) -> str:
    return f"{n / 1024:,.1f}"


def render(idle: dict[str, Any], stalled: dict[str, Any], args: argparse.Namespace) -> str:
    rows = [
        ["idle", f"{idle['clients']:,}", f"{idle['before'] / 2**20:,.1f} -> {idle['after'] / 2**20:,.1f}",
         kib(idle["per_client"]), "-", "-", "-"],
        [f"stalled (stream of {args.rate:,.0f} lines/s)", f"{stalled['clients']:,}",
         f"{stalled['base'] / 2**20:,.1f} -> peak {stalled['peak'] / 2**20:,.1f} (at {stalled['peak_at']:.1f} s) "
         f"-> {stalled['after'] / 2**20:,.1f} after eviction",
         kib(stalled["per_client"]), kib(stalled["kernel_tx_per_client"]), str(stalled["peak_queue"]),
         (f"all gone after {stalled['gone_at']:.1f} s: " if stalled["gone_at"] else "NOT all evicted: ")
         + (", ".join(f"{k} x{v}" for k, v in sorted(stalled["reasons"].items())) or "none counted")],
    ]  # fmt: skip
    return table(
        ["clients", "count", "monitor RSS MiB", "RSS KiB per client", "kernel send queue KiB per client (peak)",
         "peak outbound queue (messages)", "eviction"],
        rows,
    )  # fmt: skip


NOTES = [
    "RSS per idle client: the smallest RSS over 1.5 s with the clients connected, minus the same before; it "
    "includes aiohttp's request, protocol, WebSocket reader and writer, the hub's Client, and the socket's "
    "user-space buffers.",
    "RSS per stalled client: the peak RSS while they were connected minus the RSS just before, divided by the "
    "clients. Their kernel send queues are kernel memory (not in RSS), bounded by --sndbuf (Linux doubles it).",
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--idle", type=int, default=1000, help="idle clients")
    p.add_argument("--stalled", type=int, default=100, help="stalled clients")
    p.add_argument("--rate", type=float, default=2000.0, help="lines a second fed while clients are stalled")
    p.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = p.parse_args(argv)
    pin_self(1)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        idle = idle_trial(args, Path(tmp))
        print(f"idle: {kib(idle['per_client'])} KiB per client", flush=True)
        stalled = stalled_trial(args, Path(tmp))
    text = render(idle, stalled, args)
    print()
    print(text)
    for note in NOTES:
        print(f"- {note}")
    if not args.no_record:
        append_results("memory", text + "\n\n" + "\n".join(f"- {n}" for n in NOTES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
