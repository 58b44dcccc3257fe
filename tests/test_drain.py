"""The runner's drain after the feed stops: every connected probe client gets the time to receive the
last events, faulted cohorts' too (their delivery may be judged)."""

from __future__ import annotations

from typing import Any

from harness.clients import Cohort, ProbeClient, StuckClient
from harness.dialects import make_dialect
from harness.history import History
from harness.runner import Run, drain_clients


def probe(name: str, cohort: str, history: History, connected: bool = True) -> ProbeClient:
    client = ProbeClient(name, cohort, "ws://127.0.0.1:9/ws", history, make_dialect(None, None))
    client.connected = connected
    return client


def test_the_drain_waits_for_faulted_cohorts_as_for_healthy_ones() -> None:
    h = History()
    healthy, faulted = probe("good-0", "good", h), probe("lagging-0", "lagging", h)
    gone = probe("lagging-1", "lagging", h, connected=False)
    stuck = StuckClient("stuck-0", "stuck", "127.0.0.1", 9, "/ws", h, answer_heartbeats=False)
    none: Any = None
    run = Run(none, h, none, none, 1, none, faulted={"lagging"})
    run.cohorts = {"good": Cohort("good", [healthy]), "lagging": Cohort("lagging", [faulted, gone]),
                   "stuck": Cohort("stuck", [stuck])}  # fmt: skip
    assert drain_clients(run) == [healthy, faulted]
