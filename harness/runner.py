"""Runs scenarios: target behind Toxiproxy, cohorts, feed, the method's steps, then the checkers.

Teardown always runs (on failure, on Ctrl-C and SIGTERM too): every process, proxy and task a
scenario starts is stopped before the next one begins.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from harness import browser
from harness.capacity import DEFAULT_CAPACITY_FILE, resolve_feed_rate
from harness.checkers import CheckContext, CohortInfo, Verdict, checker_name, run_checks, scenario_status
from harness.clients import Cohort, ProbeClient, StuckClient, probe_session, wait_ready
from harness.errors import HarnessError
from harness.external import external_skip_reason, inapplicable_checks, make_target
from harness.faults import Fault, FaultContext, make_fault
from harness.feed import Feed
from harness.history import HISTORY_FILE, History
from harness.load import LocustRun
from harness.scenario import CohortSpec, Scenario, check_target_params
from harness.serverstats import record_server_stats
from harness.target import Target
from harness.targetspec import TargetSpec
from harness.tasks import stop_tasks
from harness.toxiproxy import Proxy, Toxiproxy
from harness.workdir import compress_workdir

log = logging.getLogger("harness.runner")

DRAIN_TIMEOUT = 5.0
DRAIN_QUIET_S = 1.0  # the drain ends early when no client received anything for this long
PROBE_INTERVAL = 1.0
PROBE_TIMEOUT = 3.0


@dataclass
class ScenarioResult:
    name: str
    status: str  # pass, fail, error, unknown, skipped (``reason`` says why and how to make it run)
    verdicts: list[Verdict]
    duration_s: float
    run_dir: Path
    seed: int
    error: str | None = None
    phases: dict[str, float] = field(default_factory=dict)
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "duration_s": round(self.duration_s, 3),
            "seed": self.seed,
            "run_dir": str(self.run_dir),
            "error": self.error,
            "reason": self.reason,
            "phases": self.phases,
            "verdicts": [v.to_json() for v in self.verdicts],
        }


Progress = Callable[[str], None]


@dataclass
class Run:
    """The live parts of one scenario run."""

    scenario: Scenario
    history: History
    target: Target
    toxiproxy: Toxiproxy
    seed: int
    session: aiohttp.ClientSession
    proxies: dict[str, Proxy] = field(default_factory=dict)
    cohorts: dict[str, Cohort] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    contexts: dict[str, FaultContext] = field(default_factory=dict)
    active: list[str] = field(default_factory=list)
    faulted: set[str] = field(default_factory=set)
    load: LocustRun | None = None
    probe_now: asyncio.Event = field(default_factory=asyncio.Event)  # the next liveness round, without waiting

    def rng(self, label: str) -> random.Random:
        """One generator per consumer, so timing in one part never shifts another's random choices."""
        return random.Random(f"{self.seed}:{label}")

    def fault_context(self, fault: str = "") -> FaultContext:
        return FaultContext(
            toxiproxy=self.toxiproxy,
            proxies=self.proxies,
            cohorts=self.cohorts,
            target=self.target,
            history=self.history,
            rng=self.rng(f"fault:{fault}"),
            session=self.session,
            dialect=self.target.spec.make_dialect(),
        )


def build_client(spec: CohortSpec, index: int, run: Run) -> ProbeClient | StuckClient:
    name = f"{spec.name}-{index}"
    proxy = run.proxies[spec.name]
    path = run.target.spec.ws_path
    if spec.kind in ("stuck", "stuck_pong"):
        return StuckClient(
            name, spec.name, proxy.listen_host, proxy.listen_port, path, run.history,
            answer_heartbeats=spec.kind == "stuck_pong", rcvbuf=spec.rcvbuf or 4096,
            dialect=run.target.spec.make_dialect(),
        )  # fmt: skip
    url = proxy.url(path)
    return ProbeClient(
        name, spec.name, url, run.history, run.target.spec.make_dialect(),
        reconnect=spec.reconnect, rcvbuf=spec.rcvbuf, session=run.session, rng=run.rng(f"client:{name}"),
        view=spec.view, resume_after=spec.resume_after,
    )  # fmt: skip


async def probe_liveness(run: Run, proxy: Proxy) -> None:
    """Every second: can a new client connect and get init (the dialect's ready frame)? Does the health
    check answer?"""
    dialect = run.target.spec.make_dialect()
    url = dialect.connect_url(proxy.url(run.target.spec.ws_path), None)
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PROBE_INTERVAL):
                await run.probe_now.wait()
        run.probe_now.clear()
        started = time.monotonic()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT), run.session.ws_connect(url, autoping=True) as ws:
                await wait_ready(ws, dialect)
            run.history.record("probe", check="ws", ok=True, latency_s=round(time.monotonic() - started, 4))
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            run.history.record("probe", check="ws", ok=False, error=repr(exc)[:200])
        ok = await run.target.health()
        run.history.record("probe", check="health", ok=ok, error=None if ok else "health check did not answer")


