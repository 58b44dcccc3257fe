"""How a run ends after the last heal: it waits, within bounds, for what the checkers will judge (a
liveness round, clients that reconnect by themselves), so a verdict never depends on where a
client's backoff happened to be when the steady phase ran out."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from harness.history import History
from harness.runner import wait_for_reconnects


@dataclass
class _Client:
    connected: bool
    reconnect: bool = True


@dataclass
class _Cohort:
    probes: list[_Client]


@dataclass
class _Scenario:
    checks: dict[str, Any]


@dataclass
class _Run:
    scenario: _Scenario
    cohorts: dict[str, _Cohort]
    history: History = field(default_factory=History)


async def test_the_run_waits_for_a_recovery_cohort_to_reconnect() -> None:
    back_later, never = _Client(False), _Client(False, reconnect=False)
    run = _Run(_Scenario({"recovery": {"cohort": "steady", "within": 5}}), {"steady": _Cohort([back_later, never])})
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, setattr, back_later, "connected", True)
    started = time.monotonic()
    await wait_for_reconnects(run, run.history.now())  # type: ignore[arg-type]
    # until it was back: the client that does not reconnect by itself is not waited for
    assert 0.25 <= time.monotonic() - started < 2.0


async def test_the_wait_ends_at_the_recovery_bound_after_the_heal() -> None:
    run = _Run(_Scenario({"recovery@a": {"cohort": "steady", "within": 0.4}}), {"steady": _Cohort([_Client(False)])})
    started = time.monotonic()
    await wait_for_reconnects(run, run.history.now())  # type: ignore[arg-type]
    assert 0.3 <= time.monotonic() - started < 1.5


async def test_no_recovery_check_means_no_wait() -> None:
    run = _Run(_Scenario({"delivery": {"cohorts": ["steady"]}}), {"steady": _Cohort([_Client(False)])})
    started = time.monotonic()
    await wait_for_reconnects(run, run.history.now())  # type: ignore[arg-type]
    assert time.monotonic() - started < 0.2
