"""The server's own count of the events it took in, read over the WebSocket once the feed has stopped.

A target file's ``stats`` section names the message that carries the counts; this module opens one
connection, sends the ``request`` if there is one, and reads until that message comes. The counts
go into the History as one ``server_stats`` record (``total``, ``nodes``, or ``error``; or
``declared: false`` when the target file names no such message), which the ``stats`` checker judges.
It reads again, a bounded number of times, while the total is below what was fed: a server may still
be storing the last events when the clients have them.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from harness.history import History
from harness.targetspec import StatsSpec

READ_TIMEOUT = 3.0  # for one reading: connect, ask, get the message
ATTEMPTS = 5
PAUSE = 0.3  # between readings while the total is below what was fed


def fed_counts(history: History) -> tuple[int, dict[str, int]]:
    """How many events the feed delivered, in all and per node."""
    nodes: dict[str, int] = {}
    for record in history.of("feed"):
        node = str(record.get("node"))
        nodes[node] = nodes.get(node, 0) + len(record.get("ids") or [])
    return sum(nodes.values()), nodes


async def record_server_stats(spec: StatsSpec | None, session: aiohttp.ClientSession, url: str,
                              history: History) -> None:  # fmt: skip
    """Read the server's counts (see the module) and record them."""
    if spec is None:
        history.record("server_stats", declared=False)
        return
    fed, _ = fed_counts(history)
    reading: dict[str, Any] = {}
    started = time.monotonic()
    attempt = 0
    while attempt < ATTEMPTS:
        attempt += 1
        reading = await read_once(spec, session, url)
        if "error" in reading or not isinstance(reading.get("total"), int) or reading["total"] >= fed:
            break
        await asyncio.sleep(PAUSE)
    history.record("server_stats", declared=True, attempts=attempt, took_s=round(time.monotonic() - started, 3),
                   **reading)  # fmt: skip


async def read_once(spec: StatsSpec, session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """One reading: ``total`` and ``nodes`` (node: count) as the message gives them, or ``error``."""
    try:
        async with asyncio.timeout(READ_TIMEOUT):
            async with session.ws_connect(url, autoping=True) as ws:
                if spec.request is not None:
                    await ws.send_str(spec.request)
                async for msg in ws:
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        continue
                    message = _json(msg.data)
                    if isinstance(message, dict) and message.get(spec.type_key) == spec.message:
                        return parse_counts(spec, message)
        return {"error": f"the connection closed before a {spec.message} message came"}
    except TimeoutError:
        return {"error": f"no {spec.message} message within {READ_TIMEOUT:g}s"}
    except (aiohttp.ClientError, OSError) as exc:
        return {"error": f"could not connect to read {spec.message}: {exc!r}"}


def parse_counts(spec: StatsSpec, message: dict[str, Any]) -> dict[str, Any]:
    """The total and per-node counts at the spec's paths (None where the message has none)."""
    out: dict[str, Any] = {"total": count_at(message, spec.total)}
    if spec.nodes is not None and spec.node_count is not None:
        nodes = value_at(message, spec.nodes)
        if isinstance(nodes, dict):
            out["nodes"] = {str(name): count_at(counters, spec.node_count) for name, counters in nodes.items()}
    return out


def value_at(value: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def count_at(value: Any, path: str) -> int | None:
    found = value_at(value, path)
    return found if isinstance(found, int) and not isinstance(found, bool) else None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
