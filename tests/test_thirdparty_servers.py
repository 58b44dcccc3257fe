"""The real third-party servers: Centrifugo with the generated config, and the Socket.IO app.

Each test starts its server on a free loopback port, publishes over HTTP, reads over a WebSocket and
stops the server by pid (SIGTERM, and it must exit cleanly). They skip when scripts/bootstrap could not
install the server (no Go, no Node).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from harness.targets.centrifugo_config import connection_token
from tests.thirdparty_proc import (
    API_KEY,
    CENTRIFUGO,
    ROOT,
    ServerProcess,
    centrifugo_process,
    missing_centrifugo,
    missing_socketio,
    socketio_process,
)

pytestmark = pytest.mark.integration
needs_centrifugo = pytest.mark.skipif(missing_centrifugo() is not None, reason=missing_centrifugo() or "")
needs_socketio = pytest.mark.skipif(missing_socketio() is not None, reason=missing_socketio() or "")

EVENTS = [{"id": f"e{i}", "n": i} for i in range(1, 4)]
SECRET = "wschaos-test-hs256-secret"


def _stopped_cleanly(server: ServerProcess) -> None:
    assert server.terminate() == 0, server.log_text()[-2000:]


@pytest.fixture
def centrifugo(tmp_path: Path) -> Iterator[ServerProcess]:
    with centrifugo_process(tmp_path) as server:
        yield server
        _stopped_cleanly(server)


@pytest.fixture
def centrifugo_token(tmp_path: Path) -> Iterator[ServerProcess]:
    with centrifugo_process(tmp_path, token_secret=SECRET) as server:
        yield server
        _stopped_cleanly(server)


@pytest.fixture
def socketio(tmp_path: Path) -> Iterator[ServerProcess]:
    with socketio_process(tmp_path) as server:
        yield server
        _stopped_cleanly(server)


async def _centrifugo_command(ws: aiohttp.ClientWebSocketResponse, command: dict[str, Any]) -> dict[str, Any]:
    await ws.send_json(command)
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
    return json.loads(msg.data)


async def _centrifugo_pubs(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    """Publications in arrival order; one frame can hold several pushes, one JSON per line."""
    pubs: list[dict[str, Any]] = []
    while len(pubs) < count:
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
        pubs += [json.loads(line)["push"]["pub"] for line in msg.data.splitlines() if '"push"' in line]
    return pubs


@needs_centrifugo
async def test_centrifugo_delivers_published_events_in_order(centrifugo: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"ws://127.0.0.1:{centrifugo.port}/connection/websocket") as ws:
            connected = await _centrifugo_command(ws, {"id": 1, "connect": {}})
            assert "client" in connected["connect"], connected
            subscribed = await _centrifugo_command(ws, {"id": 2, "subscribe": {"channel": "feed:t"}})
            assert subscribed["subscribe"]["recoverable"] is True, subscribed
            for event in EVENTS:
                status, answer = centrifugo.post_json("/api/publish", {"channel": "feed:t", "data": event},
                                                      {"X-API-Key": API_KEY})
                assert status == 200 and "offset" in answer["result"], answer
            pubs = await _centrifugo_pubs(ws, len(EVENTS))
    assert [p["data"] for p in pubs] == EVENTS
    assert [p["offset"] for p in pubs] == [1, 2, 3]


@needs_centrifugo
async def test_centrifugo_token_mode_needs_a_valid_token(centrifugo_token: ServerProcess) -> None:
    url = f"ws://127.0.0.1:{centrifugo_token.port}/connection/websocket"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            await ws.send_json({"id": 1, "connect": {}})
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 3501, (msg.type, msg.data, msg.extra)
        async with session.ws_connect(url) as ws:
            token = connection_token(SECRET, "alice")
            connected = await _centrifugo_command(ws, {"id": 1, "connect": {"token": token}})
            assert "client" in connected["connect"], connected
            subscribed = await _centrifugo_command(ws, {"id": 2, "subscribe": {"channel": "feed:t"}})
            assert "error" not in subscribed, subscribed


@needs_centrifugo
def test_centrifugo_config_cli_writes_a_config_the_binary_accepts(tmp_path: Path) -> None:
    out = tmp_path / "config.json"
    cmd = [sys.executable, "-m", "harness.targets.centrifugo_config", "--port", "18000", "--out", str(out),
           "--queue-max-size", "65536"]
    env = {k: v for k, v in os.environ.items() if k != "CENTRIFUGO_API_KEY"}
    refused = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode == 2 and "CENTRIFUGO_API_KEY" in refused.stderr
    subprocess.run(cmd, env={**env, "CENTRIFUGO_API_KEY": "k"}, cwd=ROOT, check=True)
    assert json.loads(out.read_text())["client"]["queue_max_size"] == 65536
    checked = subprocess.run([str(CENTRIFUGO), "checkconfig", "--config", str(out)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_socketio
async def test_socketio_delivers_published_events_in_order(socketio: ServerProcess) -> None:
    url = f"ws://127.0.0.1:{socketio.port}/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            opened = await ws.receive_str(timeout=5)
            assert opened.startswith("0{") and "pingInterval" in json.loads(opened[1:]), opened
            await ws.send_str("40")
            assert (await ws.receive_str(timeout=5)).startswith("40{")
            status, answer = socketio.post_json("/publish", EVENTS[0])
            assert (status, answer) == (200, {"emitted": 1})
            status, answer = socketio.post_json("/publish", EVENTS[1:])
            assert (status, answer) == (200, {"emitted": 2})
            got = [await ws.receive_str(timeout=5) for _ in EVENTS]
    assert [json.loads(text[2:]) for text in got] == [["event", event] for event in EVENTS]
    assert all(text.startswith("42") for text in got)
