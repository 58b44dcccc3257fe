"""Malformed input: short-lived clients of the fault's own send the target what no well-behaved
client sends (text that is not JSON, unknown message types, fields of the wrong type, a binary frame,
a frame over any sane size limit). A server should answer or ignore each, or close that one
connection, and never crash its handler nor log an error: ``no_error_logs`` judges that, and the
healthy cohorts' ``delivery`` that nobody else noticed.

Each client records a ``bad_input`` record (``fault``, ``client``, ``sent``, ``replies``: text frames
the target answered with, ``close``: the close code if the target closed first, ``error``). The bite: at
least one client connected and sent its frames.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

import aiohttp

from harness.faultbase import Fault, FaultContext, FaultSpec

CONNECT_TIMEOUT = 3.0
NOT_JSON = ["{not json", '{"type": "ping"', "[1, 2", "", "nul", '{"type": "ping"}}', "\u0000\u0001", "'single'"]
UNKNOWN_TYPES = [{"type": "no_such_request"}, {"type": ""}, {"type": "__proto__"}, {"type": "x" * 500},
                 {"type": "PING"}, {"kind": "ping"}]  # fmt: skip
WRONG_TYPES = [
    {"type": 5}, {"type": None}, {"type": ["ping"]}, {"type": {"ping": 1}}, ["type", "ping"], 42, "ping", None,
    {"type": "ping", "t": {"nested": [1, 2]}}, {"type": "set_view", "view": 12345},
    {"type": "set_view", "view": [1, 2]}, {"type": "set_view", "view": []}, {"type": "set_view", "view": {"a": 1}},
    {"type": "resume", "epoch": [], "since": "x"}, {"type": "resume", "epoch": None, "since": -1},
    {"type": "resume", "since": 1e300}, {"type": "get_stats", "view": False},
]  # fmt: skip


def frames(big_bytes: int, nesting: int = 0) -> list[str | bytes]:
    """Every malformed frame a client sends, in order (the huge one apart); with ``nesting``, also
    JSON arrays nested that deep."""
    texts: list[str | bytes] = list(NOT_JSON)
    texts += [json.dumps(m) for m in UNKNOWN_TYPES + WRONG_TYPES]
    texts += [b"\x00\xffnot text", json.dumps({"type": "ping", "t": "x" * big_bytes})]
    texts += ["[" * nesting + "]" * nesting] if nesting else []
    return texts


class MalformedInput(Fault):
    """``clients`` connections one after another, ``pause`` s apart, each sending every malformed frame
    and reading the answers for ``read_s``; the last also sends one text frame of ``huge_bytes`` (over
    the monitor's 1 MiB limit). ``big_bytes``: a frame over a request limit but under the frame limit.
    ``nesting``: also send arrays nested this deep (0: not sent; Python's json raises RecursionError at
    about 1,000, which a handler that catches only ValueError lets escape)."""

    type = "malformed_input"
    needs_cohort = False
    defaults: ClassVar[dict[str, Any]] = {"clients": 3, "pause": 0.3, "read_s": 0.5, "big_bytes": 20_000,
                                          "huge_bytes": 1_100_000, "nesting": 5000}  # fmt: skip

    def __init__(self, spec: FaultSpec) -> None:
        super().__init__(spec)
        self.sent = 0
        self.connected = 0

    async def apply(self, ctx: FaultContext) -> None:
        self.spawn(self._send_all(ctx), "send")

    async def settle(self, ctx: FaultContext) -> None:
        for task in list(self.tasks):
            await asyncio.wait([task])

    async def undo(self, ctx: FaultContext) -> None:
        for task in list(self.tasks):
            task.cancel()
            await asyncio.wait([task])

    async def _send_all(self, ctx: FaultContext) -> None:
        count = self.params["clients"]
        for i in range(count):
            texts = frames(self.params["big_bytes"], self.params["nesting"])
            texts += ["x" * self.params["huge_bytes"]] if i == count - 1 else []
            await self._one(ctx, f"{self.spec.name}-{i}", texts)
            await asyncio.sleep(self.params["pause"])

    async def _one(self, ctx: FaultContext, name: str, texts: list[str | bytes]) -> None:
        """One client: connect, send ``texts``, read what comes back, close."""
        outcome: dict[str, Any] = {"sent": 0, "replies": 0, "close": None}
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                ws = await ctx.session.ws_connect(ctx.target.ws_url, autoping=True, max_msg_size=0)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            ctx.history.record("bad_input", fault=self.spec.name, client=name, error=repr(exc), **outcome)
            return
        self.connected += 1
        try:
            for text in texts:
                if ws.closed:
                    break
                await (ws.send_bytes(text) if isinstance(text, bytes) else ws.send_str(text))
                outcome["sent"] += 1
            await self._read(ws, outcome)
        except (ConnectionError, aiohttp.ClientError) as exc:
            outcome["error"] = repr(exc)
        finally:
            await ws.close()
            self.sent += outcome["sent"]
            ctx.history.record("bad_input", fault=self.spec.name, client=name, **outcome)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, outcome: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + self.params["read_s"]
        while (left := until - loop.time()) > 0:
            try:
                msg = await ws.receive(timeout=left)
            except TimeoutError:
                return
            if msg.type is aiohttp.WSMsgType.TEXT:
                outcome["replies"] += 1
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                outcome["close"] = ws.close_code
                return
            elif msg.type is aiohttp.WSMsgType.ERROR:
                outcome["error"] = repr(ws.exception())
                return

    def record_bite(self, ctx: FaultContext) -> None:
        how = f"{self.sent} malformed frame(s) sent over {self.connected} connection(s)"
        self.subject().record(ctx.history, self.connected > 0 and self.sent > 0, how, sent=self.sent,
                              connected=self.connected)  # fmt: skip

    def hits(self, ctx: FaultContext) -> set[str]:
        return set()  # its own clients belong to no cohort
