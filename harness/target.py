"""The server under test, running: its process, its logs and its metrics.

``Target`` runs the server a target file describes (``harness.targetspec``) on a free loopback
port, in a process group of its own, and records into the run's history what it does (``target``),
what it logs (``log``) and what it reports (``metrics``). Everything it starts it stops, by pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import resource
import signal
import socket
import sqlite3
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from prometheus_client.parser import text_string_to_metric_families

from harness.history import History
from harness.process import Child, start_child
from harness.promexpr import Sample, registry_size
from harness.targetspec import HARNESS_PARAMS, PROJECT_ROOT, LogSpec, TargetError, TargetSpec, expand
from harness.tasks import stop_tasks, within

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
LOG_NAME = "target.log"
LOG_TAIL_LINES = 20
MAX_LOG_LINE = 16 * 1024  # longer lines are cut in the history (the log file keeps them)
FOLLOW_INTERVAL = 0.05
FOLLOW_CHUNK = 1024 * 1024  # read at most this much of the log per turn of the event loop
SAMPLE_INTERVAL = 0.2
READY_POLL = 0.05
HEALTH_TIMEOUT = 1.0
METRICS_TIMEOUT = 0.5
KILL_WAIT = 5.0

# How servers say they could not bind: Python's OSError, Go's, Node's, and the monitor's own words.
_PORT_IN_USE_RE = re.compile(r"address already in use|errno 98\b|eaddrinuse|port \d+ .*already in use", re.I)


class TargetPortInUse(TargetError):
    """The target's port was taken by another process."""

    default_hint = "another process holds that port: stop it, or let the harness pick another (a new Target)"


# ---------------------------------------------------------------------------------------------
# Small helpers


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def parse_metrics(text: str, clients_name: str | None) -> tuple[float | None, dict[str, float]]:
    """Prometheus text: (the clients gauge's value or None, every sample by name and labels)."""
    values: dict[str, float] = {}
    samples: list[Sample] = []
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
                samples.append((sample.name, sample.labels, sample.value))
    except (ValueError, TypeError, IndexError):
        return None, {}
    clients = registry_size(samples, clients_name)
    if clients is not None and float(clients).is_integer():
        clients = int(clients)
    return clients, values


def _port_holder(host: str, port: int) -> str:
    """' (pid N, name)' for whoever listens on the port, when the system tells."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                with contextlib.suppress(psutil.Error):
                    return f" (by pid {conn.pid}, {psutil.Process(conn.pid).name()})"
                return f" (by pid {conn.pid})"
    return ""


def established_peers(processes: list[psutil.Process], port: int) -> list[int] | None:
    """The remote ports of the ESTABLISHED TCP connections ``processes`` hold on their local ``port``
    (each names one connection across samples); None when the system does not tell."""
    peers: list[int] = []
    told = False
    for process in processes:
        try:
            connections = process.net_connections(kind="tcp")
        except psutil.Error:
            continue
        told = True
        peers += [c.raddr.port for c in connections
                  if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port and c.raddr]  # fmt: skip
    return sorted(peers) if told else None


# ---------------------------------------------------------------------------------------------
# The log follower


class LogFollower:
    """Turns each line of the target's log file into a ``log`` record, across restarts."""

    def __init__(self, path: Path, spec: LogSpec, history: History) -> None:
        self.path = path
        self.spec = spec
        self.history = history
        self.offset = 0
        self.lineno = 0
        self._partial = b""

    async def run(self) -> None:
        while True:
            more = self.read_chunk() == FOLLOW_CHUNK  # then yield to the loop and read on at once
            await asyncio.sleep(0 if more else FOLLOW_INTERVAL)

    def read(self, final: bool = False) -> None:
        """Record every complete line written since the last read (and, if final, an unfinished one)."""
        while self.read_chunk() == FOLLOW_CHUNK:
            pass
        if final and self._partial:
            partial, self._partial = self._partial, b""
            self._record(partial.decode("utf-8", errors="replace").rstrip("\r"))

    def read_chunk(self) -> int:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read(FOLLOW_CHUNK)
        except FileNotFoundError:
            return 0
        self.offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        if len(self._partial) > MAX_LOG_LINE * 4:  # no newline for this long: record what there is
            lines.append(self._partial)
            self._partial = b""
        for line in lines:
            self._record(line.decode("utf-8", errors="replace").rstrip("\r"))
        return len(data)

    def _record(self, line: str) -> None:
        self.lineno += 1
        if not line.strip():
            return
        level, message = self.spec.parse(line)
        fields: dict[str, Any] = {"level": level, "line": line[:MAX_LOG_LINE], "lineno": self.lineno}
        if message is not None:
            fields["message"] = message[:MAX_LOG_LINE]
        self.history.record("log", **fields)


