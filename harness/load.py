"""Load: Locust's WebSocket users (``harness/locustfile.py``) against a target, and what they measured.

Locust runs only as a subprocess: ``import locust`` monkey-patches a process with gevent, which
breaks asyncio, so this module never imports it. ``LocustRun`` starts ``python -m locust`` headless,
in a process group of its own, bounded in users, spawn rate and time (Locust stops by itself after
``-t``), and stops it by pid on every way out (SIGTERM, then SIGKILL; also when the harness is
cancelled by Ctrl-C or SIGTERM). While it runs, it follows Locust's ``_stats_history.csv`` and folds
each second's figures into the History; when it ends, it folds in a summary of Locust's JSON report.

History records of kind ``locust`` (``phase`` says which):

- ``started``: ``pid``, ``command``, ``users``, ``spawn_rate``, ``time_s``
- ``sample`` (every second): ``ts`` (Locust's clock, whole seconds), ``users``, ``rps`` (batches
  received a second, all users), ``p50``, ``p99`` (delivery latency of batches over the last 10 s,
  ms), ``requests``, ``failures``, ``batches``, ``gaps`` (batches missed, all users),
  ``gap_events``, ``cpu`` (percent of each Locust process, by pid), ``cpu_max``
- ``users``: ``users``, ``spawn_rate`` (a scenario's ``load`` step changed them)
- ``final``: the same figures over the whole run, with ``p90``, ``max_ms``, ``min_ms``, ``connects``,
  ``connect_failures``, ``disconnects``, ``duration_s``, ``peak_users``, ``peak_cpu``, ``errors``
  (Locust's failures: name, error, occurrences)
- ``exited``: ``code`` (None when it had to be killed)

With ``track_connections`` (scenarios), every connect and close of a Locust user is also recorded,
as ``connect`` and ``close`` records of cohort ``load`` (client ``load-<behaviour>-<pid>-<n>``):
checkers that compare the server's registry with the connections the harness knows of count these
too. They are folded in at most 0.2 s after they happened, with the ``t`` and ``w`` of when they
happened (so these records may come a little after later ones in the file): a close stamped with
the time it was folded would count a churning user as connected for a while after it left.

``harness.checkers.load`` judges those records (the ``load`` checker).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import math
import os
import resource
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from harness.dialects import make_dialect
from harness.history import History
from harness.loadspec import LoadError, LoadSpec, bound_problems
from harness.process import Child, start_child
from harness.target import free_port
from harness.tasks import stop_tasks

LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"

SAMPLE_INTERVAL = 0.2  # the stats CSV grows once a second; connection events are folded this often
LOAD_COHORT = "load"
STOP_GRACE = 10.0  # Locust writes its reports on SIGTERM; with workers that takes a few seconds
KILL_WAIT = 5.0
EXIT_MARGIN = 15.0  # after -t, how long Locust may take to write its reports and exit
RAMP_MARGIN = 20.0  # Locust's start-up (imports, workers connecting) before its first user runs
BATCH_NAME = "log_entry_batch"
GAP_NAME = "seq gap"
FDS_PER_USER = 2  # a socket, and headroom for the resolver and reconnects


# ---------------------------------------------------------------------------------------------
# What to run


@dataclass(frozen=True)
class Reports:
    """Where Locust writes: ``locust.html``, ``locust.json``, ``locust_*.csv``, ``locust.log``."""

    directory: Path

    @property
    def prefix(self) -> Path:
        return self.directory / "locust"

    @property
    def html(self) -> Path:
        return self.directory / "locust.html"

    @property
    def json(self) -> Path:  # Locust adds ".json" to --json-file
        return self.directory / "locust.json"

    @property
    def history_csv(self) -> Path:
        return self.directory / "locust_stats_history.csv"

    @property
    def failures_csv(self) -> Path:
        return self.directory / "locust_failures.csv"

    @property
    def log(self) -> Path:
        return self.directory / "locust.log"

    @property
    def control(self) -> Path:
        return self.directory / "locust_control.json"

    @property
    def connections(self) -> Path:
        return self.directory / "connections"


def locust_command(spec: LoadSpec, host: str, reports: Reports, *, role: str = "local", master_port: int = 0,
                   expect_workers: int = 0) -> list[str]:  # fmt: skip
    """The ``python -m locust`` command line for a local run, a master or a worker."""
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--loglevel", "INFO"]
    if role == "worker":
        return [*base, "--worker", "--master-host", LOOPBACK, "--master-port", str(master_port)]
    command = [
        *base, "-u", str(spec.users), "-r", f"{spec.spawn_rate:g}", "-t", f"{math.ceil(spec.time_s)}s",
        "--host", host, "--json-file", str(reports.prefix), "--csv", str(reports.prefix), "--csv-full-history",
        "--html", str(reports.html), "--only-summary", "--exit-code-on-error", "0",
    ]  # fmt: skip
    if role == "master":
        command += ["--master", "--expect-workers", str(expect_workers), "--expect-workers-max-wait", "30"]
        command += ["--master-bind-host", LOOPBACK, "--master-bind-port", str(master_port)]
    elif spec.processes > 1:
        command += ["--processes", str(spec.processes)]
        command += ["--master-bind-host", LOOPBACK, "--master-bind-port", str(master_port)]
        command += ["--master-port", str(master_port)]
    return command


def locust_env(spec: LoadSpec, ws_path: str, shape: Mapping[str, Any] | None, control: Path | None,
               connections: Path | None = None,
               dialect: Mapping[str, Any] | None = None) -> dict[str, str]:  # fmt: skip
    # The users import harness.dialects: the Locust process must find this very copy of the harness.
    path = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        "PYTHONPATH": path,
        "WSCHAOS_LOAD_DIALECT": json.dumps(dict(dialect) if dialect else None),
        "PYTHONUNBUFFERED": "1",
        "WSCHAOS_LOAD_PATH": ws_path,
        "WSCHAOS_LOAD_MIX": spec.mix_text(),
        "WSCHAOS_LOAD_RECONNECT_S": f"{spec.reconnect_every:g}",
        "WSCHAOS_LOAD_MAX_S": f"{spec.time_s + EXIT_MARGIN:g}",
        "WSCHAOS_LOAD_SHAPE": json.dumps(dict(shape or {})),
    }
    for name, path in (("WSCHAOS_LOAD_CONTROL", control), ("WSCHAOS_LOAD_EVENTS", connections)):
        env.pop(name, None)
        if path is not None:
            env[name] = str(path)
    return env


def raise_fd_limit(users: int) -> None:
    """Raise this process's soft limit on open files (Locust inherits it) if the users need more."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = users * FDS_PER_USER + 1024
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


