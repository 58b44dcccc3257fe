"""Tail one storagenode log per node and feed its events to the store, then to listeners.

Tailers read lines and put them, with the file offset after each line, into one bounded queue;
one persister writes them to the store (events and offsets in one transaction) and only then hands
the new events on. A full queue stops the tailers from reading: nothing is dropped.

Files are read in the event loop, not a thread: a read of a local log returns at once, each read is
at most one chunk, and a tailer yields to the loop after every chunk.

Event ids are `node:dev.ino:position`, where position is the line's offset in the node's whole log
stream (the file's `base` plus its offset in the file), so ids stay unique and stable when a file
is truncated or a new file reuses an old inode number, and a replay after a restart is idempotent.

Each offset keeps the file's first bytes (its head). A file whose head changed was truncated or
replaced in place (copytruncate), even when it has since grown past the offset; its old content is
then looked for in the directory (a file starting with the same head, e.g. `node.log.1`) and read
from the offset to its end before the file itself is read from its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.health import StorageHealth
from monitor.logparse import parse_line, to_event
from monitor.metrics import Metrics
from monitor.store import FileOffset, Store

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
HEAD_SIZE = 256  # bytes of a file's start kept with its offset; a whole storagenode line, mostly
MAX_LINE = 1024 * 1024  # a longer "line" is skipped rather than buffered without bound
STOP_WRITE_ATTEMPTS = 3

# (node, event or None, offset after the line). A None event only moves the offset: a skipped
# line, or the start of a file.
Item = tuple[str, dict[str, Any] | None, FileOffset]
_Opened = tuple[io.FileIO, os.stat_result]


@dataclass
class NodeSource:
    name: str
    path: Path


class Ingest:
    def __init__(
        self,
        sources: list[NodeSource],
        store: Store,
        on_events: Callable[[list[dict[str, Any]]], None],
        metrics: Metrics,
        *,
        from_start: bool = False,
        poll_interval: float = 0.05,
        queue_size: int = 10_000,
        batch_size: int = 500,
    ) -> None:
        self._sources = list(sources)
        self._store = store
        self._on_events = on_events
        self._metrics = metrics
        self._from_start = from_start
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._queue: asyncio.Queue[Item | None] = asyncio.Queue(queue_size)
        self._tailers: list[_Tailer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._persister: asyncio.Task[None] | None = None
        self._stopping = False
        self.storage = StorageHealth()

    async def start(self) -> None:
        offsets = await self._store.load_offsets()
        self._tailers = [self._tailer(src, offsets.get(src.name)) for src in self._sources]
        self._persister = asyncio.create_task(self._persist(), name="ingest-persister")
        for tailer in self._tailers:
            await tailer.open_first()  # so "from the end" means the end when start() returned
        self._tasks = [asyncio.create_task(t.run(), name=f"tail-{t.node}") for t in self._tailers]

    def _tailer(self, source: NodeSource, resume: FileOffset | None) -> _Tailer:
        return _Tailer(source, resume, self._put, self._metrics, self._from_start, self._poll_interval)

    async def stop(self) -> None:
        """Stop reading, then store (and hand on) everything already read."""
        if self._persister is None or self._stopping:
            return
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self._persister.done():
            await self._queue.put(None)
        try:
            await self._persister
        except Exception:
            log.exception("ingest: could not store the last lines read; they will be read again on restart")

    def node_status(self) -> dict[str, dict[str, Any]]:
        return {t.node: t.status() for t in self._tailers}

    async def _put(self, item: Item) -> None:
        if self._queue.full():
            self._metrics.ingest_backpressure_waits += 1
        await self._queue.put(item)
        self._metrics.ingest_queue_depth = self._queue.qsize()

    async def _persist(self) -> None:
        done = False
        while not done:
            items = [await self._queue.get()]
            while len(items) < self._batch_size and not self._queue.empty():
                items.append(self._queue.get_nowait())
            self._metrics.ingest_queue_depth = self._queue.qsize()
            done = items[-1] is None  # the stop sentinel comes after every tailer has stopped
            batch = [item for item in items if item is not None]
            if batch:
                await self._store_batch(batch)

    async def _store_batch(self, batch: list[Item]) -> None:
        events = [event for _, event, _ in batch if event is not None]
        offsets = {node: offset for node, _, offset in batch}  # the last one per node wins
        new = await self._write(events, offsets)
        self._metrics.events_persisted += len(new)
        if new:
            try:
                self._on_events(new)
            except Exception:
                log.exception("ingest: event listener failed")

    async def _write(self, events: list[dict[str, Any]], offsets: dict[str, FileOffset]) -> list[dict[str, Any]]:
        """Retry until stored: skipping a batch would move later offsets past its lines."""
        attempt, delay = 0, 0.05
        while True:
            attempt += 1
            try:
                new = await self._store.write_batch_new(events, offsets)
            except Exception as exc:
                if self._stopping and attempt >= STOP_WRITE_ATTEMPTS:
                    raise
                self.storage.failed(exc)  # one ERROR a minute, not one per attempt
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.storage.succeeded()
            return new


class _Tailer:
    """Follows one node's log file across rotation and truncation."""

    def __init__(
        self,
        source: NodeSource,
        resume: FileOffset | None,
        put: Callable[[Item], Awaitable[None]],
        metrics: Metrics,
        from_start: bool,
        poll_interval: float,
    ) -> None:
        self.node = source.name
        self._path = source.path
        self._put_item = put
        self._metrics = metrics
        self._poll = poll_interval
        self._resume = resume  # where to continue when the next file is opened
        self._from_end = not from_start and resume is None  # only for the file there at start-up
        self._next_base = 0  # stream position of a new file's first byte
        self._file: io.FileIO | None = None
        self._dev = self._ino = 0
        self._base = 0
        self._pos = 0  # offset after the last complete line
        self._read_pos = 0  # offset of the next byte to read
        self._head = b""  # the file's first min(read_pos, HEAD_SIZE) bytes
        self._buf = bytearray()
        self._discarding = False  # inside an over-long line, skipping to its end
        self._state = "waiting"
        self._error: str | None = None
        self._last_line_at: float | None = None

    def status(self) -> dict[str, Any]:
        return {
            "state": self._state,
            "path": str(self._path),
            "offset": self._pos,
            "last_line_at": self._last_line_at,
            "error": self._error,
        }

    async def open_first(self) -> None:
        try:
            await self._open()
        except Exception as exc:
            self._fail(exc)

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._step()
                except Exception as exc:
                    self._fail(exc)
                    await asyncio.sleep(self._poll)
        finally:
            self._close()

    async def _step(self) -> None:
        if self._file is None:
            await self._open()
            if self._file is None:
                await asyncio.sleep(self._poll)
            return
        if self._replaced_in_place():
            await self._truncated(resumed=False)
            return
        await self._read_available()
        await self._at_eof()

    def _fail(self, exc: Exception) -> None:
        if self._file is not None:
            self._resume = self._offset()
        self._close()
        self._from_end = False
        if self._state != "error" or self._error != str(exc):
            log.warning("ingest: node %s: %s", self.node, exc, exc_info=not isinstance(exc, OSError))
        self._state, self._error = "error", str(exc)

    # Opening files

    async def _open(self) -> None:
        opened = _open_file(self._path)
        resume = self._resume
        if resume is not None and (opened is None or _ident(opened[1]) != (resume.dev, resume.ino)):
            opened = self._reopen_rotated(resume, opened)
            resume = self._resume
        if opened is None:
            self._state, self._error, self._from_end = "waiting", None, False
            return
        f, st = opened
        from_end, self._from_end, self._resume = self._from_end, False, None
        if resume is not None:
            await self._attach_resumed(f, st, resume)
        else:
            await self._attach(f, st, _line_start_before(f, st.st_size) if from_end else 0, self._next_base)

    def _reopen_rotated(self, resume: FileOffset, current: _Opened | None) -> _Opened | None:
        """The stored file is no longer at the path: find it (e.g. renamed to `node.log.1`).

        If it is gone, continue with the file now at the path, from its start.
        """
        found = _find_inode(self._path.parent, resume.dev, resume.ino)
        old = _open_file(found) if found is not None else None
        # The head check: the inode number may have been reused by another file since.
        if old is not None and _ident(old[1]) == (resume.dev, resume.ino) and _starts_with(old[0], resume.head):
            if current is not None:
                current[0].close()
            return old
        if old is not None:
            old[0].close()
        self._resume, self._next_base = None, resume.base + resume.offset
        log.warning("ingest: node %s: the file read before (inode %d) is no longer beside %s: what it held "
                    "after offset %d was not read", self.node, resume.ino, self._path, resume.offset)  # fmt: skip
        if current is not None:
            self._metrics.file_rotations += 1
        return current

    async def _attach_resumed(self, f: io.FileIO, st: os.stat_result, resume: FileOffset) -> None:
        if st.st_size >= resume.offset and _starts_with(f, resume.head):
            await self._attach(f, st, resume.offset, resume.base)
        else:  # truncated or replaced while not followed
            await self._attach(f, st, resume.offset, resume.base, resume.head)
            await self._truncated(resumed=True)

    async def _attach(
        self, f: io.FileIO, st: os.stat_result, offset: int, base: int, head: bytes | None = None
    ) -> None:
        f.seek(offset)
        self._file, (self._dev, self._ino) = f, _ident(st)
        self._base, self._pos, self._read_pos = base, offset, offset
        self._head = os.pread(f.fileno(), min(offset, HEAD_SIZE), 0) if head is None else head
        self._buf.clear()
        self._discarding = False
        self._state, self._error = "tailing", None
        await self._put(None)  # store where this file starts being read

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # Reading

    async def _read_available(self) -> None:
        assert self._file is not None
        while chunk := self._file.read(CHUNK_SIZE):
            await self._consume(chunk)
            await asyncio.sleep(0)

    async def _at_eof(self) -> None:
        assert self._file is not None
        st = _stat(self._path)
        if st is not None and _ident(st) != (self._dev, self._ino):
            await self._read_available()  # what was written before the writer moved on
            await self._finish_file()
            self._metrics.file_rotations += 1
            self._next_base = self._base + self._read_pos
            self._close()
        elif self._replaced_in_place():
            await self._truncated(resumed=False)
        else:
            await asyncio.sleep(self._poll)

    def _replaced_in_place(self) -> bool:
        """Whether the open file is shorter than what was read of it, or starts otherwise."""
        assert self._file is not None
        return os.fstat(self._file.fileno()).st_size < self._read_pos or not _starts_with(self._file, self._head)

    async def _truncated(self, resumed: bool) -> None:
        """The open file was truncated (or its content replaced): finish its old content, then read
        it from its start as a new part of the node's stream."""
        assert self._file is not None
        self._metrics.file_truncations += 1
        await self._read_old_content(resumed)
        await self._finish_file()
        self._file.seek(0)
        self._base += self._read_pos
        self._pos = self._read_pos = 0
        self._head = b""
        await self._put(None)

    async def _read_old_content(self, resumed: bool) -> None:
        """Read the rest of the old content from its copy (copytruncate), if the directory has one."""
        assert self._file is not None
        copy = _find_copy(self._path, self._head, self._read_pos, (self._dev, self._ino))
        level = logging.WARNING if resumed else logging.INFO
        if copy is None:
            log.log(level, "ingest: node %s: %s was truncated or replaced%s and no copy of its old content "
                    "was found: reading it from its start; anything it held after offset %d is lost",
                    self.node, self._path, " while not followed" if resumed else "", self._read_pos)  # fmt: skip
            return
        path, f = copy
        unread = os.fstat(f.fileno()).st_size - self._read_pos
        log.log(level, "ingest: node %s: %s was truncated%s; reading the %d bytes of it not yet read from its "
                "copy %s", self.node, self._path, " while not followed" if resumed else "", unread, path)  # fmt: skip
        current, self._file = self._file, f
        try:
            f.seek(self._read_pos)
            await self._read_available()
        finally:
            self._file = current
            f.close()

    async def _consume(self, chunk: bytes) -> None:
        if self._read_pos < HEAD_SIZE:
            self._head += chunk[: HEAD_SIZE - self._read_pos]
        self._read_pos += len(chunk)
        if self._discarding:
            cut = chunk.find(b"\n")
            if cut < 0:
                self._pos += len(chunk)
                return
            await self._skip_long_line(cut + 1)
            chunk = chunk[cut + 1 :]
        self._buf += chunk
        *lines, rest = self._buf.split(b"\n")
        self._buf = rest
        for line in lines:
            await self._emit(bytes(line), len(line) + 1)
        if len(self._buf) > MAX_LINE:
            self._pos += len(self._buf)
            self._buf.clear()
            self._discarding = True

    async def _skip_long_line(self, tail_length: int) -> None:
        self._pos += tail_length
        self._discarding = False
        self._metrics.lines_read += 1
        self._metrics.parse_errors += 1
        await self._put(None)

    async def _finish_file(self) -> None:
        """The file will not grow any more: an unterminated last line is a line too."""
        if self._discarding:
            await self._skip_long_line(0)
        elif self._buf:
            line = bytes(self._buf)
            self._buf.clear()
            await self._emit(line, len(line))

    async def _emit(self, line: bytes, length: int) -> None:
        start = self._pos
        self._pos += length
        self._metrics.lines_read += 1
        self._last_line_at = time.time()
        text = line.decode("utf-8", errors="replace")
        if not text.strip():
            await self._put(None)
            return
        parsed = parse_line(text)
        if parsed is None:
            self._metrics.parse_errors += 1
            await self._put(None)
            return
        event_id = f"{self.node}:{self._dev}.{self._ino}:{self._base + start}"
        await self._put(to_event(parsed, self.node, event_id))
        self._metrics.events_ingested += 1

    async def _put(self, event: dict[str, Any] | None) -> None:
        await self._put_item((self.node, event, self._offset()))

    def _offset(self) -> FileOffset:
        return FileOffset(self._dev, self._ino, self._pos, self._base, self._head)


