"""Socket.IO 4 over a plain WebSocket (Engine.IO 4, ``/socket.io/?EIO=4&transport=websocket``).

Engine.IO packets are one digit and a payload: the server opens with ``0{"sid":...,"pingInterval":...}``,
pings with ``2`` and wants the pong ``3`` back. Socket.IO packets ride in Engine.IO messages (``4``):
the client connects to a namespace with ``40`` (``40{auth}``; ``40/ns,`` for another namespace), the
server answers ``40{"sid":...}`` (the stream is ready) or ``44{...}`` (refused), and emits events as
``42["event", {...}]``. An event's argument may be one event or a list of them. Socket.IO has no
resume here: a reconnected client starts afresh.
"""

from __future__ import annotations

import json
from typing import Any

from harness.dialects.base import (
    ERROR,
    UNPARSABLE,
    Batch,
    Dialect,
    Info,
    Notice,
    Position,
    Ready,
    Record,
    Reply,
    add_query,
    check_options,
    integer,
    loads,
    number,
    register,
)
from harness.dialects.paths import get_path

ENGINE_QUERY = {"EIO": "4", "transport": "websocket"}
OPEN, CLOSE, PING, PONG, MESSAGE = "0", "1", "2", "3", "4"
CONNECT, DISCONNECT, EVENT, CONNECT_ERROR = "0", "1", "2", "4"


@register
class SocketIODialect(Dialect):
    name = "socketio"
    options = frozenset({"event", "namespace", "auth", "event_id", "seq", "sent_at"})
    heartbeat_text = PONG
    resumes = False

    def __init__(self, **options: Any) -> None:
        check_options(self.name, options, self.options)
        self.event: str = options.get("event", "event")
        self.namespace: str = options.get("namespace", "/")
        self.auth: Any = options.get("auth")
        self.event_id: str = options.get("event_id", "id")
        self.seq: str | None = options.get("seq")
        self.sent_at: str | None = options.get("sent_at", "sent_at")

    def connect_url(self, url: str, resume: Position | None) -> str:
        return add_query(url, ENGINE_QUERY)

    def opening(self, resume: Position | None) -> list[str]:
        prefix = "" if self.namespace == "/" else f"{self.namespace},"
        auth = "" if self.auth is None else json.dumps(self.auth)
        return [f"{MESSAGE}{CONNECT}{prefix}{auth}"]

    def parse(self, text: str) -> list[Record]:
        kind, payload = text[:1], text[1:]
        if kind == PING:
            return [Reply(PONG + payload)]
        if kind == MESSAGE:
            return self._packet(payload)
        if kind == OPEN:
            return [Info("open")]
        if kind == CLOSE:
            return [Notice("close", text)]
        return [Info("pong")] if kind == PONG else [Notice(UNPARSABLE, text[:200])]

    def _packet(self, packet: str) -> list[Record]:
        kind, rest = packet[:1], packet[1:]
        namespace = "/"
        if rest.startswith("/"):
            namespace, _, rest = rest.partition(",")
        if namespace != self.namespace:
            return [Info("other namespace")]
        if kind == CONNECT:
            return [Ready()]
        if kind == CONNECT_ERROR:
            return [Notice(ERROR, loads(rest))]
        if kind == DISCONNECT:
            return [Notice("disconnect", packet)]
        if kind == EVENT:
            return self._event(rest.lstrip("0123456789"))  # an ack id may sit before the array
        return [Info("packet")]

    def _event(self, body: str) -> list[Record]:
        args = loads(body)
        if not isinstance(args, list) or not args:
            return [Notice(UNPARSABLE, body[:200])]
        if args[0] != self.event:
            return [Info("event")]
        events = [e for arg in args[1:] for e in (arg if isinstance(arg, list) else [arg])]
        if self.seq is not None:
            return [self._batch([e], integer(get_path(e, self.seq))) for e in events]
        return [self._batch(events, None)]

    def _batch(self, events: list[Any], seq: int | None) -> Batch:
        ids = [get_path(e, self.event_id) for e in events]
        sent_at = number(get_path(events[0], self.sent_at)) if events and self.sent_at else None
        return Batch(seq, ids, sent_at)