# ---------------------------------------------------------------------------------------------
# Reading Locust's files


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "N/A") else None
    except ValueError:
        return None


class StatsHistoryReader:
    """Follows ``*_stats_history.csv`` (written with --csv-full-history): one row per entry per second,
    the ``Aggregated`` row last. ``read()`` gives the seconds completed since the last call."""

    def __init__(self, path: Path, batch_name: str = BATCH_NAME) -> None:
        self.path = path
        self.batch_name = batch_name
        self.offset = 0
        self.header: list[str] | None = None
        self.rows: list[dict[str, str]] = []

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        samples = []
        for row in csv.reader(io.StringIO(complete.decode("utf-8", errors="replace"))):
            if self.header is None:
                self.header = row
                continue
            self.rows.append(dict(zip(self.header, row, strict=False)))
            if row[3:4] == ["Aggregated"]:
                samples.append(sample_from_rows(self.rows, self.batch_name))
                self.rows = []
        return samples


def sample_from_rows(rows: list[dict[str, str]], batch_name: str = BATCH_NAME) -> dict[str, Any]:
    """One second of Locust's figures: the batch row's rate and latency, failures and gaps over all
    (``batch_name``: the dialect's name for a received batch)."""
    by_name = {r.get("Name"): r for r in rows}
    total, batch, gap = by_name.get("Aggregated", {}), by_name.get(batch_name, {}), by_name.get(GAP_NAME, {})
    gap_events = int(_number(gap.get("Total Request Count")) or 0)
    return {
        "ts": int(_number(total.get("Timestamp")) or 0),
        "users": int(_number(total.get("User Count")) or 0),
        "rps": _number(batch.get("Requests/s")) or 0.0,
        "p50": _number(batch.get("50%")),
        "p99": _number(batch.get("99%")),
        "requests": int(_number(total.get("Total Request Count")) or 0),
        "failures": int(_number(total.get("Total Failure Count")) or 0),
        "batches": int(_number(batch.get("Total Request Count")) or 0),
        "gaps": round(gap_events * (_number(gap.get("Total Average Content Size")) or 0.0)),
        "gap_events": gap_events,
    }


