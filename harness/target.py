"""The server under test: its target file, its process, its logs and its metrics.

A target file (YAML, checked against ``target.schema.json``) says how to start a WebSocket server
and how to watch it. ``Target`` runs one such server on a free loopback port, in a process group
of its own, and records into the run's history what it does (``target``), what it logs (``log``)
and what it reports (``metrics``). Everything it starts it stops, by pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import psutil
import yaml
from prometheus_client.parser import text_string_to_metric_families

from harness.errors import HarnessError
from harness.history import History
from harness.process import Child, start_child

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
TARGETS_DIR = Path(__file__).resolve().parent / "targets"
SCHEMA = json.loads((Path(__file__).parent / "target.schema.json").read_text(encoding="utf-8"))

BUILTIN_PLACEHOLDERS = ("python", "host", "port", "workdir")
PATH_PLACEHOLDERS = ("workdir",)  # all that feed files and the database path may use
DEFAULT_LEVEL_REGEX = r"\b(?P<level>DEBUG|INFO|WARN(?:ING)?|ERROR|CRITICAL|FATAL|PANIC)\b"
RAW_LEVEL = "RAW"

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

_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# How servers say they could not bind: Python's OSError, Go's, Node's, and the monitor's own words.
_PORT_IN_USE_RE = re.compile(r"address already in use|errno 98\b|eaddrinuse|port \d+ .*already in use", re.I)
_HINT = "see harness/targets/monitor.yaml for a complete target file"


class TargetError(HarnessError):
    """A target file that cannot be used, or a target process that did not do what was asked."""


class TargetPortInUse(TargetError):
    """The target's port was taken by another process."""

    default_hint = "another process holds that port: stop it, or let the harness pick another (a new Target)"


# ---------------------------------------------------------------------------------------------
# The target file


@dataclass(frozen=True)
class ReadySpec:
    http: str | None = None  # a path answered with 2xx once ready
    tcp: bool = False  # or: the port accepts connections
    timeout: float = 15.0


@dataclass(frozen=True)
class LogSpec:
    format: str = "text"  # json or text
    level_field: str = "level"
    message_field: str = "msg"
    level_regex: str = DEFAULT_LEVEL_REGEX

    def parse(self, line: str) -> tuple[str, str | None]:
        """The line's level (RAW when it is not a log record) and, for JSON records, its message."""
        if self.format == "json":
            return self._parse_json(line)
        match = re.search(self.level_regex, line)
        if match is None or not match.group("level"):
            return RAW_LEVEL, None
        return match.group("level").upper(), None

    def _parse_json(self, line: str) -> tuple[str, str | None]:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            return RAW_LEVEL, None
        level = record.get(self.level_field) if isinstance(record, dict) else None
        if not isinstance(level, str | int) or isinstance(level, bool):
            return RAW_LEVEL, None
        message = record.get(self.message_field)
        return str(level).upper(), message if isinstance(message, str) else None


@dataclass(frozen=True)
class MetricsSpec:
    path: str = "/metrics"
    clients: str | None = None  # the gauge giving the registry size


@dataclass(frozen=True)
class FeedSpec:
    kind: str
    files: dict[str, str]  # node name: file template ({workdir} only)

    def paths(self, workdir: Path) -> dict[str, Path]:
        return {node: workdir_path(template, workdir) for node, template in self.files.items()}


@dataclass(frozen=True)
class PersistenceSpec:
    sqlite: str  # file template ({workdir} only)
    query: str  # one fed id a row, in the first column

    def db_path(self, workdir: Path) -> Path:
        return workdir_path(self.sqlite, workdir)


