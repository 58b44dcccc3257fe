"""Centrifugo v6's JSON protocol over WebSocket (``/connection/websocket``).

A client sends ``{"id":1,"connect":{...}}`` (with a token, or none for anonymous access) and
``{"id":2,"subscribe":{"channel":...}}``; to resume it subscribes with ``recover``, ``epoch`` and
``offset``. The server answers the subscribe with the channel's epoch and offset (the ``Ready``), and
on a resume with ``recovered: true`` and the missed publications, or without it: the client must
resync. Publications come as ``{"push":{"channel":...,"pub":{"data":...,"offset":N}}}``; one frame may
hold several messages, one JSON per line. The server pings with ``{}`` and wants ``{}`` back, once per
ping: an unasked ``{}`` is a bad request (3501). The first ping comes at a random moment, then one
every ``client.ping_interval``: a client that stops reading (a stuck client) reads up to the first
ping, then answers blind every ``ping_interval`` seconds (option, default 25) ``pong_delay`` after.
It closes with its own codes and a short reason: 3001 shutdown, 3008 slow, 3012 no pong, 3501 bad
request (the history's ``close`` records keep both).
"""

from __future__ import annotations

import json
from typing import Any

from harness.dialects.base import (
    ERROR,
    RESUMED,
    RESYNC,
    UNPARSABLE,
    Batch,
    Dialect,
    Info,
    Notice,
    Position,
    Ready,
    Record,
    Reply,
    check_options,
    integer,
    loads,
    number,
    register,
)
from harness.dialects.paths import get_path

PING = "{}"


@register
class CentrifugoDialect(Dialect):
    name = "centrifugo"
    options = frozenset({"channel", "token", "client_name", "event_id", "sent_at", "ping_interval", "pong_delay"})
    heartbeat_text = PING
    shutdown_code = 3001  # Centrifugo's own "shutdown", not 1001

    def __init__(self, **options: Any) -> None:
        check_options(self.name, options, self.options)
        self.channel: str = options.get("channel", "feed:events")
        self.token: str | None = options.get("token")
        self.client_name: str = options.get("client_name", "wschaos")
        self.event_id: str = options.get("event_id", "id")
        self.sent_at: str | None = options.get("sent_at", "sent_at")
        self.heartbeat_period = float(options.get("ping_interval", 25.0))
        self.heartbeat_delay = float(options.get("pong_delay", 0.25))

    def opening(self, resume: Position | None) -> list[str]:
        connect: dict[str, Any] = {"name": self.client_name}
        if self.token:
            connect["token"] = self.token
        subscribe: dict[str, Any] = {"channel": self.channel}
        if resume is not None:
            subscribe.update(recover=True, epoch=str(resume.epoch), offset=resume.seq)
        return [json.dumps({"id": 1, "connect": connect}), json.dumps({"id": 2, "subscribe": subscribe})]

    def parse(self, text: str) -> list[Record]:
        records: list[Record] = []
        for line in text.split("\n"):
            if line:
                records += self._message(line)
        return records

    def _message(self, line: str) -> list[Record]:
        msg = loads(line)
        if not isinstance(msg, dict):
            return [Notice(UNPARSABLE, line[:200])]
        if not msg:
            return [Reply(PING)]
        if "push" in msg:
            return self._push(msg["push"])
        if "error" in msg:
            return [Notice(ERROR, msg)]
        if "subscribe" in msg and isinstance(msg["subscribe"], dict):
            return self._subscribed(msg["subscribe"])
        return [Info(next((k for k in msg if k != "id"), "reply"))]  # the connect reply, mostly

    def _push(self, push: Any) -> list[Record]:
        if not isinstance(push, dict):
            return []
        if "pub" in push:
            return [self._publication(push["pub"], push.get("channel"))]
        if "disconnect" in push:
            return [Notice("disconnect", push)]
        return [Info("push")]

    def _publication(self, pub: Any, channel: Any = None) -> Batch:
        pub = pub if isinstance(pub, dict) else {}
        data = pub.get("data")
        event_id = get_path(data, self.event_id)
        sent_at = number(get_path(data, self.sent_at)) if self.sent_at else None
        return Batch(integer(pub.get("offset")), [event_id] if event_id is not None else [], sent_at)

    def _subscribed(self, sub: dict[str, Any]) -> list[Record]:
        # Centrifugo leaves zero values out: no offset on a positioned channel means offset 0.
        offset = integer(sub.get("offset", 0 if sub.get("positioned") or sub.get("recoverable") else None))
        records: list[Record] = [Ready(sub.get("epoch"), offset)]
        if sub.get("was_recovering"):
            body = {k: v for k, v in sub.items() if k != "publications"}
            records.append(Notice(RESUMED if sub.get("recovered") else RESYNC, body))
        publications = sub.get("publications")
        if isinstance(publications, list):
            records += [self._publication(p) for p in publications]
        return records
