"""Probe and stuck clients speaking the dialects of the real third-party servers: Centrifugo and the
Socket.IO app, each started on a free loopback port and stopped by pid. A probe client receives the
published events with their ids (and Centrifugo's offsets) and answers the server's pings; a stuck
client that answers heartbeats the dialect's way stays connected without reading, one that does not is
dropped. Skipped when scripts/bootstrap could not install the server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.clients import ProbeClient, StuckClient
from harness.dialects import Dialect, make_dialect
from harness.history import History
from tests.thirdparty_proc import (
    API_KEY,
    ServerProcess,
    centrifugo_process,
    missing_centrifugo,
    missing_socketio,
    socketio_process,
)

pytestmark = pytest.mark.integration
needs_centrifugo = pytest.mark.skipif(missing_centrifugo() is not None, reason=missing_centrifugo() or "")
needs_socketio = pytest.mark.skipif(missing_socketio() is not None, reason=missing_socketio() or "")

CHANNEL = "feed:probe"
EVENTS = [{"id": f"e{i}", "n": i} for i in range(1, 4)]
PING_S = 0.5  # the servers ping this often and wait as long for the answer


@pytest.fixture
def centrifugo(tmp_path: Path) -> Iterator[ServerProcess]:
    # A stuck client answers Centrifugo's pings blind (see the dialect): a wide pong window keeps its
    # timing robust on a busy machine.
    with centrifugo_process(tmp_path, ping_interval="2s", pong_timeout="1s") as server:
        yield server


@pytest.fixture
def socketio(tmp_path: Path) -> Iterator[ServerProcess]:
    with socketio_process(tmp_path, ping_interval_ms=int(PING_S * 1000), ping_timeout_ms=int(PING_S * 1000)) as server:
        yield server


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def batches(history: History, client: str) -> list[tuple[Any, list[Any]]]:
    return [(r["seq"], r["ids"]) for r in history.of("batch") if r["client"] == client]


def closes(history: History, client: str) -> list[dict[str, Any]]:
    return [r for r in history.of("close") if r["client"] == client]


async def probe_receives(history: History, url: str, dialect: Dialect, publish: Callable[[], None]) -> ProbeClient:
    """A probe client that got the stream ready, received every published event and outlived a few pings."""
    client = ProbeClient("p1", "probe", url, history, dialect, reconnect=False)
    await client.start()
    try:
        assert await client.wait_init(10), list(history.of("connect_error", "close"))
        await asyncio.to_thread(publish)
        await until(lambda: client.events >= len(EVENTS), "the published events")
        await asyncio.sleep(PING_S * 6)  # several pings: each answered, or the server drops us
        assert client.connected and not closes(history, "p1"), closes(history, "p1")
    finally:
        await client.stop()
    return client


async def stuck_pair(history: History, port: int, path: str, dialect: Dialect,
                     dropped: Callable[[StuckClient], int]) -> tuple[StuckClient, StuckClient]:  # fmt: skip
    """One stuck client answering heartbeats and one not, after several of the server's pings.
    ``dropped``: how many clients the server dropped for not answering (given the silent one)."""
    answering = StuckClient("s-pong", "stuck", "127.0.0.1", port, path, history, answer_heartbeats=True,
                            pong_interval=0.2, dialect=dialect)  # fmt: skip
    silent = StuckClient("s-mute", "stuck", "127.0.0.1", port, path, history, answer_heartbeats=False,
                         pong_interval=0.2, dialect=dialect)  # fmt: skip
    await answering.start()
    await silent.start()
    try:
        assert answering.connected and silent.connected, list(history.of("connect_error"))
        await until(lambda: dropped(silent) == 1, "the server to drop the client that never answers", 20.0)
        await asyncio.sleep(PING_S * 6)
        assert answering.connected and answering.pongs_sent >= 2, closes(history, "s-pong")
        assert dropped(silent) == 1, "the client answering heartbeats was dropped too"
    finally:
        await answering.stop()
        await silent.stop()
    return answering, silent


@needs_centrifugo
async def test_centrifugo_probe_client_gets_offsets_and_ids(centrifugo: ServerProcess, tmp_path: Path) -> None:
    history = History(tmp_path / "history.jsonl")
    dialect = make_dialect({"name": "centrifugo", "channel": CHANNEL})

    def publish() -> None:
        for event in EVENTS:
            centrifugo.post_json("/api/publish", {"channel": CHANNEL, "data": event}, {"X-API-Key": API_KEY})

    url = f"ws://127.0.0.1:{centrifugo.port}/connection/websocket"
    client = await probe_receives(history, url, dialect, publish)
    assert batches(history, "p1") == [(1, ["e1"]), (2, ["e2"]), (3, ["e3"])]
    (init,) = history.of("init")
    assert init["seq"] == 0 and isinstance(init["epoch"], str) and client.last_seq == 3
    history.close()


@needs_centrifugo
async def test_centrifugo_probe_client_resumes_with_recover(centrifugo: ServerProcess, tmp_path: Path) -> None:
    history = History(tmp_path / "history.jsonl")
    dialect = make_dialect({"name": "centrifugo", "channel": CHANNEL})
    url = f"ws://127.0.0.1:{centrifugo.port}/connection/websocket"

    def publish(event: dict[str, Any]) -> None:
        centrifugo.post_json("/api/publish", {"channel": CHANNEL, "data": event}, {"X-API-Key": API_KEY})

    client = ProbeClient("p1", "probe", url, history, dialect, backoff=(0.5, 0.5))
    await client.start()
    try:
        assert await client.wait_init(10)
        await asyncio.to_thread(publish, EVENTS[0])
        await until(lambda: client.events == 1, "the first event")
        await client.abort(resume_after=True)  # gone with an RST; reconnects after the backoff
        await asyncio.to_thread(publish, EVENTS[1])
        await until(lambda: client.events == 2, "the event missed while away, recovered")
    finally:
        await client.stop()
    assert [r["type"] for r in history.of("notice")] == ["resumed"]
    assert batches(history, "p1") == [(1, ["e1"]), (2, ["e2"])]
    assert [r["since"] for r in history.of("connect")] == [None, 1]
    history.close()


@needs_centrifugo
async def test_centrifugo_stuck_client_answering_pings_stays(centrifugo: ServerProcess, tmp_path: Path) -> None:
    history = History(tmp_path / "history.jsonl")
    dialect = make_dialect({"name": "centrifugo", "channel": CHANNEL, "ping_interval": 2, "pong_delay": 0.5})
    await stuck_pair(history, centrifugo.port, "/connection/websocket", dialect, lambda c: int(not c.connected))
    assert "bad request" not in centrifugo.log_text()  # no heartbeat the server did not ask for
    history.close()


@needs_socketio
async def test_socketio_probe_client_gets_event_ids(socketio: ServerProcess, tmp_path: Path) -> None:
    history = History(tmp_path / "history.jsonl")

    def publish() -> None:
        socketio.post_json("/publish", EVENTS[0])
        socketio.post_json("/publish", EVENTS[1:])

    await probe_receives(history, f"ws://127.0.0.1:{socketio.port}/socket.io/", make_dialect("socketio"), publish)
    assert batches(history, "p1") == [(None, ["e1"]), (None, ["e2"]), (None, ["e3"])]
    history.close()


@needs_socketio
async def test_socketio_stuck_client_answering_pings_stays(socketio: ServerProcess, tmp_path: Path) -> None:
    history = History(tmp_path / "history.jsonl")
    # The server closes a connection that missed its ping gracefully and waits long for the close
    # frame the stuck client never reads: its log says who it dropped.
    await stuck_pair(history, socketio.port, "/socket.io/", make_dialect("socketio"),
                     lambda _: socketio.log_text().count('"reason":"ping timeout"'))
    history.close()