def histogram_quantile(response_times: Mapping[str, int], q: float) -> float | None:
    """Nearest-rank quantile of Locust's response-time histogram (rounded ms: count)."""
    items = sorted((float(k), int(v)) for k, v in response_times.items())
    total = sum(count for _, count in items)
    if total == 0:
        return None
    rank, seen = max(1, math.ceil(q * total)), 0
    for value, count in items:
        seen += count
        if seen >= rank:
            return value
    return items[-1][0]


def summarize(entries: list[dict[str, Any]], errors: list[dict[str, Any]],
              batch_name: str = BATCH_NAME) -> dict[str, Any]:  # fmt: skip
    """The whole run's figures from Locust's JSON report (one dict per request name)."""
    by_name = {e["name"]: e for e in entries}
    batch = by_name.get(batch_name, {})
    gap = by_name.get(GAP_NAME, {})
    connect = by_name.get("connect", {})
    starts = [e["start_time"] for e in entries if e.get("start_time")]
    ends = [e["last_request_timestamp"] for e in entries if e.get("last_request_timestamp")]
    duration = max(ends) - min(starts) if starts and ends else 0.0
    times = batch.get("response_times", {})
    return {
        "requests": sum(e["num_requests"] for e in entries),
        "failures": sum(e["num_failures"] for e in entries),
        "batches": batch.get("num_requests", 0),
        "rps": round(batch.get("num_requests", 0) / duration, 1) if duration > 0 else 0.0,
        "p50": histogram_quantile(times, 0.50),
        "p90": histogram_quantile(times, 0.90),
        "p99": histogram_quantile(times, 0.99),
        "max_ms": round(batch["max_response_time"], 1) if batch.get("max_response_time") is not None else None,
        "min_ms": round(batch["min_response_time"], 1) if batch.get("min_response_time") is not None else None,
        "gaps": gap.get("total_content_length", 0),
        "gap_events": gap.get("num_requests", 0),
        "connects": connect.get("num_requests", 0),
        "connect_failures": connect.get("num_failures", 0),
        "disconnects": by_name.get("disconnect", {}).get("num_requests", 0),
        "duration_s": round(duration, 3),
        "errors": errors,
    }


class ConnectionFolder:
    """Folds the users' connect and close lines (``connections-<pid>.jsonl``, one file per Locust process)
    into the History as ``connect`` and ``close`` records of cohort ``load``."""

    def __init__(self, directory: Path, history: History) -> None:
        self.directory = directory
        self.history = history
        self.offsets: dict[Path, int] = {}
        self.attempts: dict[str, int] = {}
        self.open: set[str] = set()

    def fold(self) -> None:
        for path in sorted(self.directory.glob("connections-*.jsonl")):
            try:
                with path.open("rb") as fh:
                    fh.seek(self.offsets.get(path, 0))
                    data = fh.read()
            except OSError:
                continue
            complete = data[: data.rfind(b"\n") + 1]
            self.offsets[path] = self.offsets.get(path, 0) + len(complete)
            for line in complete.splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    self._record(json.loads(line))

    def _record(self, event: dict[str, Any]) -> None:
        client = f"{LOAD_COHORT}-{event['user']}"
        w = float(event["w"])
        when = {"t": round(self.history.now() - max(0.0, time.time() - w), 6), "w": w}
        if event["event"] == "connect":
            self.attempts[client] = self.attempts.get(client, 0) + 1
            self.open.add(client)
            self.history.record("connect", client=client, cohort=LOAD_COHORT, attempt=self.attempts[client],
                                since=None, **when)  # fmt: skip
        elif event["event"] == "close" and client in self.open:
            self.open.discard(client)
            self.history.record("close", client=client, cohort=LOAD_COHORT, code=event.get("code"),
                                by=event.get("by"), reason=event.get("reason"), **when)  # fmt: skip

    def close_all(self) -> None:
        """After Locust is gone: whatever it could not report closing is closed now."""
        self.fold()
        for client in sorted(self.open):
            self.history.record("close", client=client, cohort=LOAD_COHORT, code=None, by="client",
                                reason="Locust stopped")  # fmt: skip
        self.open.clear()


