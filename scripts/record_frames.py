"""Record real WebSocket frames from Centrifugo and Socket.IO into tests/data/frames/, as test fixtures.

    PYTHONPATH=$PWD .venv/bin/python scripts/record_frames.py [centrifugo] [socketio]

Needs what scripts/bootstrap installs: .tools/bin/centrifugo, and node with .tools/socketio/node_modules.
Each server runs on a free loopback port (Centrifugo with a config from harness.targets.centrifugo_config,
the Socket.IO app from harness/targets/socketio/server.js) and is stopped by pid at the end. An aiohttp
WebSocket client plays one exchange per file: tests/data/frames/<server>/<exchange>.json holds

    {"server": ..., "exchange": ..., "description": ..., "http": [...], "frames": [...]}

Each frame is {"dir": "out", "text": ...} (client to server), {"dir": "in", "text": ...} (server to
client), {"dir": "in", "close": code, "reason": ...} (a close frame; 1005 when it carried no code, 1006
when the TCP connection ended without one), {"dir": "in", "skipped": n} (n text frames left out of a
long run), or the client's own {"dir": "out", "open": path} (a new WebSocket connection) and
{"dir": "out", "close": 1000}. "http" lists the publish calls made during the exchange: {"method",
"path", "body", "status", "response"}. Client ids, epochs and sids differ on every run; they are kept
as they came.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.thirdparty_proc import (  # noqa: E402
    API_KEY,
    ServerProcess,
    centrifugo_process,
    missing_centrifugo,
    missing_socketio,
    socketio_process,
)

OUT = ROOT / "tests" / "data" / "frames"
RECV_TIMEOUT = 10.0


@dataclass
class Exchange:
    """One client's frames in both directions, plus the HTTP publish calls made meanwhile."""

    server: ServerProcess
    session: aiohttp.ClientSession
    frames: list[dict[str, Any]] = field(default_factory=list)
    http: list[dict[str, Any]] = field(default_factory=list)
    ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self, path: str) -> None:
        self.ws = await self.session.ws_connect(f"ws://127.0.0.1:{self.server.port}{path}", autoping=True)
        self.frames.append({"dir": "out", "open": path})

    async def send(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send_str(text)
        self.frames.append({"dir": "out", "text": text})

    async def recv(self, timeout: float = RECV_TIMEOUT, keep: bool = True) -> str | None:
        """The next text frame, or None when the connection closed (the close is recorded)."""
        assert self.ws is not None
        msg = await self.ws.receive(timeout=timeout)
        if msg.type == aiohttp.WSMsgType.TEXT:
            if keep:
                self.frames.append({"dir": "in", "text": msg.data})
            return msg.data
        if msg.type == aiohttp.WSMsgType.CLOSE:
            # aiohttp reports a close frame without a status code as 0; RFC 6455 names that 1005.
            self.frames.append({"dir": "in", "close": msg.data or 1005, "reason": msg.extra or ""})
        else:
            self.frames.append({"dir": "in", "close": self.ws.close_code or 1006, "reason": ""})
        return None

    async def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        async with self.session.post(self.server.base + path, json=body, headers=headers or {}) as resp:
            answer = await resp.json(content_type=None)
            self.http.append({"method": "POST", "path": path, "body": body, "status": resp.status,
                              "response": answer})
            return answer

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
            self.frames.append({"dir": "out", "close": 1000})


Play = Callable[[Exchange], Awaitable[None]]


def save(server_name: str, name: str, description: str, ex: Exchange) -> None:
    folder = OUT / server_name
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"server": server_name, "exchange": name, "description": description, "http": ex.http,
           "frames": ex.frames}
    (folder / f"{name}.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {folder.relative_to(ROOT)}/{name}.json ({len(ex.frames)} frames)")


async def play(server: ServerProcess, server_name: str, name: str, description: str, body: Play) -> None:
    async with aiohttp.ClientSession() as session:
        ex = Exchange(server, session)
        try:
            await body(ex)
        finally:
            await ex.close()
    save(server_name, name, description, ex)


