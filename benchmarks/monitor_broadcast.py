"""Broadcast throughput and delivery latency of the monitor, fed from a node log, to N lean clients.

The monitor runs as a subprocess pinned to core 0; the clients run in one child process pinned to
core 1 (this process, which feeds the log, shares core 1 with them). After a one-second warm-up, lines
are appended to the node's log at ``--rate`` lines a second for ``--seconds``, and the figures are
taken over that window. Client CPU above 90% of wall time means the clients, not the monitor, were
the bottleneck, and the table says so.
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
from typing import IO, Any

import psutil
from common import (
    ROOT,
    Feeder,
    append_results,
    pin_self,
    pinned,
    start_monitor,
    stop_process,
    table,
)

HERE = Path(__file__).resolve().parent
WARMUP = 1.0


def read_json_line(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    stdout = proc.stdout
    assert stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the client process did not answer in time")
        ready, _, _ = select.select([stdout], [], [], remaining)
        if ready:
            line = stdout.readline()
            if not line:
                raise RuntimeError("the client process exited")
            return json.loads(line)


def command(proc: subprocess.Popen[bytes], text: str) -> None:
    stdin: IO[bytes] | None = proc.stdin
    assert stdin is not None
    stdin.write(text.encode() + b"\n")
    stdin.flush()


class FeedThread(threading.Thread):
    """Keeps the feeder writing in its own thread, so slow HTTP calls to a busy monitor do not stall it."""

    def __init__(self, feeder: Feeder, limit: float) -> None:
        super().__init__(name="feeder", daemon=True)
        self.feeder = feeder
        self.limit = limit  # seconds: the loop ends by itself after this long
        self.stopping = threading.Event()

    def run(self) -> None:
        end = time.monotonic() + self.limit
        self.feeder.start()
        while not self.stopping.is_set() and time.monotonic() < end:
            self.feeder.tick()
            self.stopping.wait(0.005)
        self.feeder.tick()

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


def sample_for(seconds: float, action: Any) -> None:
    """Call ``action`` about once a second for ``seconds``."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        if end - time.monotonic() > 0.2:
            action()


def cpu_of(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.1f}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-broadcast-") as tmp:
        workdir = Path(tmp)
        mon = start_monitor(workdir, core=0)
        clients: subprocess.Popen[bytes] | None = None
        feeder: Feeder | None = None
        feeding: FeedThread | None = None
        try:
            argv = [
                sys.executable, str(HERE / "leanclient.py"), "--port", str(mon.port),
                "--clients", str(args.clients), "--sample-every", str(args.sample_every),
                "--max-seconds", str(args.seconds + 120),
            ]  # fmt: skip
            with (workdir / "clients.stderr").open("wb") as err:
                clients = subprocess.Popen(
                    pinned(argv, 1), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=ROOT
                )
            ready = read_json_line(clients, 60)
            if ready["ready"] != args.clients:
                print(f"warning: only {ready['ready']} of {args.clients} clients connected", file=sys.stderr)
            pin_self(1)
            server = psutil.Process(mon.proc.pid)
            feeder = Feeder(mon.log_path, args.rate, max_lines=int(args.rate * (WARMUP + args.seconds)) + 1)
            h_before = mon.healthz()

            feeding = FeedThread(feeder, WARMUP + args.seconds + 30)
            feeding.start()
            time.sleep(WARMUP)

            t0, fed0, cpu0 = time.monotonic(), feeder.written, cpu_of(server)
            m0, h0 = mon.metrics(), mon.healthz()
            command(clients, "mark")
            c0 = read_json_line(clients, 10)["mark"]

            peaks = {"queue_max": 0.0, "stream_pending": 0.0, "ingest_queue": 0.0}

            def sample_peaks() -> None:
                m = mon.metrics()
                peaks["queue_max"] = max(peaks["queue_max"], m.get("monitor_outbound_queue_max", 0))
                peaks["stream_pending"] = max(peaks["stream_pending"], m.get("monitor_stream_pending", 0))
                peaks["ingest_queue"] = max(peaks["ingest_queue"], m.get("monitor_ingest_queue", 0))

            sample_for(args.seconds - (time.monotonic() - t0), sample_peaks)

            t1, fed1, cpu1 = time.monotonic(), feeder.written, cpu_of(server)
            m1, h1 = mon.metrics(), mon.healthz()
            command(clients, "mark")
            c1 = read_json_line(clients, 10)["mark"]
            feeding.stop()
            feeding = None

            # Drain: every line fed persisted and broadcast, then let the clients catch up.
            drain_start = time.monotonic()
            drained = False
            while time.monotonic() - drain_start < 20:
                m = mon.metrics()
                if m.get("monitor_events_persisted_total", 0) >= feeder.written and not m.get(
                    "monitor_stream_pending", 0
                ):
                    drained = True
                    break
                time.sleep(0.1)
            h_end = mon.healthz()
            time.sleep(1.0)
            command(clients, "stop")
            report = read_json_line(clients, 30)
        finally:
            if feeding is not None:
                feeding.stop()
            if feeder is not None:
                feeder.close()
            if clients is not None:
                stop_process(clients)
            loud = mon.loud_lines()
            stop_process(mon.proc)

    wall = t1 - t0
    win = report["window"]
    final = report["final"]
    batches_total = h_end["seq"] - h_before["seq"]
    return {
        "clients": args.clients,
        "connected": ready["ready"],
        "seconds": wall,
        "rate": args.rate,
        "lines_fed_per_s": (fed1 - fed0) / wall,
        "events_persisted_per_s": (m1["monitor_events_persisted_total"] - m0["monitor_events_persisted_total"]) / wall,
        "events_e2e_per_s": win["full_events_per_s"],
        "batches_per_s": (h1["seq"] - h0["seq"]) / wall,
        "events_per_batch": (m1["monitor_events_persisted_total"] - m0["monitor_events_persisted_total"])
        / max(1, h1["seq"] - h0["seq"]),
        "server_messages_per_s": (m1["monitor_messages_sent_total"] - m0["monitor_messages_sent_total"]) / wall,
        "client_messages_per_s": win["frames_per_s"],
        "client_batches_per_s": win["batches_per_s"],
        "client_mib_per_s": win["bytes_per_s"] / 2**20,
        "latency_p50": win["latency_p50"],
        "latency_p99": win["latency_p99"],
        "latency_max": win["latency_max"],
        "latency_samples": win["latency_samples"],
        "server_cpu": (cpu1 - cpu0) / wall,
        "client_cpu": win["cpu_share"],
        "client_saturated": win["saturated"],
        "peaks": peaks,
        "drained": drained,
        "batches_total": batches_total,
        "client_batches_min": final["batches_min"],
        "client_batches_max": final["batches_max"],
        "seq_gaps": final["full_seq_gaps"],
        "closed_by_server": final["closed_by_server"],
        "evictions": {k: v for k, v in m1.items() if k.startswith("monitor_evictions_total")},
        "loud_log_lines": len(loud),
        "window_clients": (c0["open"], c1["open"]),
    }


