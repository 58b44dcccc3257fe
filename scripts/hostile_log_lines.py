"""Log lines the monitor writes per hostile-client attack, by level, for a before/after table.

Each attack runs against a fresh ``python -m monitor`` process (JSON logs) on 127.0.0.1, started
from ``--root`` (a checkout of the monitor; default this repository). Every loop is bounded.

    python scripts/hostile_log_lines.py [--root DIR] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frame(payload: bytes, opcode: int = 0x1, masked: bool = True) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def upgrade(port: int, path: str = "/ws") -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(HANDSHAKE.format(path=path, port=port, key=key).encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return reader, writer, head


def rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def drain_some(reader: asyncio.StreamReader, seconds: float) -> bytes:
    data = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
        except (TimeoutError, ConnectionError):
            break
        if not chunk:
            break
        data += chunk
    return data


async def deep_json(port: int) -> str:
    reader, writer, _ = await upgrade(port)
    writer.write(frame(b"[" * 3000 + b"]" * 3000))
    data = await drain_some(reader, 1.0)
    writer.close()
    return "error reply" if b"too_deep" in data or b"bad_json" in data else "no error reply"


async def since_nonascii(port: int) -> str:
    results = []
    for since in ("%C2%B2", "1" * 5000):
        reader, writer, head = await upgrade(port, f"/ws?epoch=x&since={since}")
        data = await drain_some(reader, 0.5)
        writer.close()
        status = head.split(b" ", 2)[1].decode()
        results.append(f"{status} + resync_required" if b"resync_required" in data else status)
    return "; ".join(results)


async def pong_vanished(port: int) -> str:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(HANDSHAKE.format(path="/ws", port=port, key=key).encode())
    await reader.readuntil(b"\r\n\r\n")
    ping = frame(b"p" * 125, opcode=0x9)
    for _ in range(20):
        writer.write(ping * 1000)
        try:
            await asyncio.wait_for(writer.drain(), 1.0)
        except TimeoutError:
            break
    await asyncio.sleep(0.3)
    rst(writer)
    await asyncio.sleep(0.5)
    return "20,000 pings then RST"


async def big_headers(port: int) -> str:
    statuses = []
    for _ in range(20):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Big: {'a' * 10000}\r\n\r\n".encode())
        data = await drain_some(reader, 1.0)
        statuses.append(data.split(b"\r\n", 1)[0].decode(errors="replace"))
        writer.close()
    return f"{collections.Counter(statuses).most_common(1)[0][0]} x20"


async def unmasked(port: int) -> str:
    reader, writer, _ = await upgrade(port)
    await drain_some(reader, 0.3)
    writer.write(frame(b'{"type":"ping"}', masked=False))
    data = await drain_some(reader, 1.0)
    writer.close()
    at = data.find(b"\x88\x02")
    return f"close {struct.unpack('!H', data[at + 2 : at + 4])[0]}" if at >= 0 else "no close frame"


async def slowloris(port: int) -> str:
    writers = []
    for _ in range(50):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        writers.append((reader, writer))
    await asyncio.sleep(4.0)
    closed = 0
    for reader, writer in writers:
        try:
            await asyncio.wait_for(reader.read(100), 0.05)
            closed += 1  # EOF or an answer: the monitor let go of it
        except ConnectionError:
            closed += 1
        except TimeoutError:
            pass
        writer.close()
    return f"{closed}/50 partial-header connections closed after 4 s"


async def emfile(port: int) -> str:
    socks = []
    for _ in range(200):
        s = socket.socket()
        s.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", port)), 1.0)
        except (OSError, TimeoutError):
            s.close()
            continue
        socks.append(s)
    await asyncio.sleep(3.0)
    for s in socks:
        s.close()
    await asyncio.sleep(1.5)
    return f"{len(socks)} sockets open for 3 s (monitor under nofile=64)"


ATTACKS: dict[str, Callable[[int], Awaitable[str]]] = {
    "deep_json": deep_json,
    "since_nonascii_long": since_nonascii,
    "pong_vanished": pong_vanished,
    "big_headers": big_headers,
    "unmasked": unmasked,
    "slowloris": slowloris,
    "emfile": emfile,
}
EXTRA = {"slowloris": ["--header-timeout", "2"]}


def run_attack(name: str, root: Path, tmp: Path, new_options: bool) -> tuple[str, collections.Counter[str]]:
    port = free_port()
    log = tmp / f"{name}.log"
    node = tmp / "n1.log"
    node.touch()
    args = [
        sys.executable,
        "-m",
        "monitor",
        "--port",
        str(port),
        "--db",
        str(tmp / f"{name}.db"),
        "--log-format",
        "json",
        "--node",
        f"n1:{node}",
    ]
    if new_options:
        args += EXTRA.get(name, [])
    if name == "emfile":
        args = ["prlimit", "--nofile=64", *args]
    with log.open("wb") as err:
        proc = subprocess.Popen(args, stdout=err, stderr=err, cwd=root, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_healthy(port, proc)
        outcome = asyncio.run(asyncio.wait_for(ATTACKS[name](port), 60))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return outcome, count_levels(log)


def wait_healthy(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"monitor did not start (exit {proc.poll()})")


def count_levels(path: Path) -> collections.Counter[str]:
    levels: collections.Counter[str] = collections.Counter()
    for line in path.read_text(errors="replace").splitlines():
        try:
            levels[json.loads(line)["level"]] += 1
        except (ValueError, KeyError, TypeError):
            levels["raw"] += 1  # a traceback line or print outside the log format
    return levels


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    p.add_argument("--only", nargs="*", choices=sorted(ATTACKS), default=sorted(ATTACKS))
    p.add_argument("--old", action="store_true", help="the monitor at --root lacks the new options")
    args = p.parse_args()
    print("| attack | outcome | ERROR | WARNING | INFO | DEBUG | raw |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        for name in args.only:
            outcome, levels = run_attack(name, args.root, Path(tmp), not args.old)
            cells = " | ".join(str(levels[k]) for k in ("ERROR", "WARNING", "INFO", "DEBUG", "raw"))
            print(f"| {name} | {outcome} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