# Centrifugo: JSON client protocol v2 on /connection/websocket; commands carry an id, replies echo it.

CENT_WS = "/connection/websocket"
CENT_HEADERS = {"X-API-Key": API_KEY}


async def cent_subscribe(ex: Exchange, channel: str, **recovery: Any) -> dict[str, Any]:
    await ex.connect(CENT_WS)
    await ex.send(json.dumps({"id": 1, "connect": {"name": "wschaos"}}))
    await ex.recv()
    await ex.send(json.dumps({"id": 2, "subscribe": {"channel": channel, **recovery}}))
    return json.loads(await ex.recv() or "null")


async def cent_publish(ex: Exchange, channel: str, *events: dict[str, Any]) -> None:
    if len(events) == 1:
        await ex.post("/api/publish", {"channel": channel, "data": events[0]}, CENT_HEADERS)
    else:
        commands = [{"publish": {"channel": channel, "data": ev}} for ev in events]
        await ex.post("/api/batch", {"commands": commands}, CENT_HEADERS)


async def cent_read_pubs(ex: Exchange, count: int) -> list[dict[str, Any]]:
    """Reads until ``count`` publications came; one frame may carry several, one JSON per line."""
    pubs: list[dict[str, Any]] = []
    while len(pubs) < count:
        text = await ex.recv()
        if text is None:
            break
        pubs += [json.loads(line)["push"]["pub"] for line in text.splitlines() if '"push"' in line]
    return pubs


async def cent_connect_subscribe(ex: Exchange) -> None:
    await cent_subscribe(ex, "feed:connect")


async def cent_publications(ex: Exchange) -> None:
    await cent_subscribe(ex, "feed:pubs")
    await cent_publish(ex, "feed:pubs", {"id": "e1", "n": 1})
    await cent_publish(ex, "feed:pubs", {"id": "e2", "n": 2}, {"id": "e3", "n": 3})
    await cent_read_pubs(ex, 3)


async def cent_recover(ex: Exchange) -> None:
    """Subscribe, read two, leave; two more are published; come back with recover: all or nothing."""
    reply = await cent_subscribe(ex, "feed:recover")
    epoch = reply["subscribe"]["epoch"]
    await cent_publish(ex, "feed:recover", {"id": "r1"}, {"id": "r2"})
    last = (await cent_read_pubs(ex, 2))[-1]["offset"]
    await ex.close()
    await cent_publish(ex, "feed:recover", {"id": "r3"}, {"id": "r4"})
    await cent_subscribe(ex, "feed:recover", recover=True, offset=last, epoch=epoch)
    await ex.close()
    await cent_subscribe(ex, "feed:recover", recover=True, offset=last, epoch="not-the-epoch")


async def cent_ping_pong(ex: Exchange) -> None:
    await cent_subscribe(ex, "feed:ping")
    for _ in range(2):
        assert await ex.recv() == "{}"
        await ex.send("{}")


async def cent_no_pong(ex: Exchange) -> None:
    await cent_subscribe(ex, "feed:nopong")
    while await ex.recv() is not None:
        pass


async def cent_slow_consumer(ex: Exchange) -> None:
    """Stops reading while 8 MB are published: the server's queue for it passes queue_max_size."""
    await cent_subscribe(ex, "feed:slow")
    blob = "x" * 32768
    for start in range(0, 256, 16):
        await cent_publish(ex, "feed:slow", *({"id": f"s{i}", "pad": blob} for i in range(start, start + 16)))
    first = ex.http[0]
    first["body"]["commands"] = first["body"]["commands"][:1]
    first["body"]["commands"][0]["publish"]["data"]["pad"] = "x... (32768 x)"
    first["response"]["replies"] = first["response"]["replies"][:1]
    first["note"] = "16 calls like this one, 16 publishes each; shortened here"
    ex.http[:] = [first]
    skipped = 0
    while await ex.recv(keep=False) is not None:
        skipped += 1
    ex.frames.insert(-1, {"dir": "in", "skipped": skipped})


