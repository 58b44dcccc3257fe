"""pytest plugin: ``pytest scenarios/`` runs each scenario file as a test item (so ``-k`` and
``--junitxml`` work), and fixtures let people write scenarios in Python."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.clients import Cohort, ProbeClient
from harness.errors import HarnessError
from harness.faults import Fault, FaultContext, FaultSpec, make_fault
from harness.history import History
from harness.runner import ScenarioResult, run_scenario
from harness.scenario import load
from harness.target import Target
from harness.targetspec import TargetSpec, bundled_monitor, load_target
from harness.toxiproxy import Toxiproxy, running_toxiproxy


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wschaos")
    group.addoption("--wschaos-target", default=None, help="target file for scenario items (default: the monitor)")
    group.addoption("--wschaos-seed", type=int, default=None, help="seed for scenario items")
    group.addoption("--wschaos-out", default=None, help="where scenario items write their run directories")


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.suffix == ".yaml" and file_path.parent.name == "scenarios":
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        yield ScenarioItem.from_parent(self, name=self.path.stem)


class ScenarioFailed(Exception):
    def __init__(self, result: ScenarioResult) -> None:
        super().__init__(result.name)
        self.result = result


class ScenarioItem(pytest.Item):
    def runtest(self) -> None:
        config = self.config
        scenario = load(self.path)
        target_file = config.getoption("wschaos_target")
        target = load_target(Path(target_file)) if target_file else bundled_monitor()
        seed = config.getoption("wschaos_seed")
        seed = seed if seed is not None else random.randrange(2**31)
        out = Path(config.getoption("wschaos_out") or self.config._tmp_path_factory.mktemp(scenario.name))  # type: ignore[attr-defined]
        result = asyncio.run(self._run(scenario, target, out / scenario.name, seed))
        self.user_properties.append(("seed", seed))
        self.user_properties.append(("run_dir", str(result.run_dir)))
        if result.status == "skipped":
            pytest.skip(result.reason or "skipped")
        if result.status in ("fail", "error"):  # "unknown" is reported in the run dir, not a failure
            raise ScenarioFailed(result)

    async def _run(self, scenario: Any, target: TargetSpec, out: Path, seed: int) -> ScenarioResult:
        async with running_toxiproxy(out.parent) as toxiproxy:
            return await run_scenario(scenario, target, toxiproxy, out, seed)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailed):
            r = excinfo.value.result
            lines = [f"scenario {r.name} {r.status.upper()} (seed {r.seed}, run dir {r.run_dir})"]
            if r.error:
                lines.append(f"  error: {r.error}")
            for v in r.verdicts:
                lines.append(f"  {v.checker}: {v.status} - {v.summary}")
                if v.status == "fail":
                    lines += [f"      {e}" for e in v.evidence[:3]]
            return "\n".join(lines)
        if isinstance(excinfo.value, HarnessError):
            return f"{excinfo.value.message}" + (f"\n  hint: {excinfo.value.hint}" if excinfo.value.hint else "")
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario {self.name}"


# Fixtures for scenarios written in Python (async tests, pytest-asyncio).


@pytest.fixture
async def toxiproxy(tmp_path: Path) -> AsyncIterator[Toxiproxy]:
    """A running toxiproxy-server and a client for it; every proxy it made is deleted afterwards."""
    async with running_toxiproxy(tmp_path) as client:
        yield client


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    h = History(tmp_path / "history.jsonl")
    yield h
    h.close()


@pytest.fixture
async def target(tmp_path: Path, history: History) -> AsyncIterator[Target]:
    """The bundled monitor, started in a fresh working directory and stopped afterwards."""
    async with Target(bundled_monitor(), tmp_path / "target", history) as running:
        yield running


@pytest.fixture
async def cohort(
    toxiproxy: Toxiproxy, target: Target, history: History
) -> AsyncIterator[Callable[..., Awaitable[Cohort]]]:
    """``await cohort("name", clients=4)``: probe clients through a proxy of their own."""
    import aiohttp

    made: list[Cohort] = []
    async with aiohttp.ClientSession() as session:

        async def make(name: str, clients: int = 1, **options: Any) -> Cohort:
            proxy = await toxiproxy.create_proxy(f"py-{name}", f"{target.host}:{target.port}")
            url = proxy.url(target.spec.ws_path)
            members = [ProbeClient(f"{name}-{i}", name, url, history, target.spec.make_dialect(),
                                   session=session, **options) for i in range(clients)]  # fmt: skip
            group = Cohort(name, members)
            group.proxy = proxy  # type: ignore[attr-defined]
            await group.start()
            made.append(group)
            return group

        yield make
        for group in made:
            await group.stop()


@pytest.fixture
async def fault(
    toxiproxy: Toxiproxy, target: Target, history: History
) -> AsyncIterator[Callable[..., Awaitable[Fault]]]:
    """``await fault("network_cut", cohort=c)``: start a fault on a cohort made by ``cohort``; healed afterwards."""
    import aiohttp

    started: list[tuple[Fault, FaultContext]] = []
    async with aiohttp.ClientSession() as session:

        async def start(type: str, cohort: Cohort | None = None, **params: Any) -> Fault:
            name = cohort.name if cohort is not None else None
            proxies = {name: cohort.proxy} if cohort is not None else {}  # type: ignore[attr-defined]
            cohorts = {name: cohort} if cohort is not None else {}
            ctx = FaultContext(toxiproxy, proxies, cohorts, target, history, random.Random(0), session,
                               target.spec.make_dialect())  # fmt: skip
            f = make_fault(FaultSpec(f"py-{type}-{len(started)}", type, name, params))
            started.append((f, ctx))
            await f.prepare(ctx)
            await f.start(ctx)
            return f

        yield start
        for f, ctx in reversed(started):
            try:
                await f.heal(ctx)
            except HarnessError:
                pass
            await f.cleanup(ctx)
