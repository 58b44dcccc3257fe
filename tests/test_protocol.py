"""The WebSocket protocol: the opening messages, requests, resume, and clear errors for bad input."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.monitor_fixture import Recorder, running_monitor

pytestmark = pytest.mark.integration


async def first_messages(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict]:
    return [await ws.receive_json(timeout=5) for _ in range(count)]


async def reply_of(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 5.0) -> dict:
    """The next message of ``kind``, skipping broadcasts."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive_json()
            if msg["type"] == kind:
                return msg


async def test_connect_gets_init_then_stats(tmp_path):
    async with running_monitor(tmp_path) as mon, aiohttp.ClientSession() as s:
        ws = await s.ws_connect(mon.ws_url)
        init, status, stats = await first_messages(ws, 3)
        assert init["type"] == "init" and init["nodes"] == ["n1", "n2"] and init["view"] == "all"
        assert init["epoch"] == mon.state.stream.epoch and init["seq"] == mon.state.stream.seq
        assert status["type"] == "connection_status" and set(status["nodes"]) == {"n1", "n2"}
        assert stats["type"] == "stats_update" and set(stats["nodes"]) == {"n1", "n2"}


async def test_requests_get_answers(tmp_path):
    async with running_monitor(tmp_path) as mon, aiohttp.ClientSession() as s:
        ws = await s.ws_connect(mon.ws_url)
        await first_messages(ws, 3)
        await ws.send_json({"type": "ping", "t": 42})
        assert (await reply_of(ws, "pong"))["t"] == 42
        await ws.send_json({"type": "set_view", "view": ["n2"]})
        assert (await reply_of(ws, "view_changed"))["view"] == ["n2"]
        assert set((await reply_of(ws, "stats_update"))["nodes"]) == {"n2"}
        await ws.send_json({"type": "get_stats"})
        assert (await reply_of(ws, "stats_update"))["view"] == ["n2"]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_json"),
        ("[1, 2]", "bad_request"),
        ('{"type": 7}', "bad_request"),
        ('{"type": "subscribe_everything"}', "unknown_type"),
        ('{"type": "set_view", "view": ["nope"]}', "invalid_view"),
        ('{"type": "set_view", "view": []}', "invalid_view"),
        ('{"type": "set_view"}', "invalid_view"),
        (json.dumps({"type": "ping", "pad": "x" * 20_000}), "too_large"),
    ],
)
async def test_bad_input_gets_a_clear_error_and_the_connection_stays_usable(tmp_path, frame, code):
    async with running_monitor(tmp_path) as mon, aiohttp.ClientSession() as s:
        ws = await s.ws_connect(mon.ws_url)
        await first_messages(ws, 3)
        await ws.send_str(frame)
        err = await reply_of(ws, "error")
        assert err["code"] == code and err["message"]
        await ws.send_json({"type": "ping", "t": "still-here"})
        assert (await reply_of(ws, "pong"))["t"] == "still-here"


async def test_binary_frame_is_refused_politely(tmp_path):
    async with running_monitor(tmp_path) as mon, aiohttp.ClientSession() as s:
        ws = await s.ws_connect(mon.ws_url)
        await first_messages(ws, 3)
        await ws.send_bytes(b"\x00\x01")
        assert (await reply_of(ws, "error"))["code"] == "binary_not_supported"


async def test_huge_frame_closes_with_1009(tmp_path):
    async with running_monitor(tmp_path, max_message_bytes=64 * 1024) as mon, aiohttp.ClientSession() as s:
        ws = await s.ws_connect(mon.ws_url)
        await first_messages(ws, 3)
        await ws.send_str("x" * 100_000)
        async with asyncio.timeout(5):
            while (await ws.receive()).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                pass
        assert ws.close_code == 1009
        await mon.wait_clients(0)


async def test_flooding_client_is_rate_limited_then_disconnected(tmp_path):
    async with running_monitor(tmp_path, rate_limit=20.0, rate_burst=20.0) as mon, aiohttp.ClientSession() as s:
        ws = await s.ws_connect(mon.ws_url)
        calm = Recorder(await s.ws_connect(mon.ws_url))
        await first_messages(ws, 3)
        for _ in range(30):
            await ws.send_json({"type": "ping"})
        assert (await reply_of(ws, "error"))["code"] == "rate_limited"
        for _ in range(600):
            if ws.closed:
                break
            await ws.send_json({"type": "ping"})
        async with asyncio.timeout(5):
            while (await ws.receive()).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                pass
        assert ws.close_code == 1008
        assert mon.state.metrics.evictions["flooding"] == 1
        await calm.ws.send_json({"type": "ping", "t": 1})
        await calm.wait_for(lambda r: r.of_type("pong"))