def render(r: dict[str, Any]) -> str:
    complete = r["client_batches_min"] == r["client_batches_max"] == r["batches_total"]
    rows = [
        ["clients connected", f"{r['connected']} of {r['clients']}"],
        ["window (s)", f"{r['seconds']:.2f}"],
        ["lines fed per s (target)", f"{r['lines_fed_per_s']:,.0f} ({r['rate']:,.0f})"],
        ["events persisted per s (monitor)", f"{r['events_persisted_per_s']:,.0f}"],
        ["events delivered per s (end to end, one client)", f"{r['events_e2e_per_s']:,.0f}"],
        ["batches broadcast per s", f"{r['batches_per_s']:,.1f} ({r['events_per_batch']:.0f} events each)"],
        ["messages written per s (monitor)", f"{r['server_messages_per_s']:,.0f}"],
        ["client-messages delivered per s (all clients)", f"{r['client_messages_per_s']:,.0f}"],
        ["  of which log_entry_batch", f"{r['client_batches_per_s']:,.0f}"],
        ["payload delivered (MiB/s, all clients)", f"{r['client_mib_per_s']:,.1f}"],
        ["delivery latency p50 / p99 / max (ms)",
         f"{ms(r['latency_p50'])} / {ms(r['latency_p99'])} / {ms(r['latency_max'])} ({r['latency_samples']} samples)"],
        ["monitor CPU (core 0)", f"{r['server_cpu']:.0%}"],
        ["client CPU (core 1)", f"{r['client_cpu']:.0%}"],
        ["clients saturated (CPU > 90%)", "YES: the figures measure the clients" if r["client_saturated"] else "no"],
        ["peak outbound queue / stream pending / ingest queue",
         f"{r['peaks']['queue_max']:.0f} / {r['peaks']['stream_pending']:.0f} / {r['peaks']['ingest_queue']:.0f}"],
        ["every client got every batch",
         f"{'yes' if complete else 'NO'} ({r['batches_total']} batches; per client "
         f"{r['client_batches_min']}..{r['client_batches_max']}; seq gaps {r['seq_gaps']})"],
        ["drained after the feed stopped", "yes" if r["drained"] else "NO (within 20 s)"],
        ["clients closed by the monitor / evictions", f"{r['closed_by_server']} / {r['evictions'] or 'none'}"],
        ["monitor log lines at WARNING or above", str(r["loud_log_lines"])],
    ]  # fmt: skip
    return table(["figure", "value"], rows)


def notes(r: dict[str, Any]) -> list[str]:
    out = []
    if r["client_saturated"]:
        out.append("The clients used more than 90% of their core: the rates are a lower bound for the monitor.")
    if r["server_cpu"] > 0.9:
        out.append("The monitor used its whole core: these figures are its capacity on one core.")
    if r["events_persisted_per_s"] < 0.95 * r["lines_fed_per_s"]:
        out.append("Ingest did not keep up with the feed (events persisted per s below lines fed per s).")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--seconds", type=float, default=10.0, help="measured window (at most 120)")
    p.add_argument("--rate", type=float, default=10000.0, help="log lines a second fed to the node's log")
    p.add_argument("--sample-every", type=int, default=20, help="clients decode every K-th frame for latency")
    p.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = p.parse_args(argv)
    args.seconds = min(max(args.seconds, 1.0), 120.0)
    r = run(args)
    text = render(r)
    extra = notes(r)
    print(text)
    for line in extra:
        print(line)
    if not args.no_record:
        body = text + ("\n\n" + "\n".join(f"- {n}" for n in extra) if extra else "")
        append_results(f"monitor_broadcast: {args.clients} clients, {args.rate:,.0f} lines/s", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
