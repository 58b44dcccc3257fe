"""A WebSocket broadcaster fed over HTTP, unlike the monitor in every way the harness must cope with.

Events come in by ``POST /publish`` (a JSON object, or a list of them) and go out to every WebSocket
client on ``/ws`` as ``{"kind": "event", "data": EVENT}``: no seq, no batches, no init (a client gets
``{"kind": "hello"}`` on connect), no metrics endpoint. Every second it sends ``{"kind": "ping"}``
and drops a client that has not answered ``{"kind": "pong"}`` within ``--pong-timeout`` seconds.
Each client has a bounded queue and a writer with a send timeout: a client that stops reading is
evicted when its queue is full or a send takes too long. Binds 127.0.0.1 only.

    python -m tests.targets.http_fed_server --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

log = logging.getLogger("http_fed")


@dataclass(eq=False)  # hashed by identity, kept in a set
class Client:
    ws: web.WebSocketResponse
    request: web.Request
    queue: asyncio.Queue[str]
    last_pong: float = field(default_factory=time.monotonic)
    writer: asyncio.Task[None] | None = None


class Broadcaster:
    def __init__(self, queue_size: int, send_timeout: float, pong_timeout: float) -> None:
        self.queue_size = queue_size
        self.send_timeout = send_timeout
        self.pong_timeout = pong_timeout
        self.clients: set[Client] = set()

    def publish(self, events: list[object]) -> None:
        for event in events:
            text = json.dumps({"kind": "event", "data": event})
            for client in list(self.clients):
                try:
                    client.queue.put_nowait(text)
                except asyncio.QueueFull:
                    self.evict(client, "queue full")

    def evict(self, client: Client, why: str) -> None:
        if client in self.clients:
            self.clients.discard(client)
            log.info("evicted a client: %s", why)
            if client.request.transport is not None:
                client.request.transport.abort()

    async def write(self, client: Client) -> None:
        while True:
            text = await client.queue.get()
            try:
                await asyncio.wait_for(client.ws.send_str(text), self.send_timeout)
            except TimeoutError:
                self.evict(client, "send timeout")
                return
            except (ConnectionError, RuntimeError):
                self.evict(client, "gone")
                return

    async def pinger(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for client in list(self.clients):
                if now - client.last_pong > self.pong_timeout:
                    self.evict(client, "no pong")
                else:
                    with contextlib.suppress(asyncio.QueueFull):
                        client.queue.put_nowait('{"kind": "ping"}')


BROADCASTER = web.AppKey("broadcaster", Broadcaster)


async def publish(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "not JSON"}, status=400)
    events = body if isinstance(body, list) else [body]
    request.app[BROADCASTER].publish(events)
    return web.json_response({"published": len(events)})


async def websocket(request: web.Request) -> web.WebSocketResponse:
    hub = request.app[BROADCASTER]
    ws = web.WebSocketResponse(autoping=True)
    await ws.prepare(request)
    client = Client(ws, request, asyncio.Queue(hub.queue_size))
    client.queue.put_nowait('{"kind": "hello"}')
    hub.clients.add(client)
    client.writer = asyncio.create_task(hub.write(client))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and _is_pong(msg.data):
                client.last_pong = time.monotonic()
    finally:
        hub.clients.discard(client)
        client.writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await client.writer
    return ws


def _is_pong(data: str) -> bool:
    try:
        message = json.loads(data)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("kind") == "pong"


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "clients": len(request.app[BROADCASTER].clients)})


def make_app(hub: Broadcaster) -> web.Application:
    app = web.Application()
    app[BROADCASTER] = hub
    app.add_routes([web.post("/publish", publish), web.get("/ws", websocket), web.get("/healthz", healthz)])

    async def run_pinger(app: web.Application) -> object:
        task = asyncio.create_task(hub.pinger())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(run_pinger)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--queue-size", type=int, default=64)
    parser.add_argument("--send-timeout", type=float, default=1.0)
    parser.add_argument("--pong-timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    hub = Broadcaster(args.queue_size, args.send_timeout, args.pong_timeout)
    web.run_app(make_app(hub), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
