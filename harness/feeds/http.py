"""The ``http`` feed: each event (or each ``batch`` of events, as a JSON list, or inside ``batch_body``
where its string ``"{events}"`` stands) is a request to a path on the target or to a loopback URL,
with a JSON body rendered from a template. Each request uses a connection of its own, so that
counting the target's sockets never counts the feed."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import aiohttp

from harness.feeds.base import Event, FeedError, FeedRejected, Sink, render_json
from harness.targetspec import FeedSpec, expand

DEFAULT_BODY = {"id": "{id}", "n": "{n}", "t": "{t}", "node": "{node}"}
EVENTS = "{events}"
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def env_headers(headers: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Header values with ``${NAME}`` replaced by the environment variable; a missing one is a FeedError."""
    environ = os.environ if environ is None else environ
    out = {}
    for name, value in headers.items():
        missing = [var for var in _ENV_RE.findall(value) if var not in environ]
        if missing:
            raise FeedError(f"feed.headers.{name}: environment variable {missing[0]} is not set")
        out[name] = _ENV_RE.sub(lambda m: environ[m[1]], value)
    return out


class HttpSink(Sink):
    kind = "http"

    def __init__(self, spec: FeedSpec, placeholders: Mapping[str, Any]) -> None:
        if spec.url is not None:
            self.url = spec.url
        else:
            path = spec.path or "/"
            self.url = expand("http://{host}:{port}", placeholders) + path
        self.method = spec.method
        self.headers = env_headers(spec.headers)
        self.body = DEFAULT_BODY if spec.body is None else spec.body
        self.status = {spec.status} if isinstance(spec.status, int) else set(spec.status)
        self.batched = spec.batch is not None
        self.batch = spec.batch or 1  # without batch: one event, as an object, a request
        self.batch_body = spec.batch_body
        self.nodes = list(spec.nodes)
        self.timeout = aiohttp.ClientTimeout(total=spec.timeout)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, node: str, events: list[Event]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        bodies = [render_json(self.body, event) for event in events]
        payload: Any = bodies if self.batched else bodies[0]
        if self.batched and self.batch_body is not None:
            payload = wrap(self.batch_body, bodies)
        what = f"{self.method} {self.url}"
        try:
            async with self._session.request(
                self.method, self.url, json=payload, headers=self.headers, timeout=self.timeout
            ) as response:
                text = await response.text(errors="replace")
                status = response.status
        except TimeoutError:
            raise FeedRejected(f"{what}: no answer within {self.timeout.total:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise FeedRejected(f"{what}: {_reason(exc)}") from None
        if status not in self.status:
            expected = " or ".join(str(s) for s in sorted(self.status))
            raise FeedRejected(f"{what}: status {status}, expected {expected}: {text.strip()[:200]}")

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def wrap(template: Any, bodies: list[Any]) -> Any:
    """``template`` with the string ``"{events}"`` replaced by the list of bodies."""
    if template == EVENTS:
        return bodies
    if isinstance(template, dict):
        return {key: wrap(value, bodies) for key, value in template.items()}
    if isinstance(template, list):
        return [wrap(item, bodies) for item in template]
    return template


def _reason(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        refused = isinstance(exc.os_error, ConnectionRefusedError)
        return f"cannot connect: {'connection refused' if refused else exc.os_error.strerror or exc.os_error}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