async def test_resume_in_the_url_replays_in_order(tmp_path):
    async with running_monitor(tmp_path) as mon, aiohttp.ClientSession() as s:
        first = Recorder(await s.ws_connect(mon.ws_url))
        ids = mon.feed(30)
        await first.wait_for(lambda r: len(r.piece_ids()) == 30)
        epoch, last = first.messages[0]["epoch"], first.seqs()[-1]
        await first.ws.close()
        missed = mon.feed(20)
        await asyncio.sleep(0.3)
        again = Recorder(await s.ws_connect(mon.ws_url, params={"epoch": epoch, "since": str(last)}))
        more = mon.feed(10)
        await again.wait_for(lambda r: len(r.piece_ids()) == 30)
        assert again.messages[0]["type"] == "init"
        assert again.messages[1]["type"] == "resumed" and again.messages[1]["from_seq"] == last + 1
        assert again.piece_ids() == missed + more
        seqs = again.seqs()
        assert seqs == list(range(last + 1, last + 1 + len(seqs)))
        assert ids


@pytest.mark.parametrize(
    ("epoch", "since", "reason"),
    [("other-epoch", 0, "epoch_changed"), (None, 10_000, "future_seq"), (None, "x", "bad_since")],
)
async def test_resume_that_cannot_be_served_asks_for_resync(tmp_path, epoch, since, reason):
    async with running_monitor(tmp_path) as mon, aiohttp.ClientSession() as s:
        ws = await s.ws_connect(mon.ws_url)
        init, _, _ = await first_messages(ws, 3)
        await ws.send_json({"type": "resume", "epoch": epoch or init["epoch"], "since": since})
        resync = await reply_of(ws, "resync_required")
        assert resync["reason"] == reason and resync["epoch"] == init["epoch"]


async def test_resume_older_than_the_replay_buffer_asks_for_resync(tmp_path):
    async with running_monitor(tmp_path, replay_size=3) as mon, aiohttp.ClientSession() as s:
        ws = await s.ws_connect(mon.ws_url)
        init, _, _ = await first_messages(ws, 3)
        for _ in range(6):
            mon.feed(1)
            await asyncio.sleep(0.15)
        await ws.close()
        again = await s.ws_connect(mon.ws_url, params={"epoch": init["epoch"], "since": str(init["seq"])})
        assert (await reply_of(again, "resync_required"))["reason"] == "too_old"


async def test_view_filters_events_but_not_seq(tmp_path):
    async with running_monitor(tmp_path) as mon, aiohttp.ClientSession() as s:
        everyone = Recorder(await s.ws_connect(mon.ws_url))
        only_n2 = Recorder(await s.ws_connect(mon.ws_url, params={"view": "n2"}))
        n1 = mon.feed(5, "n1")
        await asyncio.sleep(0.2)
        n2 = mon.feed(5, "n2")
        await everyone.wait_for(lambda r: len(r.piece_ids()) == 10)
        await only_n2.wait_for(lambda r: len(r.piece_ids()) == 5)
        assert only_n2.piece_ids() == n2 and everyone.piece_ids() == n1 + n2
        assert only_n2.seqs() == everyone.seqs()


async def test_origin_allow_list(tmp_path):
    async with running_monitor(tmp_path, allowed_origins=["http://good.example"]) as mon:
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await s.ws_connect(mon.ws_url, origin="http://evil.example")
            assert refused.value.status == 403
            ws = await s.ws_connect(mon.ws_url, origin="http://good.example")
            assert (await ws.receive_json(timeout=5))["type"] == "init"


async def test_healthz_and_metrics(tmp_path):
    async with running_monitor(tmp_path) as mon, aiohttp.ClientSession() as s:
        rec = Recorder(await s.ws_connect(mon.ws_url))
        mon.feed(3)
        await rec.wait_for(lambda r: len(r.piece_ids()) == 3)
        base = f"http://{mon.host}:{mon.port}"
        health = await (await s.get(f"{base}/healthz")).json()
        assert health["status"] == "ok" and health["clients"] == 1 and health["events_persisted"] == 3
        text = await (await s.get(f"{base}/metrics")).text()
        assert "monitor_clients 1.0" in text
        assert "monitor_events_persisted_total 3.0" in text
        page = await (await s.get(f"{base}/")).text()
        assert "<html" in page.lower()
