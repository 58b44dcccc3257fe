"""A cohort of lean clients for ``fanout.py``, driven over stdin like ``leanclient.py``.

The cohort is ``healthy`` (reads everything, answers pings), ``stalled`` (completes the handshake
with a small ``SO_RCVBUF`` and then never reads again: no data, no pongs) or ``slow`` (reads
normally, but connects through a Toxiproxy proxy whose ``bandwidth`` toxic holds it to a few KB/s;
to this process it looks healthy). It prints ``{"ready": n}``, then answers ``mark`` with a snapshot
and ``stop`` with the final report; it exits on its own after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import Any

from leanclient import LeanPool, window


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    pool = LeanPool(args.host, args.port, args.path, args.sample_every)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def emit(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    stalled = args.cohort == "stalled"
    connected = await pool.connect(
        args.clients, full_clients=args.full_clients, rcvbuf=args.rcvbuf if stalled else None, concurrency=32
    )
    if stalled:
        await asyncio.sleep(0.5)  # let the first messages (init, status, stats) land in the kernel buffer
        for client in pool.clients:
            if client.transport is not None:
                client.transport.pause_reading()
    emit({"ready": connected, "failed": pool.connect_failures})
    marks: list[dict[str, Any]] = []
    deadline = loop.time() + args.max_seconds
    try:
        while (remaining := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(remaining):
                    line = await reader.readline()
            except TimeoutError:
                break
            command = line.decode().strip()
            if command == "mark":
                marks.append(pool.snapshot())
                emit({"mark": marks[-1]})
            elif command in ("stop", ""):
                break
    finally:
        final = pool.snapshot()
        report: dict[str, Any] = {"final": final, "per_client_batches": [c.stats.batches for c in pool.clients]}
        if len(marks) >= 2:
            report["window"] = window(marks[0], marks[-1], pool.latencies(marks[0], marks[-1]))
        if marks:
            samples = pool.samples[marks[0]["samples"] : final["samples"]]
            step = max(1, len(samples) // 200_000)
            report["samples"] = [(round(at, 4), round(lat, 5)) for at, lat in samples[::step]]
        for client in pool.clients:  # stalled clients must read again to see a close frame
            if client.transport is not None and not client.transport.is_closing():
                with contextlib.suppress(RuntimeError):
                    client.transport.resume_reading()
        await pool.close(timeout=2.0)
        emit(report)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="a cohort of lean clients, driven over stdin (mark, stop)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/ws")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--cohort", choices=["healthy", "stalled", "slow"], default="healthy")
    p.add_argument("--rcvbuf", type=int, default=4096, help="SO_RCVBUF of stalled clients")
    p.add_argument("--full-clients", type=int, default=0, help="clients that decode every frame")
    p.add_argument("--sample-every", type=int, default=50, help="decode every K-th text frame for latency")
    p.add_argument("--max-seconds", type=float, default=600.0, help="exit after this long whatever happens")
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
