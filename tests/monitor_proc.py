"""The monitor as a real process (``python -m monitor``), for signals, crashes and its log output."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class MonitorProcess:
    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_records(self) -> list[dict]:
        records = []
        for line in self.stderr_path.read_text(errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                records.append({"level": "RAW", "msg": line})
        return records

    def loud_records(self) -> list[dict]:
        """Records at WARNING or above, and anything that is not a log record (a bare traceback)."""
        return [r for r in self.log_records() if r.get("level") not in ("DEBUG", "INFO")]

    def health(self) -> dict:
        with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as resp:
            return json.load(resp)


def wait_healthy(mon: MonitorProcess, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mon.proc.poll() is not None:
            raise AssertionError(f"monitor exited: {mon.stderr_path.read_text()[-2000:]}")
        try:
            mon.health()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("monitor did not become healthy")


@contextmanager
def monitor_process(tmp_path: Path, nodes: dict[str, Path], *extra: str, port: int | None = None,
                    wrapper: tuple[str, ...] = ()) -> Iterator[MonitorProcess]:
    """``wrapper`` runs the monitor under another command, e.g. ``("prlimit", "--nofile=64")``."""
    port = port or free_port()
    args = [*wrapper, sys.executable, "-m", "monitor", "--port", str(port), "--db", str(tmp_path / "monitor.db"),
            "--log-format", "json", *extra]
    for name, path in nodes.items():
        args += ["--node", f"{name}:{path}"]
    stderr_path = tmp_path / f"monitor-{port}-{time.monotonic_ns()}.log"
    with stderr_path.open("wb") as err:
        proc = subprocess.Popen(args, stdout=err, stderr=err, cwd=Path(__file__).parent.parent,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    mon = MonitorProcess(proc, port, stderr_path)
    try:
        wait_healthy(mon)
        yield mon
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
