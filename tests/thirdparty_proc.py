"""Centrifugo and the Socket.IO app as real loopback processes, for the tests and the frame recorder.

Both come from ``.tools`` (installed by ``scripts/bootstrap``); :func:`missing_centrifugo` and
:func:`missing_socketio` say why one cannot run, so a test can skip with that reason.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.targets.centrifugo_config import write_config
from tests.monitor_proc import free_port

ROOT = Path(__file__).resolve().parent.parent
CENTRIFUGO = ROOT / ".tools" / "bin" / "centrifugo"
SOCKETIO_MODULES = ROOT / ".tools" / "socketio" / "node_modules"
SOCKETIO_SERVER = ROOT / "harness" / "targets" / "socketio" / "server.js"
API_KEY = "wschaos-test-api-key"


def missing_centrifugo() -> str | None:
    if not CENTRIFUGO.is_file():
        return f"{CENTRIFUGO.relative_to(ROOT)} is missing (scripts/bootstrap installs it when Go is there)"
    return None


def missing_socketio() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (SOCKETIO_MODULES / "socket.io").is_dir():
        return f"{SOCKETIO_MODULES.relative_to(ROOT)}/socket.io is missing (scripts/bootstrap installs it with npm)"
    return None


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def post_json(self, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(self.base + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.load(resp)

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, then wait for the exit; SIGKILL only if it does not come."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            raise AssertionError(f"pid {self.proc.pid} ignored SIGTERM for {timeout} s") from None


def _wait_ready(server: ServerProcess, path: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(f"server exited with {server.proc.returncode}: {server.log_text()[-2000:]}")
        try:
            with urllib.request.urlopen(server.base + path, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"server on port {server.port} not ready: {server.log_text()[-2000:]}")


@contextmanager
def _running(args: list[str], port: int, log_path: Path, ready_path: str,
             env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})})
    server = ServerProcess(proc, port, log_path)
    try:
        _wait_ready(server, ready_path)
        yield server
    finally:
        if proc.poll() is None:
            server.terminate()


@contextmanager
def centrifugo_process(workdir: Path, **options: Any) -> Iterator[ServerProcess]:
    """Centrifugo with :func:`harness.targets.centrifugo_config.centrifugo_config` (``options`` go there)."""
    port = free_port()
    config = write_config(workdir / f"centrifugo-{port}.json", port, API_KEY, **options)
    with _running([str(CENTRIFUGO), "--config", str(config)], port, workdir / f"centrifugo-{port}.log",
                  "/health") as server:
        yield server


@contextmanager
def socketio_process(workdir: Path, ping_interval_ms: int = 25000, ping_timeout_ms: int = 20000
                     ) -> Iterator[ServerProcess]:
    port = free_port()
    args = ["node", str(SOCKETIO_SERVER), "--port", str(port), "--ping-interval", str(ping_interval_ms),
            "--ping-timeout", str(ping_timeout_ms)]
    with _running(args, port, workdir / f"socketio-{port}.log", "/health",
                  env={"NODE_PATH": str(SOCKETIO_MODULES)}) as server:
        yield server
