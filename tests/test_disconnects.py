"""Clients that vanish in every way while broadcasts flow: the server stays quiet, the others get
everything in order, and the vanished client leaves the registry."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from tests.monitor_fixture import Recorder, running_monitor
from tests.rawws import RawWebSocket

pytestmark = pytest.mark.integration

VARIANTS = ["close_frame", "fin", "rst", "never_reads", "mid_frame"]


async def disrupt(bad: RawWebSocket, variant: str) -> None:
    if variant == "close_frame":
        bad.writer.write(RawWebSocket.frame(b"\x03\xe8", opcode=0x8))
        await bad.writer.drain()
        bad.fin()
    elif variant == "fin":
        bad.fin()
    elif variant == "rst":
        bad.rst()
    elif variant == "mid_frame":
        await bad.half_frame_then_rst()
    # never_reads: the client just stays connected and reads nothing


def warnings_and_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("variant", VARIANTS)
async def test_vanishing_client_does_not_disturb_the_rest(tmp_path, caplog, variant):
    caplog.set_level(logging.DEBUG)
    async with running_monitor(tmp_path, send_timeout=2.0, queue_size=64, heartbeat=5.0) as mon:
        async with aiohttp.ClientSession() as session:
            good = [Recorder(await session.ws_connect(mon.ws_url)) for _ in range(3)]
            bad = await RawWebSocket.connect(mon.host, mon.port, rcvbuf=4096)
            await mon.wait_clients(4)
            expected: list[str] = []
            for i in range(40):
                expected += mon.feed(100)
                if i == 5:
                    await disrupt(bad, variant)
                await asyncio.sleep(0.03)
            for rec in good:
                await rec.wait_for(lambda r: len(r.piece_ids()) >= len(expected), timeout=20)
            await mon.wait_clients(3, timeout=20)
            for rec in good:
                assert rec.piece_ids() == expected
                seqs = rec.seqs()
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap or repeat in seq"
            for rec in good:
                await rec.ws.close()
        bad.rst()
    assert warnings_and_errors(caplog) == []
    reasons = mon.state.metrics.evictions
    if variant == "never_reads":
        assert reasons["queue_full"] + reasons["send_timeout"] + reasons["heartbeat_timeout"] == 1, reasons


async def test_stuck_client_evicted_with_slow_consumer_code(tmp_path):
    """A client that reads nothing is evicted for being slow, and nobody else waits for it."""
    async with running_monitor(tmp_path, send_timeout=1.0, queue_size=32) as mon:
        async with aiohttp.ClientSession() as session:
            good = Recorder(await session.ws_connect(mon.ws_url))
            stuck = await RawWebSocket.connect(mon.host, mon.port, rcvbuf=4096)
            await mon.wait_clients(2)
            expected: list[str] = []
            while len(mon.hub.clients) == 2:
                expected += mon.feed(200)
                await asyncio.sleep(0.03)
                assert len(expected) < 400_000, "the stuck client was never evicted"
            await good.wait_for(lambda r: len(r.piece_ids()) >= len(expected), timeout=20)
            assert good.piece_ids() == expected
            evictions = dict(mon.state.metrics.evictions)
            assert set(evictions) <= {"queue_full", "send_timeout"} and sum(evictions.values()) == 1
            await good.ws.close()
        stuck.rst()
