"""Shared parts of the benchmarks: the machine description, RESULTS.md, the monitor as a pinned
subprocess, a storagenode log feeder, and small readers for /healthz, /metrics and /proc/net/tcp."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"

SATELLITES = (
    "12EayRS2V1kEsWESU9QMRseFhdxYxKicsiFmxrsLZHeLUtdps3S",
    "121RTSDpyNZVcEU84Ticf2L1ntiuUimbWgfATz21tuvgk3vzoA6",
    "1wFTAgs9DP5RSnCqKV1eLf6N9wtk4EAtmN5DpSxcs8EjT69tGE",
)


# The machine and the record


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        import aiohttp

        aiohttp_version = aiohttp.__version__
    except ImportError:
        aiohttp_version = "not installed"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "aiohttp": aiohttp_version,
        "os": f"{platform.system()} {platform.release()}",
    }


def machine_line() -> str:
    m = machine()
    return f"nproc {m['nproc']}, CPU {m['cpu']}, Python {m['python']}, aiohttp {m['aiohttp']}, {m['os']}"


def command_line() -> str:
    """The command as run, with the interpreter and script relative to the repository when they are inside it."""
    parts = [sys.executable, *sys.argv]
    out = []
    for part in parts:
        with contextlib.suppress(ValueError):
            part = str(Path(part).absolute().relative_to(ROOT))
        out.append(part)
    return shlex.join(out)


def append_results(title: str, body: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    section = (
        f"\n## {title} ({stamp})\n\n- Machine: {machine_line()}\n- Command: `{command_line()}`\n\n{body.rstrip()}\n"
    )
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by the scripts in this folder; newest last.\n")
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(section)
    print(f"\nappended to {RESULTS.relative_to(ROOT)}")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table, readable as plain text too."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


# Processes and cores


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(argv: list[str], core: int) -> list[str]:
    """``argv`` under ``taskset -c core`` when taskset exists and the core does."""
    taskset = shutil.which("taskset")
    if taskset is None or core >= (os.cpu_count() or 1):
        return argv
    return [taskset, "-c", str(core), *argv]


def pin_self(core: int) -> bool:
    if core >= (os.cpu_count() or 1) or not hasattr(os, "sched_setaffinity"):
        return False
    os.sched_setaffinity(0, {core})
    return True


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM by pid, then SIGKILL by pid if it does not exit within ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


@dataclass
class Monitor:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    stderr_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthz(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base}/healthz", timeout=5) as resp:
            return json.load(resp)

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=5) as resp:
            return parse_metrics(resp.read().decode())

    def loud_lines(self) -> list[str]:
        """The monitor's own log records at WARNING or above, and anything that is not a record."""
        loud = []
        for line in self.stderr_path.read_text(errors="replace").splitlines():
            try:
                level = json.loads(line).get("level")
            except ValueError:
                level = "RAW"
            if level not in ("DEBUG", "INFO"):
                loud.append(line)
        return loud


def start_monitor(workdir: Path, *extra: str, core: int = 0, node: str = "node1") -> Monitor:
    """``python -m monitor`` on a free loopback port, tailing one (empty) node log in ``workdir``."""
    log_path = workdir / f"{node}.log"
    log_path.touch()
    port = free_port()
    argv = [
        sys.executable, "-m", "monitor", "--node", f"{node}:{log_path}", "--host", "127.0.0.1",
        "--port", str(port), "--db", str(workdir / "monitor.db"), "--log-format", "json", *extra,
    ]  # fmt: skip
    stderr_path = workdir / "monitor.stderr"
    with stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            pinned(argv, core), stdout=err, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    mon = Monitor(proc, port, log_path, stderr_path)
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"monitor exited: {stderr_path.read_text(errors='replace')[-2000:]}")
        try:
            mon.healthz()
            return mon
        except OSError:
            if time.monotonic() > deadline:
                stop_process(proc)
                raise RuntimeError("monitor did not answer /healthz within 20 s") from None
            time.sleep(0.05)


_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)$")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text to ``{'name{labels}': value}``."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line.strip())
        if m:
            with contextlib.suppress(ValueError):
                out[m.group(1)] = float(m.group(2))
    return out


def evictions(metrics: dict[str, float]) -> dict[str, float]:
    prefix = 'monitor_evictions_total{reason="'
    return {k[len(prefix) : -2]: v for k, v in metrics.items() if k.startswith(prefix)}


# Feeding a node log


class LineMaker:
    """storagenode ``downloaded`` / ``uploaded`` lines, made with the monitor's own ``format_line``."""

    def __init__(self, seed: int = 1, variety: int = 256) -> None:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from monitor.logparse import format_line

        rng = random.Random(seed)
        self._tails: list[str] = []
        for _ in range(variety):
            upload = rng.random() < 0.35
            fields = {
                "Piece ID": "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(52)),
                "Satellite ID": rng.choice(SATELLITES),
                "Action": "PUT" if upload else "GET",
                "Size": int(rng.lognormvariate(11, 1.6)),
                "Remote Address": f"203.0.113.{rng.randint(1, 254)}:{rng.randint(1024, 65535)}",
            }
            line = format_line("TS", "INFO", "piecestore", "uploaded" if upload else "downloaded", fields)
            self._tails.append(line[len("TS") :])
        self._i = 0

    def lines(self, count: int, now: float) -> bytes:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        out = []
        tails, n = self._tails, len(self._tails)
        for _ in range(count):
            out.append(ts + tails[self._i % n] + "\n")
            self._i += 1
        return "".join(out).encode()


class Feeder:
    """Appends lines to a log at ``rate`` lines a second, in small chunks; call ``tick`` often."""

    def __init__(self, path: Path, rate: float, max_lines: int) -> None:
        self.path = path
        self.rate = rate
        self.max_lines = max_lines
        self.maker = LineMaker()
        self.written = 0
        self._fh = path.open("ab", buffering=0)
        self._origin: float | None = None
        self._base = 0

    def start(self) -> None:
        self._origin = time.monotonic()
        self._base = self.written

    def pause(self) -> None:
        self._origin = None

    def tick(self) -> int:
        """Write the lines due since ``start``; at most a tenth of a second's worth at once."""
        if self._origin is None or self.written >= self.max_lines:
            return 0
        due = self._base + int((time.monotonic() - self._origin) * self.rate) - self.written
        count = max(0, min(due, int(self.rate / 10) + 1, self.max_lines - self.written))
        if count:
            self._fh.write(self.maker.lines(count, time.time()))
            self.written += count
        return count

    def close(self) -> None:
        self._fh.close()


# Kernel socket queues


def tcp_queues() -> dict[tuple[int, int], tuple[int, int]]:
    """``{(local port, remote port): (tx_queue, rx_queue)}`` for loopback IPv4 sockets, from /proc/net/tcp.

    tx_queue is bytes written and not yet acknowledged by the peer; rx_queue is bytes received and
    not yet read by the application.
    """
    out: dict[tuple[int, int], tuple[int, int]] = {}
    try:
        text = Path("/proc/net/tcp").read_text()
    except OSError:
        return out
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 5:
            continue
        local, remote, queues = parts[1], parts[2], parts[4]
        tx, rx = queues.split(":")
        out[(int(local.split(":")[1], 16), int(remote.split(":")[1], 16))] = (int(tx, 16), int(rx, 16))
    return out


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]
