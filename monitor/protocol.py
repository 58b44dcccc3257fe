"""Requests a dashboard client may send, and the answers. Bad input gets an ``error`` message."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from monitor.hub import Client, CloseCode, Hub
from monitor.metrics import Metrics
from monitor.replay import ReplayBudget, deliver
from monitor.stream import Stream
from monitor.views import InvalidView, View

log = logging.getLogger("monitor.protocol")

MAX_REQUEST_BYTES = 16 * 1024

StatsSource = Callable[[View], Awaitable[dict[str, Any]]]


def error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


@dataclass
class RateLimit:
    """A token bucket per client; a client that keeps flooding is disconnected."""

    rate: float = 50.0
    burst: float = 100.0
    flood_limit: int = 500
    tokens: float = 100.0
    refilled_at: float = field(default_factory=time.monotonic)
    dropped: int = 0
    last_warned: float = 0.0

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.refilled_at) * self.rate)
        self.refilled_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.dropped = 0
            return True
        self.dropped += 1
        return False

    def should_warn(self) -> bool:
        now = time.monotonic()
        if now - self.last_warned >= 1.0:
            self.last_warned = now
            return True
        return False


class Session:
    """One client's request handling."""

    def __init__(
        self,
        client: Client,
        hub: Hub,
        stream: Stream,
        nodes: list[str],
        stats: StatsSource,
        metrics: Metrics,
        limit: RateLimit | None = None,
        replay: ReplayBudget | None = None,
    ) -> None:
        self.client = client
        self.hub = hub
        self.stream = stream
        self.nodes = nodes
        self.stats = stats
        self.metrics = metrics
        self.limit = limit or RateLimit()
        self.replay = replay
        self.init_seq = stream.seq

    def reply(self, payload: dict[str, Any]) -> None:
        self.hub.send(self.client, payload)

    def reject(self, code: str, message: str) -> None:
        self.metrics.protocol_errors[code] += 1
        log.debug("client %d: %s: %s", self.client.id, code, message)
        self.reply(error(code, message))

    def on_binary(self) -> None:
        if self._admit():
            self.reject("binary_not_supported", "binary frames are not supported; send JSON text")

    async def on_text(self, text: str) -> None:
        if not self._admit():
            return
        if len(text) > MAX_REQUEST_BYTES:
            self.reject("too_large", f"requests are limited to {MAX_REQUEST_BYTES} bytes")
            return
        try:
            request = json.loads(text)
        except ValueError as exc:
            self.reject("bad_json", f"not valid JSON: {exc}")
            return
        except RecursionError:
            self.reject("too_deep", "JSON nested too deeply")
            return
        if not isinstance(request, dict) or not isinstance(request.get("type"), str):
            self.reject("bad_request", 'a request is a JSON object with a string "type"')
            return
        handler = self._handlers().get(request["type"])
        if handler is None:
            known = ", ".join(sorted(self._handlers()))
            self.reject("unknown_type", f"unknown request type {request['type'][:64]!r}; known: {known}")
            return
        self.metrics.requests[request["type"]] += 1
        await handler(request)

    def _admit(self) -> bool:
        if self.limit.allow():
            return True
        self.metrics.protocol_errors["rate_limited"] += 1
        if self.limit.dropped >= self.limit.flood_limit:
            self.hub.evict(self.client, "flooding", CloseCode.POLICY_VIOLATION)
        elif self.limit.should_warn():
            self.reply(error("rate_limited", f"too many requests; limit is {self.limit.rate:g} a second"))
        return False

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[None]]]:
        return {
            "ping": self._ping,
            "get_stats": self._get_stats,
            "set_view": self._set_view,
            "resume": self._resume,
        }

    async def _ping(self, request: dict[str, Any]) -> None:
        t = request.get("t")
        echo = t if isinstance(t, (int, float, str)) and len(str(t)) <= 64 else None
        self.reply({"type": "pong", "t": echo, "server_time": time.time()})

    async def _get_stats(self, request: dict[str, Any]) -> None:
        self.reply(await self.stats(self.client.view))

    async def _set_view(self, request: dict[str, Any]) -> None:
        try:
            view = View.parse(request.get("view"), self.nodes)
        except InvalidView as exc:
            self.reject("invalid_view", str(exc))
            return
        self.client.view = view
        self.reply({"type": "view_changed", "view": view.to_json()})
        self.reply(await self.stats(view))

    async def _resume(self, request: dict[str, Any]) -> None:
        plan = self.stream.plan_resume(request.get("epoch"), request.get("since"), self.init_seq)
        deliver(self.stream, self.hub, self.client, plan, self.replay)