# ---------------------------------------------------------------------------------------------
# The target process


class Target:
    """One server under test on a loopback port that stays the same across restarts.

    Use ``async with Target(spec, workdir, history) as target:``; it is stopped on the way out,
    whatever happens. ``params`` override the target file's; keys it does not have are ignored
    (a scenario written for the monitor can run against another target) and listed in
    ``ignored_params``.
    """

    def __init__(
        self, spec: TargetSpec, workdir: Path, history: History, params: Mapping[str, Any] | None = None
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.history = history
        overrides = dict(params or {})
        # Params the harness applies itself (a target param of the same name wins).
        given = {k: overrides.pop(k) for k in HARNESS_PARAMS if k in overrides and k not in spec.params}
        self.nofile: int | None = given.get("nofile")
        self.ignored_params = sorted(k for k in overrides if k not in spec.params)
        self.params = {**spec.params, **{k: v for k, v in overrides.items() if k in spec.params}}
        self.spec = spec.with_params(self.params)  # the dialect's options may name params
        spec.ensure_generated_env()
        if self.ignored_params:
            log.info("target %s has no params %s: ignored", spec.name, ", ".join(self.ignored_params))
        self.host = LOOPBACK
        self.port = free_port(self.host)
        self.log_path = self.workdir / LOG_NAME
        self.pid: int | None = None  # of the latest process, kept after it stops
        self.returncode: int | None = None
        self._process: Child | None = None
        self._ps: psutil.Process | None = None
        self._children: dict[int, psutil.Process] = {}
        self._follower = LogFollower(self.log_path, spec.logs, history)
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._log_start = 0
        self._started_once = False
        self._paused = False
        self._stopping = False
        self._exit_recorded = False
        self._lock = asyncio.Lock()  # start, stop, kill9 and restart one at a time

    async def __aenter__(self) -> Target:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- addresses ------------------------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.spec.ws_path}"

    def http_url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path if path.startswith('/') else '/' + path}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    @property
    def counts_sockets(self) -> bool:
        """Without a registry gauge, the registry size is the count of the process's client sockets."""
        return self.spec.metrics is None or self.spec.metrics.clients is None

    @property
    def paused(self) -> bool:
        return self._paused and self.running

    def placeholders(self) -> dict[str, Any]:
        return {"python": sys.executable, "host": self.host, "port": self.port, "workdir": self.workdir, **self.params}

    def command(self) -> list[str]:
        values = self.placeholders()
        return [expand(part, values) for part in self.spec.command]

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Launch the target and wait until it is ready; TargetError (with its log tail) if not."""
        async with self._lock:
            await self._start()

    async def restart(self) -> None:
        """Stop the target if it runs, then start it again on the same port and workdir."""
        async with self._lock:
            await self._stop(10.0)
            await self._start()

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; records stopping and stopped. Safe to call twice."""
        async with self._lock:
            await self._stop(timeout)

    async def kill9(self) -> None:
        """SIGKILL the target's process group at once (a crash); records killed."""
        async with self._lock:
            await self._kill9()

    async def _start(self) -> None:
        if self.running:
            raise TargetError(f"target {self.spec.name} is already running (pid {self.pid})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._prepare_feed_files()
        self._check_port_free()
        self._launch()
        self.history.record("target", event="started", pid=self.pid, code=None, port=self.port)
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        self._tasks = [
            asyncio.create_task(self._follower.run(), name=f"target-log-{self.spec.name}"),
            asyncio.create_task(self._sample_loop(), name=f"target-metrics-{self.spec.name}"),
        ]
        try:
            await self._wait_ready()
        except BaseException:
            await self._stop(timeout=2.0)
            raise
        self.history.record("target", event="ready", pid=self.pid, code=None)

    async def _stop(self, timeout: float) -> None:
        process = self._process
        if process is None:
            return
        if process.running:
            self._stopping = True
            self.history.record("target", event="stopping", pid=process.pid, code=None)
            await self._terminate(process, timeout)
            await self._finish()
            self.history.record("target", event="stopped", pid=process.pid, code=process.returncode)
        else:
            await self._finish()
            self._record_exit()
        self.returncode = process.returncode
        self._process = None

    async def _kill9(self) -> None:
        process = self._require_running("kill")
        self._stopping = True
        self.history.record("target", event="killed", pid=process.pid, code=None)
        process.signal(signal.SIGKILL, group=True)
        await process.wait(KILL_WAIT)
        process.kill_group()
        await self._finish()
        self.returncode = process.returncode
        self._process = None

    async def pause(self) -> None:
        """SIGSTOP the target's process group: it holds its sockets but answers nothing."""
        process = self._require_running("pause")
        if not self._paused:
            process.signal(signal.SIGSTOP, group=True)
            self._paused = True
            self.history.record("target", event="paused", pid=process.pid, code=None)

    async def resume(self) -> None:
        process = self._require_running("resume")
        if self._paused:
            process.signal(signal.SIGCONT, group=True)
            self._paused = False
            self.history.record("target", event="resumed", pid=process.pid, code=None)

    async def health(self) -> bool:
        """One ready check with a 1 s timeout. (A paused target still accepts TCP connections.)"""
        return self.running and await self._probe(HEALTH_TIMEOUT)

    def stored_ids(self) -> list[str] | None:
        """The fed ids the target persisted (read-only, best after stop); None without persistence."""
        spec = self.spec.persistence
        if spec is None:
            return None
        db = spec.db_path(self.workdir)
        if not db.is_file():
            raise TargetError(
                f"target {self.spec.name}: its database {db} does not exist",
                hint=f"persistence.sqlite in {self.spec.path} names it; did the target start?",
            )
        try:
            conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
            try:
                rows = conn.execute(spec.query).fetchall()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise TargetError(
                f"target {self.spec.name}: cannot read {db} with persistence.query {spec.query!r}: {exc}"
            ) from exc
        return [str(row[0]) for row in rows if row and row[0] is not None]

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines the current (or latest) process wrote to target.log."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self._log_start)
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- starting -------------------------------------------------------------------------------

    def _prepare_feed_files(self) -> None:
        """Empty feed files on the first start; on a restart keep them (the target resumes)."""
        if self.spec.feed is None:
            return
        for path in self.spec.feed.paths(self.workdir).values():
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb" if not self._started_once else "ab"):
                pass

    def _check_port_free(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As servers bind: connections of a previous run in TIME_WAIT do not count.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, self.port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise TargetPortInUse(
                        f"target {self.spec.name}: port {self.port} on {self.host} is already in use"
                        f"{_port_holder(self.host, self.port)}"
                    ) from exc
                raise TargetError(f"target {self.spec.name}: cannot use {self.host}:{self.port}: {exc}") from exc

    def _launch(self) -> None:
        command = self.command()
        values = self.placeholders()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **{k: expand(v, values) for k, v in self.spec.env.items()}}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        with self.log_path.open("ab") as log_file:
            self._log_start = log_file.tell()
            if not self._started_once:
                self._follower.offset = self._log_start  # lines of an earlier run are not this run's
            try:
                self._process = start_child(command, name=f"target {self.spec.name}", output=log_file, env=env,
                                            cwd=self.spec.cwd, die_with_parent=signal.SIGTERM)  # fmt: skip
            except OSError as exc:
                raise self._launch_error(command[0], exc) from exc
        self._started_once = True
        self._paused = self._stopping = self._exit_recorded = False
        self.pid, self.returncode = self._process.pid, None
        self._limit_files(self._process.pid)
        self._children = {}
        try:
            self._ps = psutil.Process(self._process.pid)
            self._ps.cpu_percent(None)  # the first call only sets the baseline
        except psutil.Error:
            self._ps = None

    def _limit_files(self, pid: int) -> None:
        """Apply the ``nofile`` param (soft and hard, so a runtime cannot raise it) to the new process."""
        if self.nofile is None:
            return
        try:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (int(self.nofile), int(self.nofile)))
        except (OSError, ValueError, TypeError) as exc:
            assert self._process is not None
            self._process.kill_group()
            limit = f"{self.nofile!r}"
            raise TargetError(f"target {self.spec.name}: cannot set its nofile limit to {limit}: {exc}") from exc

    def _launch_error(self, program: str, exc: OSError) -> TargetError:
        where = f"command[0] in {self.spec.path}" if self.spec.path else "command[0]"
        if isinstance(exc, FileNotFoundError):
            problem = "no such program (not a path that exists, nor on PATH)"
        elif isinstance(exc, PermissionError):
            problem = "not executable"
        else:
            problem = exc.strerror or str(exc)
        return TargetError(f"target {self.spec.name}: cannot run {program!r}: {problem}", hint=f"check {where}")

    async def _wait_ready(self) -> None:
        assert self._process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.spec.ready.timeout
        while True:
            code = self._process.returncode
            if code is not None:
                self._follower.read(final=True)
                raise self._exited_error(code)
            if self._listens() and await self._probe(HEALTH_TIMEOUT):
                return
            if loop.time() > deadline:
                raise TargetError(
                    f"target {self.spec.name} (pid {self.pid}) was not ready within {self.spec.ready.timeout:g} s "
                    f"({self._ready_what()}){self._tail_block()}",
                    hint=f"its whole log is {self.log_path}; ready.timeout in the target file sets the wait",
                )
            await asyncio.sleep(READY_POLL)

    def _ready_what(self) -> str:
        if not self._listens():
            return f"it does not listen on {self.host}:{self.port}: does its command use {{port}}?"
        return f"GET {self.http_url(self.spec.ready.http or '/')} did not answer 2xx"

    def _exited_error(self, code: int) -> TargetError:
        tail = self.log_tail()
        if _PORT_IN_USE_RE.search(tail):
            return TargetPortInUse(
                f"target {self.spec.name} could not listen: a port it needs is already in use "
                f"(its port is {self.port} on {self.host}){self._tail_block(tail)}"
            )
        return TargetError(
            f"target {self.spec.name} exited with code {code} before it was ready"
            f"\ncommand: {' '.join(self.command())}{self._tail_block(tail)}",
            hint=f"its whole log is {self.log_path}",
        )

    def _tail_block(self, tail: str | None = None) -> str:
        tail = self.log_tail() if tail is None else tail
        if not tail:
            return f"\n(it wrote nothing to {self.log_path})"
        return f"\n--- last lines of {self.log_path} ---\n{tail}"

    def _listens(self) -> bool:
        """Whether the target's process (or a child) listens on the port: not some other server."""
        if self._ps is None:
            return True
        try:
            processes = [self._ps, *self._ps.children(recursive=True)]
        except psutil.Error:
            return True
        for process in processes:
            try:
                connections = process.net_connections(kind="tcp")
            except psutil.AccessDenied:
                return True
            except psutil.Error:
                continue
            if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == self.port for c in connections):
                return True
        return False

    async def _probe(self, timeout: float) -> bool:
        if self.spec.ready.http is None:
            return await self._probe_tcp(timeout)
        if self._session is None:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
                return await self._probe_http(session, timeout)
        return await self._probe_http(self._session, timeout)

    async def _probe_http(self, session: aiohttp.ClientSession, timeout: float) -> bool:
        assert self.spec.ready.http is not None
        try:
            async with session.get(
                self.http_url(self.spec.ready.http), timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                await response.read()
                return 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def _probe_tcp(self, timeout: float) -> bool:
        try:
            _, writer = await within(timeout, asyncio.open_connection(self.host, self.port))
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    # -- stopping -------------------------------------------------------------------------------

    def _require_running(self, action: str) -> Child:
        if self._process is None or not self._process.running:
            raise TargetError(f"cannot {action} target {self.spec.name}: it is not running")
        return self._process

    async def _terminate(self, process: Child, timeout: float) -> None:
        resume, self._paused = self._paused, False
        await process.stop(timeout, group=True, resume=resume)
        process.kill_group()  # children the target left behind

    async def _finish(self) -> None:
        """Stop the background tasks and record the last log lines."""
        tasks, self._tasks = self._tasks, []
        failed = await stop_tasks(*tasks)
        self._follower.read(final=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if failed is not None:
            raise failed

    def _record_exit(self) -> None:
        """Record that the process ended by itself (not stopped, killed or paused by us)."""
        if self._process is None or self._stopping or self._exit_recorded:
            return
        self._exit_recorded = True
        self.history.record("target", event="exited", pid=self._process.pid, code=self._process.returncode)

    # -- sampling -------------------------------------------------------------------------------

    async def _sample_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += SAMPLE_INTERVAL
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            if self._process is None or not self._process.running:
                self._record_exit()
                return
            clients, values = await self._fetch_metrics()
            if not self._process.running:  # it ended while the metrics were fetched: no figures of a dead process
                self._record_exit()
                return
            values.update(self._process_stats())
            peers = established_peers(self._tracked_processes(), self.port) if self._ps is not None else None
            if self.counts_sockets:
                sockets = None if peers is None else len(peers)
                self.history.record("metrics", clients=sockets, values=values, source="sockets")
            else:
                # peers: the connections the process still holds open (by remote port), whatever its gauge says
                self.history.record("metrics", clients=clients, values=values, peers=peers,
                                    resources=self._resources(values))  # fmt: skip
            next_at = max(next_at, loop.time())

    async def _fetch_metrics(self) -> tuple[float | None, dict[str, float]]:
        spec = self.spec.metrics
        if spec is None or self._session is None:
            return None, {}
        try:
            async with self._session.get(
                self.http_url(spec.path), timeout=aiohttp.ClientTimeout(total=METRICS_TIMEOUT)
            ) as response:
                if response.status != 200:
                    return None, {}
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError, OSError, UnicodeDecodeError):
            return None, {}
        return parse_metrics(text, spec.clients)

    def _resources(self, values: dict[str, float]) -> dict[str, float]:
        """The values of the target file's resource gauges (``metrics.resources``) this sample has."""
        names = self.spec.metrics.resources if self.spec.metrics is not None else ()
        return {name: values[name] for name in names if name in values}

    def _process_stats(self) -> dict[str, float]:
        """CPU%, RSS, open files and threads of the target's process and its children."""
        if self._ps is None:
            return {}
        stats = {"cpu_percent": 0.0, "rss_bytes": 0, "num_fds": 0, "num_threads": 0}
        read = 0
        for process in self._tracked_processes():
            try:
                with process.oneshot():
                    stats["cpu_percent"] += process.cpu_percent(None)
                    stats["rss_bytes"] += process.memory_info().rss
                    stats["num_fds"] += process.num_fds()
                    stats["num_threads"] += process.num_threads()
                read += 1
            except psutil.Error:
                continue
        if not read:  # the process was gone: zeros would read as a process that holds nothing
            return {}
        stats["cpu_percent"] = round(stats["cpu_percent"], 1)
        return stats

    def _tracked_processes(self) -> list[psutil.Process]:
        assert self._ps is not None
        with contextlib.suppress(psutil.Error):
            current = {p.pid: p for p in self._ps.children(recursive=True)}
            # Keep the Process objects we already have: cpu_percent measures since the last call.
            self._children = {pid: self._children.get(pid, p) for pid, p in current.items()}
        return [self._ps, *self._children.values()]
