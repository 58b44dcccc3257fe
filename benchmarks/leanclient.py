"""A lean WebSocket receiving client, so that a benchmark measures the server and not its clients.

Each connection is a plain ``asyncio.Protocol``: it does the opening handshake, then reads only frame
headers, counting text frames and their bytes and skipping payloads without copying them. Every
``sample_every``-th text frame is decoded as JSON to read ``seq`` and ``sent_at`` for a latency
sample (receive wall time minus ``sent_at``). Pings are answered with a masked pong. A connection made
with ``full=True`` decodes every text frame instead, to count events and ``seq`` gaps exactly.

``LeanPool`` runs N connections in one process and reports counts, latency samples and the process's
CPU time (``resource.getrusage``), so a benchmark can tell when the clients, not the server, were
the bottleneck (client CPU above 90% of wall time over the window).

Run as a script it is a child process a benchmark drives over stdin and stdout, one JSON object a
line: it connects, prints ``{"ready": ...}``, then answers ``mark`` with a snapshot and ``stop``
with a final report. It exits on its own after ``--max-seconds`` whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

BATCH_PREFIX = b'{"type":"log_entry_batch"'
PREFIX_LEN = len(BATCH_PREFIX)
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def masked_frame(payload: bytes, opcode: int) -> bytes:
    """One client frame (clients must mask), FIN set."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    full = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(full, "big")).to_bytes(n, "big") if n else b""
    return head + mask + masked


