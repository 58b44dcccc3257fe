"""SIGTERM closes every client with 1001 within a bound, even one that reads nothing."""

from __future__ import annotations

import asyncio
import signal
import socket
import time

import aiohttp
import pytest
from aiohttp import web

from monitor.__main__ import stop_runner
from monitor.logparse import format_line
from tests.monitor_fixture import Recorder
from tests.monitor_proc import monitor_process
from tests.rawws import RawWebSocket

pytestmark = pytest.mark.integration


def append_lines(path, count: int) -> None:
    line = format_line("2026-11-25T12:00:00.000Z", "INFO", "piecestore", "downloaded",
                       {"Piece ID": "X" * 52, "Action": "GET", "Size": 1, "Satellite ID": "S"})
    with path.open("a") as fh:
        fh.write((line + "\n") * count)


async def test_sigterm_with_a_stuck_client_closes_everyone_within_the_bound(tmp_path):
    log = tmp_path / "n1.log"
    log.touch()
    with monitor_process(tmp_path, {"n1": log}, "--send-timeout", "30", "--queue-size", "100000") as mon:
        async with aiohttp.ClientSession() as s:
            good = [Recorder(await s.ws_connect(f"{mon.base}/ws")) for _ in range(3)]
            stuck = await RawWebSocket.connect("127.0.0.1", mon.port, rcvbuf=4096)
            for _ in range(10):
                append_lines(log, 1000)
                await asyncio.sleep(0.05)
            # A healthy client is one that keeps up: one still parsing a backlog when the close frame
            # comes cannot answer it within close_timeout, and is rightly aborted like the stuck one.
            for rec in good:
                await rec.wait_for(lambda r: len(r.piece_ids()) == 10_000, timeout=60)
            assert mon.health()["clients"] == 4, "the stuck client must still be connected"
            started = time.monotonic()
            mon.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                await asyncio.gather(*(rec.task for rec in good))
            codes = [rec.ws.close_code for rec in good]
            await asyncio.to_thread(mon.proc.wait, 10)
            elapsed = time.monotonic() - started
            stuck.rst()
    assert codes == [1001, 1001, 1001]
    assert mon.proc.returncode == 0
    # close_timeout (1 s) bounds the stuck client; the rest is flushing the store.
    assert elapsed < 8, f"shutdown took {elapsed:.1f}s"
    assert mon.loud_records() == []




async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.mark.parametrize("iterations", range(8))
async def test_a_request_that_arrives_as_the_server_stops_does_not_hold_the_exit(iterations):
    # With aiohttp's own cleanup, a connection accepted 3 loop iterations before it (aiohttp 3.14)
    # ignores its request and holds the exit for the whole shutdown timeout (60 s here).
    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app, shutdown_timeout=60.0, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    with socket.create_connection(runner.addresses[0][:2], timeout=10) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: monitor\r\n\r\n")
        for _ in range(iterations):
            await asyncio.sleep(0)
        async with asyncio.timeout(10):
            await stop_runner(runner)
