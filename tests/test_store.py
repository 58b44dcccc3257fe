"""The SQLite store: events, offsets and per-node counters, on a real database file."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from monitor.logparse import EVENT_KEYS
from monitor.store import STAT_COUNTERS, FileOffset, Store


def ev(n: int, node: str = "a", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict.fromkeys(EVENT_KEYS)
    base.update(
        id=f"{node}:1.2:{n}",
        node=node,
        ts=f"2026-11-25T12:00:{n % 60:02d}.000Z",
        level="INFO",
        component="piecestore",
        message="downloaded",
        category="download",
        status="success",
        action="GET",
        size=100,
        piece_id=f"P{n}",
    )
    base.update(fields)
    return base


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "events.db")
    yield s
    await s.close()


async def test_schema_uses_wal(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "x.db")
    await s.close()
    conn = sqlite3.connect(tmp_path / "x.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"events", "offsets", "node_stats"} <= tables
    finally:
        conn.close()


async def test_round_trip_keeps_every_field(store: Store) -> None:
    event = ev(1, reason=None, error="boom", remote="203.0.113.7:28967", satellite_id="S")
    assert await store.write_batch([event], {}) == 1
    assert await store.recent_events(None, 10) == [event]


async def test_write_is_idempotent(store: Store) -> None:
    events = [ev(i) for i in range(5)]
    assert await store.write_batch(events, {}) == 5
    assert await store.write_batch(events, {}) == 0
    assert await store.write_batch([*events, ev(5)], {}) == 1
    assert await store.count_events() == 6
    stats = await store.node_stats(["a"])
    assert stats["a"]["downloads"] == 6
    assert stats["a"]["events"] == 6
    assert stats["a"]["bytes_out"] == 600


async def test_write_batch_new_returns_only_new_events_in_order(store: Store) -> None:
    await store.write_batch([ev(2)], {})
    new = await store.write_batch_new([ev(1), ev(2), ev(3)], {})
    assert [e["id"] for e in new] == ["a:1.2:1", "a:1.2:3"]


async def test_offsets_round_trip_and_survive_reopen(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "o.db")
    huge = FileOffset(dev=2**64 - 1, ino=2**63 + 5, offset=10, base=7)
    await s.write_batch([], {"a": FileOffset(1, 2, 3), "b": huge})
    await s.write_batch([], {"a": FileOffset(1, 2, 30)})
    await s.close()
    s = await Store.open(tmp_path / "o.db")
    try:
        assert await s.load_offsets() == {"a": FileOffset(1, 2, 30, 0), "b": huge}
    finally:
        await s.close()


async def test_events_persist_across_reopen(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "p.db")
    await s.write_batch([ev(i) for i in range(3)], {"a": FileOffset(1, 2, 300)})
    await s.close()
    s = await Store.open(tmp_path / "p.db")
    try:
        assert await s.count_events("a") == 3
        assert (await s.node_stats(None))["a"]["events"] == 3
    finally:
        await s.close()


async def test_stats_count_each_outcome(store: Store) -> None:
    events = [
        ev(1, category="upload", status="success", action="PUT", size=1000, message="uploaded"),
        ev(2, category="upload", status="failed", action="PUT", size=None, message="upload failed"),
        ev(3, category="upload", status="canceled", action="PUT", message="upload canceled"),
        ev(4, category="upload", status="started", action="PUT", message="upload started"),
        ev(5, category="download", status="success", action="GET", size=200),
        ev(6, category="download", status="failed", action="GET", message="download failed"),
        ev(7, category="download", status="canceled", action="GET", message="download canceled"),
        ev(8, category="audit", status="success", action="GET_AUDIT", size=30),
        ev(9, category="audit", status="failed", action="GET_AUDIT", message="download failed"),
        ev(10, category="repair", status="success", action="GET_REPAIR", size=4),
        ev(11, category="repair", status="success", action="PUT_REPAIR", size=50000),
        ev(12, category="repair", status="failed", action="PUT_REPAIR", message="upload failed"),
        ev(13, category="compaction", status="started", action=None, size=None, message="compaction"),
        ev(14, node="b", category="upload", status="success", action="PUT", size=7),
    ]
    await store.write_batch(events, {})
    stats = await store.node_stats(None)
    assert set(stats) == {"a", "b"}
    a = stats["a"]
    expected = {
        "uploads": 1, "upload_failed": 1, "upload_canceled": 1,
        "downloads": 1, "download_failed": 1, "download_canceled": 1,
        "audits": 1, "audit_failed": 1, "repairs": 2, "repair_failed": 1,
        "bytes_in": 1000 + 50000, "bytes_out": 200 + 30 + 4, "events": 13,
    }  # fmt: skip
    assert {k: a[k] for k in STAT_COUNTERS} == expected
    assert a["last_event_ts"] == "2026-11-25T12:00:13.000Z"
    assert stats["b"]["uploads"] == 1
    assert stats["b"]["bytes_in"] == 7


async def test_last_event_ts_only_moves_forward(store: Store) -> None:
    await store.write_batch([ev(30)], {})
    await store.write_batch([ev(10)], {})
    assert (await store.node_stats(["a"]))["a"]["last_event_ts"] == "2026-11-25T12:00:30.000Z"


async def test_node_stats_filters_and_fills_unknown_nodes(store: Store) -> None:
    await store.write_batch([ev(1, node="a"), ev(2, node="b")], {})
    stats = await store.node_stats(["b", "zz"])
    assert set(stats) == {"b", "zz"}
    assert stats["zz"]["events"] == 0
    assert stats["zz"]["last_event_ts"] is None
    assert await store.node_stats([]) == {}


async def test_count_and_recent_events(store: Store) -> None:
    await store.write_batch([ev(i, node="ab"[i % 2]) for i in range(10)], {})
    assert await store.count_events() == 10
    assert await store.count_events("a") == 5
    assert await store.count_events("nobody") == 0
    recent = await store.recent_events(None, 3)
    assert [e["piece_id"] for e in recent] == ["P7", "P8", "P9"]
    recent_b = await store.recent_events(["b"], 2)
    assert [e["piece_id"] for e in recent_b] == ["P7", "P9"]
    assert len(await store.recent_events(["a", "b"], 100)) == 10
    assert await store.recent_events([], 10) == []
    assert await store.recent_events(None, 0) == []


async def test_failed_batch_changes_nothing(store: Store) -> None:
    await store.write_batch([ev(1)], {"a": FileOffset(1, 2, 100)})
    bad = ev(3, error={"not": "storable"})
    with pytest.raises(sqlite3.Error):
        await store.write_batch([ev(2), bad], {"a": FileOffset(1, 2, 300)})
    assert await store.count_events() == 1
    assert await store.load_offsets() == {"a": FileOffset(1, 2, 100)}
    assert (await store.node_stats(["a"]))["a"]["events"] == 1
    assert await store.write_batch([ev(2)], {"a": FileOffset(1, 2, 200)}) == 1


async def test_concurrent_writes_are_serialized(store: Store) -> None:
    batches = [[ev(i * 10 + j) for j in range(10)] for i in range(20)]
    writes = [store.write_batch(b, {"a": FileOffset(1, 2, i)}) for i, b in enumerate(batches)]
    counts = await asyncio.gather(*writes)
    assert sum(counts) == 200
    assert (await store.node_stats(["a"]))["a"]["events"] == 200


async def test_database_work_stays_off_the_event_loop_thread(tmp_path: Path) -> None:
    threads: set[int] = set()
    s = await Store.open(tmp_path / "t.db")
    try:
        # The connection refuses use from any thread but the one that opened it.
        with pytest.raises(sqlite3.ProgrammingError):
            s._conn.execute("SELECT 1")
        await s._run(s._conn.set_trace_callback, lambda _sql: threads.add(threading.get_ident()))
        await s.write_batch([ev(1)], {"a": FileOffset(1, 2, 3)})
        await s.node_stats(None)
        await s.recent_events(None, 5)
        await s.count_events()
        await s.load_offsets()
    finally:
        await s.close()
    assert len(threads) == 1
    assert threading.get_ident() not in threads
