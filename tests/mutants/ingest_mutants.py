"""Mutants of the monitor's ingest: how a log tailer goes wrong on rotation, truncation, partial
lines, a backlog after a restart and a crash between two commits. Each docstring says what it breaks.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from monitor import ingest
from monitor.ingest import CHUNK_SIZE, HEAD_SIZE, _Tailer
from monitor.store import FileOffset
from tests.mutants.registry import mutant


@mutant("log_rotation", "persistence")
def offset_kept_after_truncate() -> None:
    """A truncated file keeps its read offset: the tailer takes the new content's head as the file's
    and reads on from the old offset once the file has grown past it, so the new content up to there
    (and the old content's unread rest) is never read."""

    async def truncated(self: _Tailer, resumed: bool) -> None:
        assert self._file is not None
        self._metrics.file_truncations += 1
        self._head = os.pread(self._file.fileno(), min(self._read_pos, HEAD_SIZE), 0)
        await asyncio.sleep(self._poll)

    _Tailer._truncated = truncated  # type: ignore[method-assign]


@mutant("log_rotation", "persistence")
def ids_restart_after_truncate() -> None:
    """After a truncation the file is read from its start, but event ids start again from the old
    base: the new lines get the ids of the old ones, and the store ignores them as known."""
    original = _Tailer._truncated

    async def truncated(self: _Tailer, resumed: bool) -> None:
        base = self._base
        await original(self, resumed)
        self._base = base

    _Tailer._truncated = truncated  # type: ignore[method-assign]


@mutant("log_rotation", "persistence")
def head_ignored() -> None:
    """The tailer ignores the file's head and judges it by its size alone (the monitor before heads
    were kept): a file truncated while the monitor was down and grown past the old offset is read on
    from that offset, mid-line in new content, and the old content's unread rest is never read."""
    ingest._starts_with = lambda f, head: True  # type: ignore[attr-defined]


@mutant("log_rotation", "persistence")
def parse_partial_line() -> None:
    """A line read in two pieces is parsed as two lines: whatever is buffered at the end of the file
    is taken as a finished line, so a line still being written becomes two broken ones."""
    original = _Tailer._read_available

    async def read_available(self: _Tailer) -> None:
        await original(self)
        await self._finish_file()

    _Tailer._read_available = read_available  # type: ignore[method-assign]


@mutant("server_restart", "persistence")
def backlog_one_chunk() -> None:
    """After a restart only one read chunk of the backlog is ingested: the tailer then jumps to the
    end of the file, so what was written while the monitor was down beyond 64 KiB is lost."""
    original_resumed = _Tailer._attach_resumed
    original_read = _Tailer._read_available
    jumping: set[int] = set()

    async def attach_resumed(self: _Tailer, f: Any, st: os.stat_result, resume: FileOffset) -> None:
        await original_resumed(self, f, st, resume)
        jumping.add(id(self))

    async def read_available(self: _Tailer) -> None:
        if id(self) not in jumping or self._file is None:
            return await original_read(self)
        jumping.discard(id(self))
        chunk = self._file.read(CHUNK_SIZE)
        if chunk:
            await self._consume(chunk)
        size = os.fstat(self._file.fileno()).st_size
        if size > self._read_pos:
            self._file.seek(size)
            self._buf.clear()
            self._pos = self._read_pos = size
        return await original_read(self)

    _Tailer._attach_resumed = attach_resumed  # type: ignore[method-assign]
    _Tailer._read_available = read_available  # type: ignore[method-assign]


@mutant("crash_loop", "persistence")
def offsets_before_events() -> None:
    """Offsets are committed before their events, which follow one transaction each (no transaction
    around the batch): a crash after the offsets and before the last event leaves the offset past lines
    that were never stored, and they are never read again."""

    async def write(self: ingest.Ingest, events: list[dict[str, Any]], offsets: dict[str, FileOffset]) -> Any:
        await self._store.write_batch_new([], offsets)
        new: list[dict[str, Any]] = []
        for event in events:
            new += await self._store.write_batch_new([event], {})
        return new

    ingest.Ingest._write = write  # type: ignore[method-assign]
