"""SQLite store for events, per-node tail offsets and per-node counters.

All database work runs on one dedicated thread, so the event loop never blocks on SQLite and the
connection is only ever used by the thread that created it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from monitor.logparse import EVENT_KEYS

T = TypeVar("T")

STAT_COUNTERS = (
    "uploads", "upload_failed", "upload_canceled", "downloads", "download_failed", "download_canceled",
    "audits", "audit_failed", "repairs", "repair_failed", "bytes_in", "bytes_out", "events",
)  # fmt: skip

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY NOT NULL,
    node TEXT NOT NULL,
    ts TEXT, level TEXT, component TEXT, message TEXT, category TEXT, status TEXT, action TEXT,
    size INTEGER, piece_id TEXT, satellite_id TEXT, remote TEXT, reason TEXT, error TEXT
);
CREATE INDEX IF NOT EXISTS events_node ON events (node);
CREATE TABLE IF NOT EXISTS offsets (
    node TEXT PRIMARY KEY NOT NULL,
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, byte_offset INTEGER NOT NULL, base INTEGER NOT NULL,
    head BLOB
);
CREATE TABLE IF NOT EXISTS node_stats (
    node TEXT PRIMARY KEY NOT NULL,
    {", ".join(f"{name} INTEGER NOT NULL DEFAULT 0" for name in STAT_COUNTERS)},
    last_event_ts TEXT
);
"""

_INSERT_EVENT = f"INSERT OR IGNORE INTO events ({', '.join(EVENT_KEYS)}) VALUES ({', '.join('?' * len(EVENT_KEYS))})"
_UPSERT_OFFSET = """
INSERT INTO offsets (node, dev, ino, byte_offset, base, head) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (node) DO UPDATE SET
    dev = excluded.dev, ino = excluded.ino, byte_offset = excluded.byte_offset, base = excluded.base,
    head = excluded.head
"""
_UPSERT_STATS = f"""
INSERT INTO node_stats (node, {", ".join(STAT_COUNTERS)}, last_event_ts)
VALUES (?, {", ".join("?" * len(STAT_COUNTERS))}, ?)
ON CONFLICT (node) DO UPDATE SET
    {", ".join(f"{n} = {n} + excluded.{n}" for n in STAT_COUNTERS)},
    last_event_ts = CASE WHEN last_event_ts IS NULL OR excluded.last_event_ts > last_event_ts
                         THEN excluded.last_event_ts ELSE last_event_ts END
"""

# Which counter a (category, status) pair adds to.
_OUTCOME_COUNTER = {
    ("upload", "success"): "uploads",
    ("upload", "failed"): "upload_failed",
    ("upload", "canceled"): "upload_canceled",
    ("download", "success"): "downloads",
    ("download", "failed"): "download_failed",
    ("download", "canceled"): "download_canceled",
    ("audit", "success"): "audits",
    ("audit", "failed"): "audit_failed",
    ("repair", "success"): "repairs",
    ("repair", "failed"): "repair_failed",
}


@dataclass(frozen=True)
class FileOffset:
    """Where a node's tail stands: file identity, byte offset after the last stored line.

    `base` is the node's log-stream position where this file starts (the bytes of earlier
    files and of truncated content), so event ids stay unique when a file is truncated or an
    inode number is reused. `head` is the file's first bytes as read (up to `ingest.HEAD_SIZE`): a file
    whose first bytes differ was truncated or replaced, whatever its size and inode.
    """

    dev: int
    ino: int
    offset: int
    base: int = 0
    head: bytes = b""


