"""Probe clients with a view or a resume request, against the real monitor on loopback: what they ask
for, what the monitor confirms, and what they record."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from harness.clients import ProbeClient
from harness.history import History
from tests.monitor_fixture import running_monitor
from tests.test_clients import probes, received_ids, records, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(20)]


@pytest.mark.parametrize(("view", "confirmed"), [("n1", ["n1"]), (["n1", "n2"], ["n1", "n2"])])
async def test_a_probe_with_a_view_gets_the_views_events_in_every_batch(
    tmp_path: Path, view: Any, confirmed: list[str]
) -> None:
    history = History()
    async with running_monitor(tmp_path) as mon, probes(mon, history, "w", view=view):
        (connect,) = records(history, "connect", "w")
        (init,) = records(history, "init", "w")
        assert connect["view"] == view and init["view"] == confirmed
        wanted: list[str] = []
        for _ in range(3):
            n1, n2 = mon.feed(5, node="n1"), mon.feed(5, node="n2")
            wanted += n1 + (n2 if "n2" in confirmed else [])
            await asyncio.sleep(0.1)
        await until(lambda: len(received_ids(history, "w")) >= len(wanted), "the view's events")
        await asyncio.sleep(0.1)
        assert sorted(received_ids(history, "w")) == sorted(wanted)
        seqs = [r["seq"] for r in records(history, "batch", "w")]
        assert seqs == list(range(init["seq"] + 1, init["seq"] + 1 + len(seqs)))


async def test_a_probe_resumes_by_message_from_its_inits_seq(tmp_path: Path) -> None:
    history = History()
    async with running_monitor(tmp_path) as mon:
        mon.feed(20)
        await until(lambda: mon.state.stream.seq > 0, "a first batch")
        async with probes(mon, history, "r", resume_after=0.2) as (probe,):
            (init,) = records(history, "init", "r")
            mon.feed(10)
            await until(lambda: records(history, "notice", "r"), "the answer to the resume request")
            (request,) = records(history, "resume_request", "r")
            assert (request["epoch"], request["since"]) == (init["epoch"], init["seq"]) and init["seq"] > 0
            (notice,) = records(history, "notice", "r")
            assert notice["type"] == "resumed" and notice["body"]["from_seq"] == init["seq"] + 1
            seqs = [r["seq"] for r in records(history, "batch", "r")]
            assert len(seqs) == len(set(seqs)) and all(s > init["seq"] for s in seqs)
            assert probe.connected


async def test_stop_cancels_a_pending_resume_request(tmp_path: Path) -> None:
    history = History()
    async with running_monitor(tmp_path) as mon:
        probe = ProbeClient("r", "c1", mon.ws_url, history, resume_after=30.0)
        await probe.start()
        assert await probe.wait_init(5.0)
        task = probe._resume_task
        assert task is not None and not task.done()
        await probe.stop()
        assert task.done() and probe._resume_task is None
        assert not records(history, "resume_request")