async def cent_shutdown(ex: Exchange) -> None:
    await cent_subscribe(ex, "feed:shutdown")
    ex.server.proc.terminate()
    while await ex.recv() is not None:
        pass


async def record_centrifugo(workdir: Path) -> None:
    name = "centrifugo"
    with centrifugo_process(workdir, history_size=100, history_ttl="60s", queue_max_size=65536) as server:
        await play(server, name, "connect_subscribe", "connect, then subscribe to a recoverable channel",
                   cent_connect_subscribe)
        await play(server, name, "publications",
                   "three publications: one by /api/publish, two by /api/batch (they share a frame)",
                   cent_publications)
        await play(server, name, "recover",
                   "resubscribe with recover after missing two: recovered true with the missed ones, then"
                   " recover with a wrong epoch: recovered false", cent_recover)
        await play(server, name, "slow_consumer",
                   "a client that stops reading while 8 MB are published (client.queue_max_size 65536)",
                   cent_slow_consumer)
        await play(server, name, "shutdown", "the server gets SIGTERM while a client is subscribed",
                   cent_shutdown)
    with centrifugo_process(workdir, ping_interval="1s", pong_timeout="500ms") as server:
        await play(server, name, "ping_pong", "server pings {} every second (client.ping_interval 1s); the"
                   " client answers {}", cent_ping_pong)
        await play(server, name, "no_pong", "the client never answers the ping (client.pong_timeout 500ms)",
                   cent_no_pong)


# Socket.IO 4: Engine.IO v4 packets over a plain WebSocket (no polling first), namespace "/".

SIO_WS = "/socket.io/?EIO=4&transport=websocket"


async def sio_open_connect(ex: Exchange) -> None:
    await ex.connect(SIO_WS)
    await ex.recv()
    await ex.send("40")
    await ex.recv()


async def sio_events(ex: Exchange) -> None:
    await sio_open_connect(ex)
    await ex.post("/publish", {"id": "e1", "n": 1})
    await ex.post("/publish", [{"id": "e2", "n": 2}, {"id": "e3", "n": 3}])
    for _ in range(3):
        await ex.recv()


async def sio_ping_pong(ex: Exchange) -> None:
    await sio_open_connect(ex)
    for _ in range(2):
        assert await ex.recv() == "2"
        await ex.send("3")


async def sio_no_pong(ex: Exchange) -> None:
    await sio_open_connect(ex)
    while await ex.recv() is not None:
        pass


async def sio_shutdown(ex: Exchange) -> None:
    await sio_open_connect(ex)
    ex.server.proc.terminate()
    while await ex.recv() is not None:
        pass


async def record_socketio(workdir: Path) -> None:
    name = "socketio"
    with socketio_process(workdir, ping_interval_ms=1000, ping_timeout_ms=500) as server:
        await play(server, name, "open_connect", "Engine.IO open, then connect to the main namespace",
                   sio_open_connect)
        await play(server, name, "events", "three events: one POST /publish with one event, one with a list",
                   sio_events)
        await play(server, name, "ping_pong", "server pings every second (pingInterval 1000); the client pongs",
                   sio_ping_pong)
        await play(server, name, "no_pong", "the client never pongs (pingTimeout 500)", sio_no_pong)
        await play(server, name, "shutdown", "the server gets SIGTERM while a client is connected",
                   sio_shutdown)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    recorders = {"centrifugo": (missing_centrifugo, record_centrifugo),
                 "socketio": (missing_socketio, record_socketio)}
    parser.add_argument("servers", nargs="*", help="centrifugo, socketio (default: both)")
    chosen = parser.parse_args(argv).servers or list(recorders)
    if unknown := set(chosen) - set(recorders):
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="record-frames-") as tmp:
        for name in chosen:
            missing, record = recorders[name]
            if reason := missing():
                print(f"skipping {name}: {reason}", file=sys.stderr)
                continue
            await record(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
