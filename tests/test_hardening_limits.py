"""Descriptor exhaustion and slow clients against a real monitor process: a header deadline, a
client cap answered 503 before the handshake, and a quiet listener when descriptors run out."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import pytest

from monitor.access import is_loopback
from tests.hostile import read_for, request
from tests.monitor_proc import monitor_process

pytestmark = pytest.mark.integration


@pytest.fixture
def node_log(tmp_path):
    log = tmp_path / "n1.log"
    log.touch()
    return log


async def test_a_connection_that_never_finishes_its_headers_is_closed(tmp_path, node_log):
    with monitor_process(tmp_path, {"n1": node_log}, "--header-timeout", "1") as mon:
        slow = [await asyncio.open_connection("127.0.0.1", mon.port) for _ in range(20)]
        for _, writer in slow:
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        ended = [(await read_for(reader, 8.0))[1] for reader, _ in slow]
        for _, writer in slow:
            writer.close()
        assert all(ended), f"{ended.count(False)} slow connections still open"
        # A client that sends its request at once is not affected; nor is a WebSocket that stays.
        status, _, (reader, writer) = await request(mon.port)
        assert status == 101
        _, closed = await read_for(reader, 2.0)
        writer.close()
        assert not closed
        assert mon.loud_records() == []


async def test_clients_over_max_clients_are_refused_with_503_before_the_handshake(tmp_path, node_log):
    with monitor_process(tmp_path, {"n1": node_log}, "--max-clients", "2") as mon:
        first = await request(mon.port)
        second = await request(mon.port)
        assert (first[0], second[0]) == (101, 101)
        third = await request(mon.port)
        assert third[0] == 503
        first[2][1].close()
        deadline = time.monotonic() + 10
        while mon.health()["clients"] > 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        again = await request(mon.port)
        assert again[0] == 101
        for conn in (second, third, again):
            conn[2][1].close()
        assert mon.loud_records() == []


async def test_out_of_descriptors_logs_once_and_recovers(tmp_path, node_log):
    """200 connections to a monitor allowed 64 descriptors: no ERROR flood, at most one WARNING,
    and once they go the monitor serves again."""
    with monitor_process(tmp_path, {"n1": node_log}, wrapper=("prlimit", "--nofile=64")) as mon:
        loop = asyncio.get_running_loop()
        socks = []
        for _ in range(200):
            s = socket.socket()
            s.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", mon.port)), 1.0)
                socks.append(s)
            except (OSError, TimeoutError):
                s.close()
        await asyncio.sleep(2.0)
        for s in socks:
            s.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                assert mon.health()["status"] == "ok"
                break
            except OSError:
                assert time.monotonic() < deadline, "the monitor did not serve again"
                await asyncio.sleep(0.2)
        loud = mon.loud_records()
        assert [r for r in loud if r["level"] != "WARNING"] == []
        assert len(loud) <= 1 and all(r["logger"] == "monitor.listener" for r in loud)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--queue-size", "-1"], "--queue-size: must not be negative"),
        (["--heartbeat", "-0.5"], "--heartbeat: must not be negative"),
        (["--max-clients", "x"], "--max-clients: expected a whole number"),
        (["--header-timeout", "nan"], "--header-timeout: must not be negative"),
        (["--demo", "--demo-dir", "/proc/no/such"], "--demo-dir /proc/no/such"),
        (["--host", "no-such-host.invalid", "--port", "0"], "cannot listen on no-such-host.invalid"),
    ],
)
def test_bad_options_are_one_line(tmp_path, node_log, args, needle):
    cmd = [sys.executable, "-m", "monitor", "--node", f"n1:{node_log}", "--db", str(tmp_path / "m.db"), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode in (1, 2)
    lines = done.stderr.strip().splitlines()
    assert needle in lines[-1] and "Traceback" not in done.stderr
    assert len([line for line in lines if not line.startswith(("usage:", " "))]) <= 2


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1") and not is_loopback("example.org")