@dataclass(frozen=True)
class TargetSpec:
    name: str
    command: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    ws_path: str = "/ws"
    ready: ReadySpec = field(default_factory=ReadySpec)
    logs: LogSpec = field(default_factory=LogSpec)
    metrics: MetricsSpec | None = None
    feed: FeedSpec | None = None
    persistence: PersistenceSpec | None = None
    # Overrides of the message shape (init_type, batch_type, seq, events, event_id, sent_at, epoch);
    # harness.clients.MessageShape(**messages) reads the target's messages.
    messages: dict[str, str] = field(default_factory=dict)
    path: Path | None = None  # the file it came from
    description: str = ""

    @property
    def cwd(self) -> Path:
        """Where the command runs: the target file's directory."""
        return self.path.parent if self.path is not None else Path.cwd()


def load_target(path: str | Path) -> TargetSpec:
    """Read and check a target file; a problem raises TargetError naming the file and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TargetError(f"target file {path} does not exist", hint=f"bundled targets are in {TARGETS_DIR}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"cannot read target file {path}: {exc}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TargetError(f"{path}: not valid YAML: {exc}", hint=_HINT) from exc
    return parse_target(raw, str(path), path.resolve())


def bundled_monitor() -> TargetSpec:
    """The reference target: the monitor in this repository."""
    return load_target(TARGETS_DIR / "monitor.yaml")


def parse_target(raw: Any, source: str, path: Path | None = None) -> TargetSpec:
    """Check a loaded document against the schema and the placeholder rules, and build the spec."""
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(raw), key=lambda e: list(e.absolute_path))
    if errors:
        raise TargetError("\n".join(f"{source}: {_where(e.absolute_path)}: {e.message}" for e in errors[:10]), _HINT)
    problems = _semantic_problems(raw)
    if problems:
        raise TargetError("\n".join(f"{source}: {where}: {problem}" for where, problem in problems), _HINT)
    return _build(raw, path)


def _where(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _semantic_problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    params = raw.get("params") or {}
    problems = [(f"params.{k}", f"{k!r} is a built-in placeholder") for k in params if k in BUILTIN_PLACEHOLDERS]
    known = (*BUILTIN_PLACEHOLDERS, *params)
    problems += _placeholder_problems("command", raw["command"], known)
    problems += _placeholder_problems("env", raw.get("env") or {}, known)
    problems += _placeholder_problems("feed.files", (raw.get("feed") or {}).get("files", {}), PATH_PLACEHOLDERS)
    persistence = raw.get("persistence") or {}
    problems += _placeholder_problems("persistence", {"sqlite": persistence.get("sqlite", "")}, PATH_PLACEHOLDERS)
    problems += _ready_problems(raw.get("ready") or {})
    problems += _logs_problems(raw.get("logs") or {})
    return problems


def _placeholder_problems(where: str, values: list[Any] | dict[str, Any], known: tuple[str, ...]) -> list:
    items = enumerate(values) if isinstance(values, list) else values.items()
    problems = []
    for key, value in items:
        for name in _PLACEHOLDER_RE.findall(str(value)):
            if name not in known:
                spot = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}"
                problems.append((spot, f"unknown placeholder {{{name}}} (known: {', '.join(sorted(known))})"))
    return problems


def _ready_problems(ready: dict[str, Any]) -> list[tuple[str, str]]:
    if "http" in ready and "tcp" in ready:
        return [("ready", "give either http (a path) or tcp: true, not both")]
    if ready and "http" not in ready and "tcp" not in ready:
        return [("ready", "give http (a path answered with 2xx when ready) or tcp: true")]
    return []


def _logs_problems(logs: dict[str, Any]) -> list[tuple[str, str]]:
    if logs.get("format") == "json":
        return [("logs.level_regex", "only for format: text")] if "level_regex" in logs else []
    if "level_field" in logs or "message_field" in logs:
        return [("logs", "level_field and message_field are only for format: json")]
    if "level_regex" not in logs:
        return []
    try:
        pattern = re.compile(logs["level_regex"])
    except re.error as exc:
        return [("logs.level_regex", f"does not compile: {exc}")]
    if "level" not in pattern.groupindex:
        return [("logs.level_regex", "needs a named group (?P<level>...)")]
    return []


def _build(raw: dict[str, Any], path: Path | None) -> TargetSpec:
    def optional(key: str, cls: type) -> Any:
        value = raw.get(key)
        return None if value is None else cls(**value)

    return TargetSpec(
        name=raw["name"],
        command=list(raw["command"]),
        params=dict(raw.get("params") or {}),
        env={k: _text(v) for k, v in (raw.get("env") or {}).items()},
        ws_path=raw.get("ws_path", "/ws"),
        ready=_ready(raw.get("ready")),
        logs=LogSpec(**raw.get("logs", {})),
        metrics=optional("metrics", MetricsSpec),
        feed=optional("feed", FeedSpec),
        persistence=optional("persistence", PersistenceSpec),
        messages=dict(raw.get("messages") or {}),
        path=path,
        description=raw.get("description", ""),
    )


def _ready(raw: dict[str, Any] | None) -> ReadySpec:
    """Without a ready section, a target is ready when its port accepts connections."""
    raw = raw or {}
    return ReadySpec(http=raw.get("http"), tcp="http" not in raw, timeout=raw.get("timeout", 15.0))


def _text(value: Any) -> str:
    """A placeholder value as it goes on a command line (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def expand(template: str, values: Mapping[str, Any]) -> str:
    """Replace ``{name}`` placeholders; anything else, braces included, stays as written."""
    return _PLACEHOLDER_RE.sub(lambda m: _text(values[m[1]]) if m[1] in values else m[0], template)


def workdir_path(template: str, workdir: Path) -> Path:
    path = Path(expand(template, {"workdir": workdir}))
    return path if path.is_absolute() else workdir / path


# ---------------------------------------------------------------------------------------------
# Small helpers


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def parse_metrics(text: str, clients_name: str | None) -> tuple[float | None, dict[str, float]]:
    """Prometheus text: (the clients gauge's value or None, every sample by name and labels)."""
    values: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    except (ValueError, TypeError, IndexError):
        return None, {}
    clients = values.get(clients_name) if clients_name else None
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
        self.spec = spec
        self.workdir = Path(workdir).resolve()
        self.history = history
        overrides = dict(params or {})
        self.ignored_params = sorted(k for k in overrides if k not in spec.params)
        self.params = {**spec.params, **{k: v for k, v in overrides.items() if k in spec.params}}
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
        self._children = {}
        try:
            self._ps = psutil.Process(self._process.pid)
            self._ps.cpu_percent(None)  # the first call only sets the baseline
        except psutil.Error:
            self._ps = None

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
            _, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), timeout)
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
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._follower.read(final=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

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
            values.update(self._process_stats())
            self.history.record("metrics", clients=clients, values=values)
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

    def _process_stats(self) -> dict[str, float]:
        """CPU%, RSS, open files and threads of the target's process and its children."""
        if self._ps is None:
            return {}
        stats = {"cpu_percent": 0.0, "rss_bytes": 0, "num_fds": 0, "num_threads": 0}
        for process in self._tracked_processes():
            try:
                with process.oneshot():
                    stats["cpu_percent"] += process.cpu_percent(None)
                    stats["rss_bytes"] += process.memory_info().rss
                    stats["num_fds"] += process.num_fds()
                    stats["num_threads"] += process.num_threads()
            except psutil.Error:
                continue
        stats["cpu_percent"] = round(stats["cpu_percent"], 1)
        return stats

    def _tracked_processes(self) -> list[psutil.Process]:
        assert self._ps is not None
        with contextlib.suppress(psutil.Error):
            current = {p.pid: p for p in self._ps.children(recursive=True)}
            # Keep the Process objects we already have: cpu_percent measures since the last call.
            self._children = {pid: self._children.get(pid, p) for pid, p in current.items()}
        return [self._ps, *self._children.values()]