class Store:
    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self._conn = conn
        self._executor = executor
        self._closed = False

    @classmethod
    async def open(cls, path: str | Path) -> Store:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, _connect, str(path))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(conn, executor)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._run(self._conn.close)
        self._executor.shutdown(wait=False)  # its only job has finished: this does not wait

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def load_offsets(self) -> dict[str, FileOffset]:
        return await self._run(self._load_offsets)

    async def write_batch(self, events: list[dict[str, Any]], offsets: dict[str, FileOffset]) -> int:
        """Store events (ignoring known ids), offsets and counters in one transaction.

        Returns how many events were new.
        """
        return len(await self.write_batch_new(events, offsets))

    async def write_batch_new(
        self, events: list[dict[str, Any]], offsets: dict[str, FileOffset]
    ) -> list[dict[str, Any]]:
        """As `write_batch`, returning the events that were new, in order."""
        return await self._run(self._write_batch, list(events), dict(offsets))

    async def node_stats(self, nodes: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Counters per node; a node asked for that has no events yet gets zeros."""
        return await self._run(self._node_stats, nodes)

    async def count_events(self, node: str | None = None) -> int:
        return await self._run(self._count_events, node)

    async def recent_events(self, nodes: list[str] | None, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` events (of `nodes`, or all), oldest first, in insertion order."""
        return await self._run(self._recent_events, nodes, limit)

    # Everything below runs on the store thread.

    def _load_offsets(self) -> dict[str, FileOffset]:
        rows = self._conn.execute("SELECT node, dev, ino, byte_offset, base, head FROM offsets")
        return {
            node: FileOffset(_from_sql(dev), _from_sql(ino), offset, base, bytes(head or b""))
            for node, dev, ino, offset, base, head in rows
        }

    def _write_batch(self, events: list[dict[str, Any]], offsets: dict[str, FileOffset]) -> list[dict[str, Any]]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            new = [ev for ev in events if _insert_event(conn, ev)]
            for node, off in offsets.items():
                row = (node, _to_sql(off.dev), _to_sql(off.ino), off.offset, off.base, off.head)
                conn.execute(_UPSERT_OFFSET, row)
            for node, (counts, last_ts) in _tally(new).items():
                conn.execute(_UPSERT_STATS, (node, *(counts[n] for n in STAT_COUNTERS), last_ts))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return new

    def _node_stats(self, nodes: list[str] | None) -> dict[str, dict[str, Any]]:
        columns = ("node", *STAT_COUNTERS, "last_event_ts")
        sql = f"SELECT {', '.join(columns)} FROM node_stats"
        rows = self._conn.execute(sql + _node_filter(nodes), nodes or ())
        stats = {row[0]: dict(zip(columns[1:], row[1:], strict=True)) for row in rows}
        for node in nodes or ():
            stats.setdefault(node, {**dict.fromkeys(STAT_COUNTERS, 0), "last_event_ts": None})
        return stats

    def _count_events(self, node: str | None) -> int:
        if node is None:
            return self._conn.execute("SELECT count(*) FROM events").fetchone()[0]
        return self._conn.execute("SELECT count(*) FROM events WHERE node = ?", (node,)).fetchone()[0]

    def _recent_events(self, nodes: list[str] | None, limit: int) -> list[dict[str, Any]]:
        if limit <= 0 or nodes == []:
            return []
        sql = f"SELECT {', '.join(EVENT_KEYS)} FROM events{_node_filter(nodes)} ORDER BY rowid DESC LIMIT ?"
        rows = self._conn.execute(sql, (*(nodes or ()), limit)).fetchall()
        return [dict(zip(EVENT_KEYS, row, strict=True)) for row in reversed(rows)]


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: transactions are begun and ended explicitly in _write_batch.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.executescript(_SCHEMA)
    if "head" not in {row[1] for row in conn.execute("PRAGMA table_info(offsets)")}:
        conn.execute("ALTER TABLE offsets ADD COLUMN head BLOB")  # a database from before file heads
    return conn


def _insert_event(conn: sqlite3.Connection, event: dict[str, Any]) -> bool:
    return conn.execute(_INSERT_EVENT, tuple(event.get(k) for k in EVENT_KEYS)).rowcount == 1


def _tally(events: Iterable[dict[str, Any]]) -> dict[str, tuple[Counter[str], str | None]]:
    """Per node: counter increments and the latest event timestamp."""
    tallies: dict[str, tuple[Counter[str], str | None]] = {}
    for ev in events:
        counts, last_ts = tallies.get(ev["node"], (Counter(), None))
        _count_event(counts, ev)
        ts = ev.get("ts")
        if ts is not None and (last_ts is None or ts > last_ts):
            last_ts = ts
        tallies[ev["node"]] = (counts, last_ts)
    return tallies


def _count_event(counts: Counter[str], ev: dict[str, Any]) -> None:
    counts["events"] += 1
    outcome = _OUTCOME_COUNTER.get((ev.get("category"), ev.get("status")))
    if outcome is None:
        return
    counts[outcome] += 1
    size = ev.get("size")
    if ev.get("status") == "success" and isinstance(size, int):
        counts[_direction(ev)] += size


def _direction(ev: dict[str, Any]) -> str:
    """bytes_in for data the node received (PUT*), bytes_out for data it served (GET*)."""
    action = ev.get("action") or ""
    if action.startswith("PUT") or (not action and ev.get("category") == "upload"):
        return "bytes_in"
    return "bytes_out"


def _node_filter(nodes: list[str] | None) -> str:
    if nodes is None:
        return ""
    return f" WHERE node IN ({', '.join('?' * len(nodes))})" if nodes else " WHERE 0"


# SQLite integers are signed 64-bit; st_ino and st_dev are unsigned and can use the top bit.
def _to_sql(n: int) -> int:
    return n - (1 << 64) if n >= 1 << 63 else n


def _from_sql(n: int) -> int:
    return n + (1 << 64) if n < 0 else n
