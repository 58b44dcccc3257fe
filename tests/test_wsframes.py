"""The frame tracker places the end of a server's byte stream between frames or inside one, however
the bytes were split, and the probe clients record it when a connection breaks."""

from __future__ import annotations

import asyncio
import random
import socket
import struct

import pytest
from aiohttp import web

from harness.bite import Subject, record_cut_off
from harness.clients import probe_session
from harness.history import History
from harness.wsframes import FrameTracker


def server_frame(n: int, opcode: int = 0x1) -> bytes:
    head = bytes([0x80 | opcode])
    if n < 126:
        return head + bytes([n]) + b"x" * n
    if n < 65536:
        return head + struct.pack("!BH", 126, n) + b"x" * n
    return head + struct.pack("!BQ", 127, n) + b"x" * n


FRAMES = [server_frame(n) for n in (0, 5, 125, 126, 300, 65535, 65536, 70000)] + [server_frame(4, 0x9)]
STREAM = b"".join(FRAMES)
BOUNDARIES = {sum(len(f) for f in FRAMES[:i]) for i in range(len(FRAMES) + 1)}


def frame_at(cut: int) -> tuple[int, int, int]:
    """(bytes of the frame before ``cut``, the frame's length, its header's length)."""
    start = 0
    for frame in FRAMES:
        if start <= cut < start + len(frame):
            header = 2 + {126: 2, 127: 8}.get(frame[1] & 0x7F, 0)
            return cut - start, len(frame), header
        start += len(frame)
    raise AssertionError(cut)


def fed_in_pieces(data: bytes, rng: random.Random) -> FrameTracker:
    tracker = FrameTracker()
    i = 0
    while i < len(data):
        step = rng.choice([1, 2, 3, 7, 1000, 70000])
        tracker.feed(data[i : i + step])
        i += step
    return tracker


@pytest.mark.parametrize("seed", range(5))
def test_the_tracker_knows_every_boundary_and_every_place_inside_a_frame(seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(BOUNDARIES | {b + d for b in BOUNDARIES for d in (1, 2, 3, 9, 11)} | {rng.randrange(len(STREAM))})
    for cut in (c for c in cuts if c <= len(STREAM)):
        tracker = fed_in_pieces(STREAM[:cut], rng)
        if cut in BOUNDARIES:
            assert tracker.inside() is None, cut
            continue
        got, length, header = frame_at(cut)
        assert tracker.inside() == (got, length if got >= header else None), cut
    assert fed_in_pieces(STREAM, rng).frames == len(FRAMES)


def _history_with(inside: list[object]) -> History:
    history = History()
    for i in range(2):
        history.record("batch", client=f"c-{i}", seq=1, ids=["a"])
    for i, where in enumerate(inside):
        history.record("close", client=f"c-{i}", by="error", reason="closed", inside_frame=where)
    return history


@pytest.mark.parametrize(("inside", "bit"), [([[10, 300], False], True), ([False, False], False),
                                             ([None, False], False)])  # fmt: skip
def test_a_cut_after_a_byte_count_bites_only_inside_a_frame(inside: list[object], bit: bool) -> None:
    history = _history_with(inside)
    record_cut_off(Subject("cut", "mid_send_disconnect", "c"), history, ["c-0", "c-1"], 0.0,
                   {"c-0": 0.0, "c-1": 0.0}, inside_frame=True)  # fmt: skip
    (bite,) = history.of("fault_bite")
    assert bite["bit"] is bit, bite["how"]
    assert bite["figures"]["cut_inside_a_frame"] == sum(bool(w) for w in inside)


async def _server_that_stops_mid_frame(frame: bytes, keep: int) -> tuple[web.AppRunner, int]:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("hello")
        transport = request.transport
        assert transport is not None
        transport.write(frame[:keep])
        await asyncio.sleep(0.05)
        transport.close()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    return runner, sock.getsockname()[1]


@pytest.mark.integration
@pytest.mark.parametrize(("keep", "expected"), [(100, [100, 304]), (0, False), (1, [1, None])])
async def test_a_probe_client_records_where_in_a_frame_its_connection_broke(keep: int, expected: object) -> None:
    from harness.clients import ProbeClient

    runner, port = await _server_that_stops_mid_frame(server_frame(300), keep)
    history = History()
    try:
        async with probe_session() as session:
            client = ProbeClient("c-0", "c", f"http://127.0.0.1:{port}/", history, session=session, reconnect=False)
            await client.start()
            await asyncio.wait_for(client._task, 5)  # type: ignore[arg-type]
            await client.stop()
    finally:
        await runner.cleanup()
    (close,) = history.of("close")
    assert close["by"] == "error" and close["inside_frame"] == expected, close
