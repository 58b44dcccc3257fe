"""A scenario written in Python with the plugin's fixtures: target, cohort and fault."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.integration


async def test_network_cut_written_in_python(target, cohort, fault, history):
    steady = await cohort("steady", clients=2)
    cut = await cohort("cut", clients=2, reconnect=False)
    assert all(c.connected for c in steady.clients + cut.clients)
    await fault("network_cut", cohort=cut)
    await asyncio.sleep(4.5)  # the bundled monitor's heartbeat is 2 s: half-open clients go within ~3 s
    samples = [r["clients"] for r in history.of("metrics") if r.get("clients") is not None]
    assert samples and samples[-1] == 2, f"registry sizes seen: {samples[-10:]}"
    assert [r["type"] for r in history.of("fault_start")] == ["network_cut"]
