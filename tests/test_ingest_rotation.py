"""Files changed in place (copytruncate) while the monitor runs and while it is down."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monitor.ingest import HEAD_SIZE
from monitor.store import FileOffset, Store
from tests.test_ingest import Rig, append, lines, pieces


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    r = Rig(tmp_path)
    yield r
    await r.stop()


def copytruncate(log: Path, copy: Path) -> None:
    shutil.copyfile(log, copy)
    with log.open("r+b") as f:
        f.truncate(0)


async def test_copytruncate_while_down_with_longer_new_content_loses_nothing(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    await rig.start(from_start=True)
    append(rig.log, lines(range(5)))
    await rig.wait_received(5)
    await rig.stop()
    append(rig.log, lines(range(5, 8)))  # written while down, not yet read
    unread = len(lines(range(5, 8)))
    copytruncate(rig.log, rig.dir / "node.log.1")
    append(rig.log, lines(range(8, 20)))  # longer than the old offset: the size alone cannot tell
    rig.received.clear()
    with caplog.at_level(logging.WARNING, logger="monitor.ingest"):
        await rig.start()
        await rig.wait_received(15)
    assert pieces(rig.received) == list(range(5, 20))
    assert pieces(await rig.stored()) == list(range(20))
    assert len({e["id"] for e in await rig.stored()}) == 20
    assert rig.metrics.parse_errors == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"the {unread} bytes of it not yet read" in w and "node.log.1" in w for w in warnings), warnings


async def test_replaced_while_down_without_a_copy_is_read_from_its_start_with_a_warning(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    await rig.start(from_start=True)
    append(rig.log, lines(range(5)))
    await rig.wait_received(5)
    await rig.stop()
    with rig.log.open("r+b") as f:
        f.truncate(0)
    append(rig.log, lines(range(5, 20)))
    rig.received.clear()
    with caplog.at_level(logging.WARNING, logger="monitor.ingest"):
        await rig.start()
        await rig.wait_received(15)
    assert pieces(await rig.stored()) == list(range(20))
    assert rig.metrics.parse_errors == 0
    assert any("no copy of its old content was found" in r.getMessage() for r in caplog.records)


async def test_copytruncate_while_running_reads_the_unread_rest_from_the_copy(rig: Rig) -> None:
    await rig.start(from_start=True)
    append(rig.log, lines(range(5)))
    await rig.wait_received(5)
    # No await in between: the tailer cannot read lines 5-9 before the file is truncated.
    append(rig.log, lines(range(5, 10)))
    copytruncate(rig.log, rig.dir / "node.log.1")
    append(rig.log, lines(range(10, 40)))
    await rig.wait_received(40)
    assert pieces(rig.received) == list(range(40))
    assert len({e["id"] for e in rig.received}) == 40
    assert rig.metrics.file_truncations == 1
    assert rig.metrics.parse_errors == 0


async def test_offset_keeps_the_files_head(rig: Rig) -> None:
    await rig.start(from_start=True)
    append(rig.log, lines(range(5)))
    await rig.wait_received(5)
    await rig.stop()
    rig.store = await Store.open(rig.db)
    offsets = await rig.store.load_offsets()
    assert offsets["n1"].head == rig.log.read_bytes()[:HEAD_SIZE]


async def test_database_from_before_heads_is_upgraded(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE offsets (node TEXT PRIMARY KEY NOT NULL, dev INTEGER NOT NULL, "
                 "ino INTEGER NOT NULL, byte_offset INTEGER NOT NULL, base INTEGER NOT NULL)")  # fmt: skip
    conn.execute("INSERT INTO offsets VALUES ('a', 1, 2, 3, 4)")
    conn.commit()
    conn.close()
    store = await Store.open(db)
    try:
        assert await store.load_offsets() == {"a": FileOffset(1, 2, 3, 4, b"")}
        await store.write_batch([], {"a": FileOffset(1, 2, 5, 4, b"xy")})
        assert await store.load_offsets() == {"a": FileOffset(1, 2, 5, 4, b"xy")}
    finally:
        await store.close()


async def test_rotated_file_moved_away_while_down_is_a_warning(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    await rig.start(from_start=True)
    append(rig.log, lines(range(5)))
    await rig.wait_received(5)
    await rig.stop()
    append(rig.log, lines(range(5, 7)))  # never read: the file goes where the monitor cannot see it
    elsewhere = rig.dir / "archive"
    elsewhere.mkdir()
    rig.log.rename(elsewhere / "node.log.1")
    append(rig.log, lines(range(7, 10)))
    rig.received.clear()
    with caplog.at_level(logging.WARNING, logger="monitor.ingest"):
        await rig.start()
        await rig.wait_received(3)
    assert pieces(rig.received) == [7, 8, 9]
    assert any("is no longer beside" in r.getMessage() and "was not read" in r.getMessage() for r in caplog.records)
