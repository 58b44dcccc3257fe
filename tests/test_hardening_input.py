"""Hostile input to a real monitor process: none of it may produce an ERROR record (or a bare
traceback), and each gets a clear answer."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time

import pytest

from tests.hostile import close_code, frame, frames, read_for, request
from tests.monitor_proc import MonitorProcess, monitor_process

pytestmark = pytest.mark.integration


@pytest.fixture
def mon(tmp_path):
    log = tmp_path / "n1.log"
    log.touch()
    with monitor_process(tmp_path, {"n1": log}, "--log-level", "DEBUG") as running:
        yield running


def loud(mon: MonitorProcess) -> list[dict]:
    return mon.loud_records()


async def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


def texts(data: bytes) -> list[dict]:
    return [json.loads(p) for op, p in frames(data) if op == 0x1]


async def test_deeply_nested_json_gets_an_error_reply_not_an_error_record(mon):
    status, _, (reader, writer) = await request(mon.port)
    assert status == 101
    writer.write(frame(b"[" * 3000 + b"]" * 3000))
    data, _ = await read_for(reader, 1.5)
    writer.close()
    errors = [m for m in texts(data) if m["type"] == "error"]
    assert [e["code"] for e in errors] == ["too_deep"]
    assert mon.health()["status"] == "ok"
    assert loud(mon) == []


@pytest.mark.parametrize("since", ["%C2%B2", "%D9%A1%D9%A2", "1" * 5000, "-1"])
async def test_a_since_that_is_not_a_plain_number_asks_for_a_resync(mon, since):
    status, _, (reader, writer) = await request(mon.port, f"/ws?epoch=x&since={since}")
    assert status == 101
    data, _ = await read_for(reader, 1.0)
    writer.close()
    resync = [m for m in texts(data) if m["type"] == "resync_required"]
    assert resync and resync[0]["reason"] in ("bad_since", "epoch_changed")
    assert loud(mon) == []


async def test_the_right_epoch_with_a_superscript_since_is_bad_since(mon):
    _, _, (reader, writer) = await request(mon.port)
    data, _ = await read_for(reader, 0.5)
    writer.close()
    epoch = texts(data)[0]["epoch"]
    _, _, (reader, writer) = await request(mon.port, f"/ws?epoch={epoch}&since=%C2%B2")
    data, _ = await read_for(reader, 1.0)
    writer.close()
    assert [m["reason"] for m in texts(data) if m["type"] == "resync_required"] == ["bad_since"]
    assert loud(mon) == []


async def test_pongs_to_a_client_that_vanished_log_no_error(mon):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", mon.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await reader.readuntil(b"\r\n\r\n")
    pings = frame(b"p" * 125, opcode=0x9) * 1000
    for _ in range(20):  # 20,000 pings, never reading a pong
        writer.write(pings)
        try:
            await asyncio.wait_for(writer.drain(), 1.0)
        except TimeoutError:
            break
    await asyncio.sleep(0.3)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
    await wait_until(lambda: mon.health()["clients"] == 0)
    assert loud(mon) == []


async def test_oversized_request_headers_get_a_quiet_400(mon):
    for _ in range(5):
        status, _, (_, writer) = await request(mon.port, "/", {"X-Big": "a" * 10_000}, upgrade=False)
        writer.close()
        assert status == 400
    assert loud(mon) == []
    quiet = [r for r in mon.log_records() if r.get("logger") == "monitor.guard" and "bad request" in r["msg"]]
    assert len(quiet) == 5 and {r["level"] for r in quiet} == {"DEBUG"}


async def test_an_unmasked_client_frame_is_closed_with_1002(mon):
    status, _, (reader, writer) = await request(mon.port)
    assert status == 101
    await read_for(reader, 0.3)
    writer.write(frame(b'{"type":"ping"}', masked=False))
    data, _ = await read_for(reader, 3.0)
    writer.close()
    assert close_code(data) == 1002
    assert loud(mon) == []


async def test_masked_frames_split_at_every_byte_still_work(mon):
    """The mask check follows frame boundaries across reads of any size."""
    _, _, (reader, writer) = await request(mon.port)
    await read_for(reader, 0.3)
    data = b"".join(frame(json.dumps({"type": "ping", "t": i}).encode()) for i in range(3))
    data += frame(json.dumps({"type": "ping", "t": "x" * 300}).encode())  # a 16-bit length (echo: None)
    for i in range(len(data)):
        writer.write(data[i : i + 1])
        await writer.drain()
        await asyncio.sleep(0)
    answer, _ = await read_for(reader, 1.5)
    writer.close()
    pongs = [m["t"] for m in texts(answer) if m["type"] == "pong"]
    assert pongs == [0, 1, 2, None]
    assert close_code(answer) is None


@pytest.mark.parametrize(("masked", "close"), [(True, None), (False, 1002)])
async def test_frames_sent_with_the_handshake_are_checked_too(mon, masked, close):
    """Bytes that arrive together with the upgrade request are parsed before the handler runs."""
    reader, writer = await asyncio.open_connection("127.0.0.1", mon.port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        + frame(b'{"type":"ping","t":7}', masked=masked)
    )
    await reader.readuntil(b"\r\n\r\n")
    data, _ = await read_for(reader, 1.5)
    writer.close()
    assert close_code(data) == close
    if masked:
        assert [m["t"] for m in texts(data) if m["type"] == "pong"] == [7]


def test_clients_that_reset_mid_handshake_leave_no_error_record(mon):
    """An upgrade request followed at once by a reset, many times: the handshake fails on a dead
    transport, which must stay a DEBUG line (returning the half-prepared response made aiohttp log
    "Call .prepare() first" at ERROR)."""
    upgrade = (
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    for _ in range(300):
        sock = socket.create_connection(("127.0.0.1", mon.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(upgrade)
        sock.close()  # SO_LINGER 0: a reset, with the request already sent
    time.sleep(1.0)
    assert mon.health()["status"] == "ok"
    assert loud(mon) == []