def _ident(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def _open_file(path: Path) -> _Opened | None:
    """The file and its identity, taken from the open handle so they cannot disagree."""
    try:
        f = path.open("rb", buffering=0)
    except FileNotFoundError:
        return None
    try:
        return f, os.fstat(f.fileno())
    except BaseException:
        f.close()
        raise


def _find_inode(directory: Path, dev: int, ino: int) -> Path | None:
    try:
        with os.scandir(directory) as it:
            entries = list(it)
    except OSError:
        return None
    for entry in entries:
        with contextlib.suppress(OSError):  # an entry may vanish while we look
            if entry.inode() == ino and entry.is_file(follow_symlinks=False):
                if entry.stat(follow_symlinks=False).st_dev == dev:
                    return Path(entry.path)
    return None


def _starts_with(f: io.FileIO, head: bytes) -> bool:
    return not head or os.pread(f.fileno(), len(head), 0) == head


def _find_copy(path: Path, head: bytes, offset: int, ident: tuple[int, int]) -> tuple[Path, io.FileIO] | None:
    """A file beside ``path`` (named after it, not the file ``ident``) that starts with ``head`` and
    holds ``offset`` bytes or more: the copy a copytruncate left of the old content."""
    if not head:
        return None
    try:
        with os.scandir(path.parent) as it:
            names = sorted(e.name for e in it if e.name.startswith(path.name) and e.name != path.name)
    except OSError:
        return None
    for name in names:
        opened = _open_file(path.parent / name)
        if opened is None:
            continue
        f, st = opened
        if _ident(st) != ident and stat.S_ISREG(st.st_mode) and st.st_size >= offset and _starts_with(f, head):
            return path.parent / name, f
        f.close()
    return None


def _line_start_before(f: io.FileIO, size: int) -> int:
    """Where the line holding the file's last byte starts, so a line being written is read whole."""
    window = min(size, CHUNK_SIZE)
    f.seek(size - window)
    data = f.read(window)
    cut = data.rfind(b"\n")
    if cut >= 0:
        return size - window + cut + 1
    return 0 if window == size else size
