"""The runner's teardown: a scenario interrupted in the middle of a fault (cancelled, as Ctrl-C does,
or past its timeout) leaves no task, socket or proxy behind, and the next scenario runs unaffected."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest

from harness.history import History
from harness.runner import run_scenario
from harness.scenario import Scenario, Step, discover, load, parse
from harness.targetspec import TargetSpec, bundled_monitor
from harness.toxiproxy import Toxiproxy

pytestmark = pytest.mark.integration

SEED = 5


@pytest.fixture(autouse=True)
def _no_external_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOXIPROXY_URL", raising=False)


class Leftovers:
    """What this process holds before a scenario, to compare with what it holds after."""

    def __init__(self, toxiproxy: Toxiproxy) -> None:
        self.api_port = urlsplit(toxiproxy.url).port
        self.tasks = asyncio.all_tasks()
        self.sockets = self.own_sockets()

    def own_sockets(self) -> set[tuple[Any, ...]]:
        """This process's TCP sockets (each listed while its fd is open), but those to the Toxiproxy API."""
        conns = psutil.Process().net_connections(kind="tcp")
        return {(c.laddr, c.raddr, c.status) for c in conns if not (c.raddr and c.raddr.port == self.api_port)}

    def new_tasks(self) -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if t not in self.tasks and not t.done()]

    def new_sockets(self) -> set[tuple[Any, ...]]:
        return self.own_sockets() - self.sockets

    async def assert_none(self, toxiproxy: Toxiproxy) -> None:
        assert self.new_tasks() == []
        for _ in range(40):  # a closed transport gives up its fd on one of the next loop turns
            if not self.new_sockets():
                break
            await asyncio.sleep(0.05)
        assert self.new_sockets() == set()
        assert await toxiproxy.list_proxies() == []


async def the_next_scenario_passes(toxiproxy: Toxiproxy, target: TargetSpec, out: Path) -> None:
    result = await run_scenario(load(discover(["baseline"])[0]), target, toxiproxy, out, SEED)
    assert result.status == "pass", (result.error, [v.to_json() for v in result.verdicts if v.status != "pass"])


def variant(scenario: Scenario, fault: str, params: dict[str, Any], wait_before_heal: float) -> Scenario:
    """The scenario with some of a fault's params changed, and a wait before its heal (if it has one)."""
    steps = []
    for step in scenario.steps:
        if step.action == "fault" and step.value.name == fault:
            step = Step("fault", replace(step.value, params={**step.value.params, **params}))
        elif step.action == "heal" and step.value == fault and wait_before_heal:
            steps.append(Step("wait", wait_before_heal))
        steps.append(step)
    return replace(scenario, steps=steps)


@pytest.mark.parametrize(
    "name, fault, params, wait_before_heal, after, evidence",
    [
        # Interrupted in the first cut while the method waits (a heal would await the cycle, and be
        # cancelled with it); cuts longer than the teardown, so a cycle left running is still there.
        ("flap", "flap", {"cut": 4.0, "up": 4.0}, 10.0, 0.3, "Flap."),
        ("churn", "churn", {}, 0.0, 1.0, "Churn."),  # clients coming and going
        ("stuck_reader", "ponging", {}, 0.0, 0.3, "StuckClient."),  # silent ones connected, ponging connecting
    ],
)
async def test_a_scenario_cancelled_mid_fault_leaves_nothing_and_the_next_one_passes(
    toxiproxy: Toxiproxy, tmp_path: Path, name: str, fault: str, params: dict[str, Any], wait_before_heal: float,
    after: float, evidence: str,
) -> None:  # fmt: skip
    target = bundled_monitor()
    before = Leftovers(toxiproxy)
    fault_on = asyncio.Event()

    def progress(line: str) -> None:
        if line.startswith(f"fault {fault} "):
            fault_on.set()

    scenario = variant(load(discover([name])[0]), fault, params, wait_before_heal)
    run = asyncio.create_task(run_scenario(scenario, target, toxiproxy, tmp_path / name, SEED, progress))
    async with asyncio.timeout(60):
        await fault_on.wait()
    await asyncio.sleep(after)
    assert [t for t in before.new_tasks() if t.get_coro().__qualname__.startswith(evidence)], "no fault running"
    assert before.new_sockets() and await toxiproxy.list_proxies()
    run.cancel()  # what Ctrl-C and SIGTERM do (harness.cli.run_with_signals)
    with pytest.raises(asyncio.CancelledError):
        await run
    await before.assert_none(toxiproxy)
    history = History.load(tmp_path / name / "history.jsonl")
    assert fault in [r["fault"] for r in history.of("fault_start")] and list(history.of("fault_heal")) == []
    await the_next_scenario_passes(toxiproxy, target, tmp_path / "baseline")


def all_three_faults(timeout: float) -> Scenario:
    """Flap, churn and stuck readers at once, with a method far longer than the timeout."""
    raw = {
        "name": "faults_past_timeout",
        "timeout": timeout,
        "cohorts": [{"name": "steady", "clients": 2}, {"name": "flappy", "clients": 2},
                    {"name": "churners", "clients": 0}, {"name": "silent", "clients": 0}],
        "method": [
            {"wait": 0.3},
            {"fault": {"name": "flap", "type": "flap", "cohort": "flappy", "params": {"cycles": 100}}},
            {"fault": {"name": "churn", "type": "churn", "cohort": "churners", "params": {"lifetime": 2}}},
            {"fault": {"name": "silent", "type": "stuck_reader", "cohort": "silent", "params": {"clients": 2}}},
            {"wait": 120},
        ],
        "checks": {"liveness": {}},
    }  # fmt: skip
    return parse(raw, "faults_past_timeout")


async def test_a_scenario_past_its_timeout_mid_faults_leaves_nothing_and_the_next_one_passes(
    toxiproxy: Toxiproxy, tmp_path: Path
) -> None:
    target = bundled_monitor()
    before = Leftovers(toxiproxy)
    result = await run_scenario(all_three_faults(timeout=10), target, toxiproxy, tmp_path / "timeout", SEED)
    assert result.status == "error" and "within its timeout of 10s" in (result.error or "")
    history = History.load(tmp_path / "timeout" / "history.jsonl")
    assert sorted(r["fault"] for r in history.of("fault_start")) == ["churn", "flap", "silent"]
    assert list(history.of("fault_heal")) == []
    await before.assert_none(toxiproxy)
    await the_next_scenario_passes(toxiproxy, target, tmp_path / "baseline")


async def test_a_healed_latency_fault_does_not_make_a_later_cut_look_unevicted(
    toxiproxy: Toxiproxy, tmp_path: Path
) -> None:
    """A schedule ``wschaos explore`` found on the good monitor: the latency cohort's client, healed
    before the cut, was counted as gone, so the cut cohort seemed never to leave the registry."""
    scenario = load(Path(__file__).parent / "data" / "latency_then_cut.yaml")
    result = await run_scenario(scenario, bundled_monitor(), toxiproxy, tmp_path / "run", SEED)
    assert result.status == "pass", (result.error, [v.to_json() for v in result.verdicts if v.status != "pass"])