def handshake_request(host: str, port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


@dataclass
class ClientStats:
    text_frames: int = 0
    text_bytes: int = 0
    batches: int = 0
    events: int = 0  # only counted by full clients
    seq_gaps: int = 0  # only counted by full clients
    max_seq: int = 0
    pings: int = 0
    close_code: int | None = None
    last_frame_at: float = 0.0


class LeanClient(asyncio.Protocol):
    def __init__(
        self,
        request: bytes,
        samples: list[tuple[float, float]],
        sample_every: int = 50,
        full: bool = False,
    ) -> None:
        self.request = request
        self.samples = samples  # (receive wall time, latency), shared by the pool
        self.sample_every = max(1, sample_every)
        self.full = full
        self.stats = ClientStats()
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._handshake = bytearray()
        self._upgraded = False
        self._head = bytearray()  # frame header bytes gathered so far
        self._in_payload = False
        self._opcode = 0
        self._remaining = 0  # payload bytes of the current frame not yet seen
        self._want = 0  # payload bytes of the current frame to keep (the rest is skipped)
        self._length = 0
        self._kept = bytearray()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self._upgraded:
            self._handshake += data
            end = self._handshake.find(b"\r\n\r\n")
            if end < 0:
                if len(self._handshake) > 65536 and not self.opened.done():
                    self.opened.set_exception(ConnectionError("no end of handshake response"))
                return
            status = bytes(self._handshake[: self._handshake.find(b"\r\n")])
            if b" 101 " not in status + b" ":
                if not self.opened.done():
                    self.opened.set_exception(ConnectionError(f"handshake refused: {status!r}"))
                assert self.transport is not None
                self.transport.close()
                return
            self._upgraded = True
            data = bytes(self._handshake[end + 4 :])
            self._handshake.clear()
            if not self.opened.done():
                self.opened.set_result(None)
        if data:
            self._feed(data, now)

    # Frames

    def _feed(self, data: bytes, now: float) -> None:
        pos, n = 0, len(data)
        while pos < n:
            if self._in_payload:
                missing = self._want - len(self._kept)
                if missing > 0:
                    take = min(missing, n - pos)
                    self._kept += data[pos : pos + take]
                else:
                    take = min(self._remaining, n - pos)
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._end_frame(now)
                continue
            head = self._head
            take = min(self._header_length() - len(head), n - pos)
            head += data[pos : pos + take]
            pos += take
            if len(head) == self._header_length():
                self._start_frame(now)

    def _header_length(self) -> int:
        head = self._head
        if len(head) < 2:
            return 2
        code = head[1] & 0x7F
        return 2 + (2 if code == 126 else 8 if code == 127 else 0) + (4 if head[1] & 0x80 else 0)

    def _start_frame(self, now: float) -> None:
        head = self._head
        code = head[1] & 0x7F
        if code == 126:
            (length,) = struct.unpack_from("!H", head, 2)
        elif code == 127:
            (length,) = struct.unpack_from("!Q", head, 2)
        else:
            length = code
        self._opcode = head[0] & 0x0F
        head.clear()
        self._length = self._remaining = length
        if self._opcode in (OP_TEXT, OP_CONT):
            sampled = self.full or self.stats.text_frames % self.sample_every == 0
            self._want = length if sampled else min(length, PREFIX_LEN)
        else:
            self._want = length  # control frames are small; keep them
        self._kept.clear()
        self._in_payload = True
        if length == 0:
            self._end_frame(now)

    def _end_frame(self, now: float) -> None:
        self._in_payload = False
        op = self._opcode
        stats = self.stats
        if op in (OP_TEXT, OP_CONT, OP_BINARY):
            stats.text_frames += 1
            stats.text_bytes += self._length
            stats.last_frame_at = now
            kept = self._kept
            if kept[:PREFIX_LEN] == BATCH_PREFIX:
                stats.batches += 1
                if len(kept) == self._length and self._length > PREFIX_LEN:
                    self._sample(bytes(kept), now)
        elif op == OP_PING:
            stats.pings += 1
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(masked_frame(bytes(self._kept), OP_PONG))
        elif op == OP_CLOSE:
            stats.close_code = struct.unpack_from("!H", self._kept)[0] if len(self._kept) >= 2 else 1005
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(masked_frame(bytes(self._kept[:2]), OP_CLOSE))
                self.transport.close()
        self._kept.clear()

    def _sample(self, payload: bytes, now: float) -> None:
        try:
            msg = json.loads(payload)
        except ValueError:
            return
        seq, sent_at = msg.get("seq"), msg.get("sent_at")
        if isinstance(sent_at, int | float):
            self.samples.append((now, now - sent_at))
        if isinstance(seq, int):
            stats = self.stats
            if self.full:
                stats.events += len(msg.get("events") or ())
                if stats.max_seq and seq != stats.max_seq + 1:
                    stats.seq_gaps += 1
            stats.max_seq = max(stats.max_seq, seq)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(masked_frame(struct.pack("!H", 1000), OP_CLOSE))
            self.transport.close()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class LeanPool:
    """N lean connections in this process."""

    host: str
    port: int
    path: str = "/ws"
    sample_every: int = 50
    clients: list[LeanClient] = field(default_factory=list)
    samples: list[tuple[float, float]] = field(default_factory=list)
    connect_failures: int = 0

    async def connect(
        self,
        count: int,
        *,
        full_clients: int = 0,
        rcvbuf: int | None = None,
        concurrency: int = 50,
        timeout: float = 30.0,
    ) -> int:
        """Open ``count`` connections (the first ``full_clients`` of them decode every frame)."""
        loop = asyncio.get_running_loop()
        request = handshake_request(self.host, self.port, self.path)
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> LeanClient | None:
            async with gate:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                if rcvbuf is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
                try:
                    async with asyncio.timeout(timeout):
                        await loop.sock_connect(sock, (self.host, self.port))
                        _, proto = await loop.create_connection(
                            lambda: LeanClient(request, self.samples, self.sample_every, i < full_clients),
                            sock=sock,
                        )
                        await proto.opened
                        return proto
                except (OSError, TimeoutError):
                    sock.close()
                    return None

        results = await asyncio.gather(*(one(i) for i in range(count)))
        opened = [c for c in results if c is not None]
        self.connect_failures += count - len(opened)
        self.clients.extend(opened)
        return len(opened)

    def snapshot(self) -> dict[str, Any]:
        stats = [c.stats for c in self.clients]
        full = [s for c, s in zip(self.clients, stats, strict=True) if c.full]
        return {
            "wall": time.time(),
            "mono": time.monotonic(),
            "cpu": cpu_seconds(),
            "clients": len(self.clients),
            "open": sum(1 for c in self.clients if not c.lost.done()),
            "text_frames": sum(s.text_frames for s in stats),
            "text_bytes": sum(s.text_bytes for s in stats),
            "batches": sum(s.batches for s in stats),
            "batches_min": min((s.batches for s in stats), default=0),
            "batches_max": max((s.batches for s in stats), default=0),
            "full_events": sum(s.events for s in full),
            "full_seq_gaps": sum(s.seq_gaps for s in full),
            "max_seq": max((s.max_seq for s in stats), default=0),
            "pings": sum(s.pings for s in stats),
            "closed_by_server": sum(1 for s in stats if s.close_code is not None),
            "last_frame_at": max((s.last_frame_at for s in stats), default=0.0),
            "samples": len(self.samples),
        }

    def latencies(self, start: dict[str, Any], end: dict[str, Any]) -> list[float]:
        return [lat for _, lat in self.samples[start["samples"] : end["samples"]]]

    async def close(self, timeout: float = 5.0) -> None:
        for c in self.clients:
            c.close()
        pending = [c.lost for c in self.clients if not c.lost.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        for c in self.clients:
            if c.transport is not None and not c.lost.done():
                c.transport.abort()


def window(start: dict[str, Any], end: dict[str, Any], latencies: list[float]) -> dict[str, Any]:
    """Rates and CPU share between two snapshots."""
    wall = max(end["mono"] - start["mono"], 1e-9)
    cpu = end["cpu"] - start["cpu"]
    ordered = sorted(latencies)

    def q(p: float) -> float | None:
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))] if ordered else None

    return {
        "seconds": wall,
        "frames_per_s": (end["text_frames"] - start["text_frames"]) / wall,
        "batches_per_s": (end["batches"] - start["batches"]) / wall,
        "bytes_per_s": (end["text_bytes"] - start["text_bytes"]) / wall,
        "full_events_per_s": (end["full_events"] - start["full_events"]) / wall,
        "cpu_seconds": cpu,
        "cpu_share": cpu / wall,
        "saturated": cpu / wall > 0.9,
        "latency_samples": len(ordered),
        "latency_p50": q(0.50),
        "latency_p99": q(0.99),
        "latency_max": ordered[-1] if ordered else None,
    }