async def wait_for_probe(run: Run, since: float) -> None:
    """Liveness is judged on a probe after the last heal: the run asks for a round at the heal, and
    waits here until it has answered (bounded by the probe's own timeout) if the steady phase after the
    heal ended first."""
    deadline = time.monotonic() + PROBE_INTERVAL + PROBE_TIMEOUT + 0.5
    while time.monotonic() < deadline:
        for record in reversed(run.history.records):
            if record["t"] < since:
                break
            if record["kind"] == "probe" and record.get("check") == "health":  # the last of a round
                return
        await asyncio.sleep(0.05)


async def wait_for_reconnects(run: Run, healed_at: float) -> None:
    """A cohort judged by ``recovery`` gets up to its ``within`` after the heal for its clients to be
    back: a client between two backoff attempts when the run ended would read as "did not reconnect"
    although its time was not up."""
    bounds: dict[str, float] = {}
    for name, options in run.scenario.checks.items():
        if checker_name(name) == "recovery" and isinstance(options, dict) and options.get("cohort") in run.cohorts:
            bounds[options["cohort"]] = float(options.get("within", 5.0))
    if not bounds:
        return
    clients = [c for cohort in bounds for c in run.cohorts[cohort].probes if c.reconnect]
    deadline = time.monotonic() + max(bounds.values()) - (run.history.now() - healed_at)
    while time.monotonic() < deadline:
        if all(c.connected for c in clients):
            return
        await asyncio.sleep(0.05)


async def sample_harness_cpu(run: Run) -> None:
    """The harness's own CPU and its clients' backlog: when they saturate, latency is not the server's."""
    me = psutil.Process()
    me.cpu_percent(None)
    while True:
        await asyncio.sleep(0.5)
        backlog = max((c.backlog() for cohort in run.cohorts.values() for c in cohort.clients
                       if isinstance(c, ProbeClient)), default=0)  # fmt: skip
        run.history.record("harness_cpu", percent=me.cpu_percent(None), backlog=backlog)


@asynccontextmanager
async def background(*coros: Any) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        yield
    finally:
        await stop_tasks(*tasks)  # what they raised is theirs: the run's own outcome is judged elsewhere


async def run_steps(run: Run, feed: Feed, progress: Progress) -> None:
    for step in run.scenario.steps:
        if step.action == "wait":
            await asyncio.sleep(step.value)
        elif step.action == "feed_rate":
            feed.set_rate(step.value)
            run.history.record("step", name="feed_rate", detail=step.value)
        elif step.action == "fault":
            fault, ctx = run.faults[step.value.name], run.contexts[step.value.name]
            progress(f"fault {fault.spec.name} ({fault.spec.type})")
            await browser.screenshots(run.cohorts.values(), "before", fault.spec.name)
            await fault.start(ctx)
            run.active.append(fault.spec.name)
            run.faulted.update(fault.hits(ctx))
        elif step.action == "heal":
            await heal(run, step.value, progress)
        elif step.action == "load" and run.load is not None:
            progress(f"load: {step.value['users']} users")
            run.load.set_users(step.value["users"], step.value.get("spawn_rate"))


async def heal(run: Run, name: str, progress: Progress) -> None:
    if name in run.active:
        progress(f"heal {name}")
        run.active.remove(name)
        await run.faults[name].settle(run.contexts[name])  # a fault that must bite runs until it has
        await browser.screenshots(run.cohorts.values(), "during", name)
        await run.faults[name].heal(run.contexts[name])


def drain_clients(run: Run) -> list[ProbeClient]:
    """The clients the drain waits for: every connected probe client, faulted cohorts' too (their
    delivery may be judged, and it deserves the same time to arrive). A client of a view gets only the
    view's share of the feed, so it cannot be waited for by count."""
    return [c for cohort in run.cohorts.values() for c in cohort.clients
            if isinstance(c, ProbeClient) and c.connected and c.view is None]  # fmt: skip


async def wait_for_drain(run: Run, feed: Feed) -> None:
    """After the feed stops, give connected clients a moment to receive the last events: until each
    has every event, or none received anything for DRAIN_QUIET_S (a client told to resync after a
    restart never gets what was fed while the server was down; waiting for it only costs time)."""
    want = len(feed.fed)
    now = time.monotonic()
    deadline, quiet_since = now + DRAIN_TIMEOUT, now
    clients = drain_clients(run)
    received = sum(c.events for c in clients)
    while time.monotonic() < deadline:
        if all(c.events >= want for c in clients):
            return
        await asyncio.sleep(0.05)
        total = sum(c.events for c in clients)
        if total != received:
            received, quiet_since = total, time.monotonic()
        elif time.monotonic() - quiet_since >= DRAIN_QUIET_S:
            return