def read_failures(path: Path, limit: int = 20) -> list[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError:
        return []
    out = [{"name": r.get("Name"), "error": r.get("Error"), "occurrences": int(_number(r.get("Occurrences")) or 0)}
           for r in rows]  # fmt: skip
    return sorted(out, key=lambda e: -e["occurrences"])[:limit]


# ---------------------------------------------------------------------------------------------
# The Locust process


class LocustRun:
    """One Locust process (a local run, possibly with ``--processes``; or a master, or a worker).

    ``host`` is the proxy's address (``http://127.0.0.1:PORT``); the users connect to it plus
    ``ws_path``. With a ``history``, samples and the final summary are recorded there. Use as
    ``async with LocustRun(...) as run:``, or call ``start`` and (always) ``stop``.
    """

    def __init__(
        self,
        spec: LoadSpec,
        host: str,
        out_dir: Path,
        *,
        history: History | None = None,
        ws_path: str = "/ws",
        shape: Mapping[str, Any] | None = None,
        dialect: Mapping[str, Any] | None = None,
        role: str = "local",
        master_port: int | None = None,
        expect_workers: int = 0,
        controllable: bool = False,
        track_connections: bool = False,
    ) -> None:
        self.spec = spec
        self.host = host
        self.reports = Reports(Path(out_dir))
        self.history = history
        self.ws_path = ws_path
        self.shape = shape
        self.dialect = dialect
        self.batch_name = make_dialect(dialect, shape).batch_name
        self.role = role
        self.master_port = master_port or free_port()
        self.expect_workers = expect_workers
        self.controllable = controllable
        self.pid: int | None = None
        self.returncode: int | None = None
        self.samples: list[dict[str, Any]] = []
        self.summary: dict[str, Any] | None = None
        self._process: Child | None = None
        self._tracked: dict[int, psutil.Process] = {}
        self._reader = StatsHistoryReader(self.reports.history_csv, self.batch_name)
        self._sampler: asyncio.Task[None] | None = None
        self._finished = False
        self._folder = ConnectionFolder(self.reports.connections, history) if track_connections and history else None

    async def __aenter__(self) -> LocustRun:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    def command(self) -> list[str]:
        return locust_command(self.spec, self.host, self.reports, role=self.role, master_port=self.master_port,
                              expect_workers=self.expect_workers)  # fmt: skip

    async def start(self) -> None:
        if self._process is not None:
            raise LoadError("this Locust run was already started")
        self.reports.directory.mkdir(parents=True, exist_ok=True)
        if self._folder is not None:
            self.reports.connections.mkdir(exist_ok=True)
        if self.controllable:
            self.set_users(self.spec.users, self.spec.spawn_rate, record=False)
        raise_fd_limit(self.spec.users)
        command = self.command()
        self._process = self._launch(command)
        self.pid = self._process.pid
        self._track()
        self._record("started", pid=self.pid, command=command, users=self.spec.users,
                     spawn_rate=self.spec.spawn_rate, time_s=self.spec.time_s)  # fmt: skip
        if self.role != "worker":
            self._sampler = asyncio.create_task(self._sample_loop(), name="locust-sampler")

    def _launch(self, command: list[str]) -> Child:
        """Locust in a session (and process group) of its own: a Ctrl-C at the terminal reaches only the
        harness, which then stops Locust by pid."""
        control = self.reports.control if self.controllable else None
        connections = self.reports.connections if self._folder is not None else None
        env = locust_env(self.spec, self.ws_path, self.shape, control, connections, self.dialect)
        with self.reports.log.open("ab") as log:
            try:
                return start_child(command, name=f"Locust ({self.role})", output=log, env=env,
                                   cwd=self.reports.directory, die_with_parent=signal.SIGTERM)  # fmt: skip
            except OSError as exc:
                raise LoadError(f"cannot run Locust ({command[0]} -m locust): {exc}") from exc

    def set_users(self, users: int, spawn_rate: float | None = None, *, record: bool = True) -> None:
        """Change the number of users while it runs (only a run started with ``controllable``)."""
        rate = self.spec.spawn_rate if spawn_rate is None else spawn_rate
        problems = bound_problems(users, rate, self.spec.time_s)
        if problems:
            raise LoadError("load step: " + "; ".join(problems))
        if not self.controllable:
            raise LoadError("this Locust run cannot change its users (start it with controllable=True)")
        tmp = self.reports.control.with_suffix(".tmp")
        tmp.write_text(json.dumps({"users": users, "spawn_rate": rate}))
        tmp.replace(self.reports.control)  # atomic: Locust never reads half a file
        if record:
            self._record("users", users=users, spawn_rate=rate)

    async def wait_users(self, users: int, timeout: float) -> bool:
        """Wait until Locust reports ``users`` users running; False after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.samples and self.samples[-1]["users"] >= users:
                return True
            if not self.running:
                raise LoadError(f"Locust exited with code {self.returncode_now()} before its users ran"
                                f"{self.log_tail()}")  # fmt: skip
            await asyncio.sleep(0.2)
        return False

    async def ramp_up(self, margin: float = RAMP_MARGIN) -> None:
        """Wait until every user runs (users / spawn rate, plus ``margin`` for Locust to start), or raise."""
        timeout = self.spec.users / self.spec.spawn_rate + margin
        if not await self.wait_users(self.spec.users, timeout):
            got = self.samples[-1]["users"] if self.samples else 0
            raise LoadError(f"Locust had {got} of {self.spec.users} users running after {timeout:g} s{self.log_tail()}")

    async def wait(self, timeout: float) -> bool:
        """Wait for Locust to end by itself (after ``-t``); False after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while self.running:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.2)
        return True

    def returncode_now(self) -> int | None:
        return None if self._process is None else self._process.returncode

    def log_tail(self, lines: int = 15) -> str:
        try:
            tail = self.reports.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n--- last lines of " + str(self.reports.log) + " ---\n" + "\n".join(tail) if tail else ""

    async def stop(self) -> None:
        """SIGTERM by pid (Locust writes its reports), SIGKILL if it lingers, then any leftover
        process of its group by group id; records the summary. Safe to call twice, and when cancelled."""
        process = self._process
        if process is None or self._finished:
            return
        self._finished = True
        try:
            await process.stop(STOP_GRACE, kill_wait=KILL_WAIT)
        finally:
            process.kill_group()  # worker processes it forked and left behind
            await self._stop_sampler()
            self.returncode = process.returncode
            self._record("exited", code=self.returncode)
            self._final()

    def _track(self) -> None:
        """Remember Locust's processes (the forked workers too), to measure each one's CPU."""
        if self._process is None:
            return
        with contextlib.suppress(psutil.Error):
            leader = psutil.Process(self._process.pid)
            for p in [leader, *leader.children(recursive=True)]:
                if p.pid not in self._tracked:
                    p.cpu_percent(None)  # the first call sets the baseline
                    self._tracked[p.pid] = p

    def cpu(self) -> dict[str, float]:
        """CPU percent of each live Locust process since the last call, by pid."""
        self._track()
        out = {}
        for pid, p in list(self._tracked.items()):
            try:
                out[str(pid)] = round(p.cpu_percent(None), 1)
            except psutil.Error:
                self._tracked.pop(pid)
        return out

    async def _sample_loop(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL)
            self._take_samples()
            if not self.running:
                return

    def _take_samples(self) -> None:
        if self._folder is not None:
            self._folder.fold()
        new = self._reader.read()
        if not new:
            return
        cpu = self.cpu()
        for sample in new:
            sample.update(cpu=cpu, cpu_max=max(cpu.values(), default=0.0))
            self.samples.append(sample)
            self._record("sample", **sample)

    async def _stop_sampler(self) -> None:
        task, self._sampler = self._sampler, None
        if task is not None and (failed := await stop_tasks(task)) is not None:
            raise failed
        if self.role != "worker":
            self._take_samples()
        if self._folder is not None:
            self._folder.close_all()

    def _final(self) -> None:
        if self.role == "worker":
            return
        try:
            entries = json.loads(self.reports.json.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            entries = None
        if not isinstance(entries, list):
            self._record("final", error=f"Locust wrote no JSON report at {self.reports.json}")
            return
        summary = summarize(entries, read_failures(self.reports.failures_csv), self.batch_name)
        summary["peak_users"] = max((s["users"] for s in self.samples), default=0)
        summary["peak_cpu"] = max((s["cpu_max"] for s in self.samples), default=0.0)
        self.summary = summary
        self._record("final", **summary)

    def _record(self, phase: str, **fields: Any) -> None:
        if self.history is not None:
            self.history.record("locust", phase=phase, role=self.role, **fields)


# ---------------------------------------------------------------------------------------------