async def run_clients(
    host: str, port: int, count: int, seconds: float, *, path: str = "/ws", sample_every: int = 50
) -> dict[str, Any]:
    """Connect ``count`` lean clients, receive for ``seconds``, close them, and report the window."""
    pool = LeanPool(host, port, path, sample_every)
    await pool.connect(count, full_clients=1)
    try:
        start = pool.snapshot()
        await asyncio.sleep(seconds)
        end = pool.snapshot()
    finally:
        await pool.close()
    return {"connected": len(pool.clients), "failed": pool.connect_failures, "start": start, "end": end,
            **window(start, end, pool.latencies(start, end))}  # fmt: skip


# The child process a benchmark drives


async def _serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    pool = LeanPool(args.host, args.port, args.path, args.sample_every)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def emit(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    connected = await pool.connect(args.clients, full_clients=args.full_clients)
    emit({"ready": connected, "failed": pool.connect_failures})
    marks: list[dict[str, Any]] = []
    deadline = loop.time() + args.max_seconds
    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    line = await reader.readline()
            except TimeoutError:
                break
            command = line.decode().strip()
            if command == "mark":
                marks.append(pool.snapshot())
                emit({"mark": marks[-1]})
            elif command in ("stop", ""):  # "" is end of input: the parent went away
                break
    finally:
        final = pool.snapshot()
        report: dict[str, Any] = {"final": final}
        if len(marks) >= 2:
            report["window"] = window(marks[0], marks[1], pool.latencies(marks[0], marks[1]))
        await pool.close()
        emit(report)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="N lean WebSocket clients, driven over stdin (mark, stop)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/ws")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--full-clients", type=int, default=1, help="clients that decode every frame")
    p.add_argument("--sample-every", type=int, default=50, help="decode every K-th text frame for latency")
    p.add_argument("--max-seconds", type=float, default=300.0, help="exit after this long whatever happens")
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