async def start_cohorts(run: Run, stack: AsyncExitStack, out_dir: Path | None = None) -> None:
    for spec in run.scenario.cohorts:
        if spec.kind == "browser":
            cohort: Cohort = build_browser_cohort(spec, run, out_dir)
        else:
            cohort = Cohort(spec.name, [build_client(spec, i, run) for i in range(spec.clients)])
        run.cohorts[spec.name] = cohort
        stack.push_async_callback(cohort.stop)
    await asyncio.gather(*(c.start() for c in run.cohorts.values()))


def build_browser_cohort(spec: CohortSpec, run: Run, out_dir: Path | None) -> browser.BrowserCohort:
    """Dashboard pages in one headless Chromium, each opening the target's page through the cohort's proxy."""
    proxy = run.proxies[spec.name]
    url = proxy.url("/")
    shots = out_dir / "screenshots" if out_dir is not None else None
    return browser.build_cohort(spec.name, spec.clients, url, run.history, shots)


def skip_reason(scenario: Scenario) -> str | None:
    """Why this scenario cannot run on this machine (a browser cohort without Chromium or Playwright)."""
    if any(spec.kind == "browser" for spec in scenario.cohorts):
        return browser.unavailable()
    return None


async def start_load(run: Run, stack: AsyncExitStack, run_id: str, out_dir: Path, progress: Progress) -> None:
    """The scenario's Locust users, through a proxy of their own; returns once they all run."""
    spec = run.scenario.load
    if spec is None:
        return
    proxy = await scenario_proxy(run, stack, f"{run_id}-load")
    run.load = LocustRun(spec, proxy.url(""), out_dir / "load", history=run.history,
                         ws_path=run.target.spec.ws_path, shape=run.target.spec.messages,
                         dialect=run.target.spec.dialect,
                         controllable=True, track_connections=True)  # fmt: skip
    stack.push_async_callback(run.load.stop)
    progress(f"load: {spec.users} Locust users ({spec.mix_text()})")
    await run.load.start()
    await run.load.ramp_up()


async def scenario_proxy(run: Run, stack: AsyncExitStack, name: str) -> Proxy:
    """A proxy to the target, deleted when the scenario ends."""
    return await target_proxy(run.toxiproxy, run.target, stack, name)


async def target_proxy(toxiproxy: Toxiproxy, target: Target, stack: AsyncExitStack, name: str) -> Proxy:
    """A proxy to the target, deleted when ``stack`` closes."""
    proxy = await toxiproxy.create_proxy(name, f"{target.host}:{target.port}")
    stack.push_async_callback(toxiproxy.delete_proxy, proxy.name)
    return proxy


async def start_feed(
    target: Target, history: History, rate: float, rng: random.Random, stack: AsyncExitStack, split_lines: bool = False
) -> Feed:
    """The target's feed at ``rate`` events a second, stopped when ``stack`` closes."""
    feed = Feed(target.spec, target.workdir, history, rate, rng, placeholders=target.placeholders(),
                split_lines=split_lines)  # fmt: skip
    stack.push_async_callback(feed.stop)
    await feed.start()
    return feed


async def create_proxies(run: Run, stack: AsyncExitStack, run_id: str) -> Proxy:
    """A proxy per cohort, and one for the liveness probe (returned)."""
    for spec in run.scenario.cohorts:
        run.proxies[spec.name] = await scenario_proxy(run, stack, f"{run_id}-{spec.name}")
    return await scenario_proxy(run, stack, f"{run_id}-liveness")


async def execute(run: Run, out_dir: Path, progress: Progress, phases: dict[str, float]) -> list[Verdict]:
    scenario = run.scenario
    run_id = f"{scenario.name}-{run.rng('run_id').randrange(16**6):06x}"
    async with AsyncExitStack() as stack:
        mark = time.monotonic()
        stack.push_async_callback(run.target.stop)
        await run.target.start()
        liveness_proxy = await create_proxies(run, stack, run_id)
        for spec in scenario.faults():
            fault = run.faults[spec.name] = make_fault(spec)
            ctx = run.contexts[spec.name] = run.fault_context(spec.name)
            stack.push_async_callback(fault.cleanup, ctx)  # on every way out, before the proxies are deleted
            await fault.prepare(ctx)
        await start_cohorts(run, stack, out_dir)
        await start_load(run, stack, run_id, out_dir, progress)
        phases["setup_s"] = time.monotonic() - mark
        feed = await start_feed(run.target, run.history, scenario.feed_rate, run.rng("feed"), stack,
                                scenario.feed_split_lines)  # fmt: skip
        async with background(probe_liveness(run, liveness_proxy), sample_harness_cpu(run)):
            mark = time.monotonic()
            run.history.record("step", name="steady_before", detail=scenario.steady_state)
            await asyncio.sleep(scenario.steady_state)
            run.history.record("step", name="method", detail=len(scenario.steps))
            await run_steps(run, feed, progress)
            run.history.record("step", name="heal", detail=list(run.active))
            for name in list(run.active):
                await heal(run, name, progress)
            healed_at = run.history.record("step", name="steady_after", detail=scenario.steady_state)["t"]
            run.probe_now.set()
            await asyncio.sleep(scenario.steady_state)
            await wait_for_probe(run, healed_at)
            await wait_for_reconnects(run, healed_at)
            await browser.screenshots(run.cohorts.values(), "after")
            phases["method_s"] = time.monotonic() - mark
        if run.load is not None:
            await run.load.stop()  # its summary goes into the history before the checks
        mark = time.monotonic()
        await feed.stop()
        await wait_for_drain(run, feed)
        if "stats" in {checker_name(n) for n in scenario.checks}:
            await record_server_stats(run.target.spec.stats, run.session, run.target.ws_url, run.history)
        phases["drain_s"] = time.monotonic() - mark
    mark = time.monotonic()
    run.history.record("step", name="checks", detail=sorted(scenario.checks), checks=scenario.checks,
                       faulted=sorted(run.faulted), cohorts=[[s.name, s.clients, s.kind] for s in scenario.cohorts])
    dialect = run.target.spec.make_dialect()
    id_setting = dialect.id_setting
    stored_ids = run.target.stored_ids()
    if stored_ids is not None:  # kept in the history: `wschaos analyze` judges persistence from it
        run.history.record("stored_ids", ids=stored_ids)
    ctx_checks = CheckContext(
        history=run.history,
        cohorts={s.name: CohortInfo(s.name, s.clients, s.kind, s.view) for s in scenario.cohorts},
        faulted=set(run.faulted),
        stored_ids=stored_ids,
        semantics=dict(run.target.spec.semantics),
        event_id_setting=id_setting[0],
        event_id_field=id_setting[1],
        shutdown_code=dialect.shutdown_code,
    )
    inapplicable = inapplicable_checks(run.target, ctx_checks, scenario.checks)
    ran = iter(run_checks(ctx_checks, {n: o for n, o in scenario.checks.items() if n not in inapplicable}))
    verdicts = [inapplicable[n] if n in inapplicable else next(ran) for n in scenario.checks]
    phases["checks_s"] = time.monotonic() - mark
    return verdicts


async def run_scenario(
    scenario: Scenario,
    target_spec: TargetSpec,
    toxiproxy: Toxiproxy,
    out_dir: Path,
    seed: int,
    progress: Progress = lambda _: None,
    capacity_file: Path = DEFAULT_CAPACITY_FILE,
) -> ScenarioResult:
    """Run one scenario; a ``feed.rate`` given as a share resolves from the capacity in ``capacity_file``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    skipped = skip_reason(scenario) or external_skip_reason(scenario, target_spec)
    if skipped is not None:
        result = ScenarioResult(scenario.name, "skipped", [], 0.0, out_dir, seed, reason=skipped)
        (out_dir / "result.json").write_text(json.dumps(result.to_json(), indent=2))
        return result
    history = History(out_dir / HISTORY_FILE)
    started = time.monotonic()
    phases: dict[str, float] = {}
    target = make_target(target_spec, out_dir / "target", history, params=scenario.target_params)
    verdicts: list[Verdict] = []
    error = None
    try:
        check_target_params(scenario, target_spec)
        rate = resolve_feed_rate(scenario.feed_rate, target_spec, capacity_file, scenario.name)
        history.record("feed_rate", **rate.to_record())
        scenario = replace(scenario, feed_rate=rate.rate)
        async with probe_session() as session:
            run = Run(scenario, history, target, toxiproxy, seed, session)
            async with asyncio.timeout(scenario.timeout):
                verdicts = await execute(run, out_dir, progress, phases)
    except TimeoutError:
        error = f"scenario did not finish within its timeout of {scenario.timeout:g}s"
    except HarnessError as exc:
        error = exc.message + (f" ({exc.hint})" if exc.hint else "")
    finally:
        history.close()
    status = scenario_status(verdicts, error)
    compress_workdir(out_dir, held=status == "pass")
    result = ScenarioResult(scenario.name, status, verdicts, time.monotonic() - started, out_dir, seed, error, phases)
    (out_dir / "result.json").write_text(json.dumps(result.to_json(), indent=2))
    return result
