"""One ordered record of a run: what was fed, which faults ran, what every client observed, what the
target logged and reported. Written as JSON lines while the run goes (``history.jsonl.gz``: gzip, flushed
every second), read back by the checkers and the reports (``read_lines``: plain or compressed, a tail cut
short by a killed run left out and said).

Every record has ``t`` (seconds since the run started, monotonic), ``w`` (wall-clock time, comparable
with a server's ``sent_at``) and ``kind``. The kinds and their fields:

- ``step``: ``name`` (steady_before, method, heal, steady_after, checks), ``detail``
- ``feed``: ``ids`` (event ids appended to the target's input), ``node``
- ``feed_rate``: ``rate`` (events a second the feed starts at), ``share_percent``, ``capacity`` and ``key``
  (when the scenario gave the rate as a share of the target's stored capacity)
- ``fault_start`` / ``fault_heal``: ``fault`` (its name in the scenario), ``type``, ``cohort``, ``params``
- ``connect``: ``client``, ``cohort``, ``attempt``, ``since`` (the seq it resumes after, None for a fresh
  start), ``view`` (when it asked for one)
- ``connect_error``: ``client``, ``cohort``, ``error``
- ``init``: ``client``, ``epoch``, ``seq``, ``view`` (when the server says which view it applied)
- ``resume_request``: ``client``, ``cohort``, ``epoch``, ``since`` (a resume message sent on an open connection)
- ``batch``: ``client``, ``seq``, ``ids``, ``sent_at`` (server wall time), ``recv_at`` (client wall time)
- ``notice``: ``client``, ``type`` (resumed, resync_required, error), ``body``
- ``close``: ``client``, ``cohort``, ``code`` (None when the connection just broke), ``by`` (server,
  client, error), ``reason``, and from raw stuck clients ``how`` (reset, fin: what the kernel saw)
- ``client_fault``: ``client``, ``action`` (rst, stop_reading, mid_frame, garbage, ...)
- ``target``: ``event`` (started, ready, killed, paused, resumed, stopped, exited), ``pid``, ``code``
- ``metrics``: ``clients`` (the server's registry size, when it exposes one), ``values``
- ``log``: ``level``, ``line``, ``lineno`` (the target's own log records)
- ``probe``: ``check`` (ws, health), ``ok``, ``latency_s``, ``error``
- ``harness_cpu``: ``percent`` (the harness process), ``backlog`` (largest client receive backlog)
- ``server_stats``: the target's own counts, read once the feed stopped (``harness/serverstats.py``):
  ``declared``, ``total``, ``nodes`` (node: count), or ``error``; ``attempts``, ``took_s``
- ``bad_input``: one client of a ``malformed_input`` fault: ``fault``, ``client``, ``sent``, ``replies``,
  ``close`` (the code if the target closed first), ``error``

Browser cohorts (``harness/browser.py``: dashboard pages in headless Chromium) record ``connect`` when
the page's ``connects`` grows (with its ``epoch`` and ``seq``: its ``lastSeq``), ``close`` when it
leaves the live states (``by`` "error", or "client" when the harness closes it), and:

- ``browser_state``: one sample of the page's ``window.wschaos`` every ~200 ms: ``client``, ``cohort``,
  ``state`` (connecting, live, reconnecting, resyncing), ``epoch``, ``lastSeq``, ``gaps``,
  ``duplicates``, ``resent``, ``connects``, ``events``, ``errors`` (how many the page logged),
  ``received`` (batches received so far: the length of its ``seqs``)
- ``browser_seqs``: ``client``, ``cohort``, ``seqs`` (every batch seq the page received, in order,
  duplicates included), once when the client stops
- ``browser_error``: ``client``, ``cohort``, ``source`` (console, page, crash, app: an entry of
  ``window.wschaos.errors``; harness: the harness could not read the page), ``text``, and for console
  errors ``url`` and ``line``
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("harness.history")

HISTORY_FILE = "history.jsonl.gz"  # what the runner writes; ``history.jsonl`` (plain) is read too
FLUSH_EVERY_S = 1.0  # a compressed history is readable up to its last flush, even after kill -9
FLUSH_BYTES = 1 << 20
COMPRESSLEVEL = 1  # json.dumps costs more than compressing; level 6 is 15% smaller and 25% slower
CHUNK = 1 << 16


class History:
    """The run's records, in memory and, given a path, on disk: plain JSON lines, or gzip-compressed
    when the path ends in ``.gz`` (buffered, flushed every second, at ``flush()`` and on close)."""

    def __init__(self, path: Path | None = None) -> None:
        self.started = time.monotonic()
        self.records: list[dict[str, Any]] = []
        self.path = path
        self.loaded: HistoryLines | None = None  # what ``load`` read, and whether the file was cut short
        self._file: IO[str] | _GzipLines | None = None
        if path is not None:
            self._file = _GzipLines(path) if path.name.endswith(".gz") else path.open("w", encoding="utf-8")

    def now(self) -> float:
        return time.monotonic() - self.started

    def record(self, kind: str, **fields: Any) -> dict[str, Any]:
        entry = {"t": round(self.now(), 6), "w": time.time(), "kind": kind, **fields}
        self.records.append(entry)
        if self._file is not None:
            self._file.write(json.dumps(entry, default=str) + "\n")
        return entry

    def of(self, *kinds: str) -> Iterator[dict[str, Any]]:
        return (r for r in self.records if r["kind"] in kinds)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @classmethod
    def load(cls, path: Path, *, skip_broken: bool = False) -> History:
        """The records of a history file; ``dir/history.jsonl`` finds ``dir/history.jsonl.gz`` too, and a
        folder stands for the history in it. A compressed file cut short is read up to its last flush;
        a broken line is an error, or skipped with ``skip_broken`` (as is a line that is not a record)."""
        history = cls()
        history.loaded = read_lines(find_history(path))
        for line in history.loaded.lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                if skip_broken:
                    continue
                raise
            if not skip_broken or (isinstance(record, dict) and "kind" in record and "t" in record):
                history.records.append(record)
        if history.loaded.truncated:
            log.warning("%s", history.loaded.note)
        return history


class _GzipLines:
    """A gzip writer that compresses in large pieces: lines gather in memory and go to the file (with a
    sync flush, so a reader sees them) when a megabyte has gathered, a second has passed, and on close."""

    def __init__(self, path: Path) -> None:
        self._gz = gzip.GzipFile(path, "wb", compresslevel=COMPRESSLEVEL)
        self._pending: list[str] = []
        self._size = 0
        self._flushed = time.monotonic()

    def write(self, line: str) -> None:
        self._pending.append(line)
        self._size += len(line)
        if self._size >= FLUSH_BYTES or time.monotonic() - self._flushed >= FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._gz.write("".join(self._pending).encode("utf-8"))
            self._pending, self._size = [], 0
        self._gz.flush()
        self._flushed = time.monotonic()

    def close(self) -> None:
        self.flush()
        self._gz.close()


@dataclass
class HistoryLines:
    """The lines of a history file, and whether its end was cut short (``truncated``: a compressed file
    without its end, or a last line without its newline: a run killed mid-write)."""

    path: Path
    lines: list[str] = field(default_factory=list)
    truncated: bool = False

    @property
    def note(self) -> str:
        cut = ", cut short after its last complete record" if self.truncated else ""
        return f"{self.path}: {sum(1 for line in self.lines if line.strip())} records read{cut}"


def find_history(path: Path) -> Path:
    """``path`` itself when it exists, else the compressed or plain file of the same name. A folder
    stands for the history in it."""
    path = Path(path)
    if path.is_dir():
        path = path / HISTORY_FILE
    if path.exists():
        return path
    other = path.with_name(path.name[:-3]) if path.name.endswith(".gz") else path.with_name(path.name + ".gz")
    return other if other.exists() else path


def read_lines(path: Path) -> HistoryLines:
    """Every complete line of a plain or gzip history file; a tail cut short is left out and noted."""
    with path.open("rb") as fh:
        data = fh.read()
    raw, truncated = _gunzip(data) if data[:2] == b"\x1f\x8b" else (data, False)
    body = raw.decode("utf-8", errors="replace")
    lines = body.split("\n")
    if lines and lines[-1] != "":
        truncated = True  # a last line without its newline was being written
    return HistoryLines(path, lines[:-1], truncated)


def _gunzip(data: bytes) -> tuple[bytes, bool]:
    """The decompressed bytes of every gzip member, and whether the stream ended early or broke (fed in
    pieces, so a broken piece loses only itself and what follows)."""
    out = io.BytesIO()
    while data:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        for start in range(0, len(data), CHUNK):
            try:
                out.write(decompressor.decompress(data[start : start + CHUNK]))
            except zlib.error:
                return out.getvalue(), True
            if decompressor.eof:
                break
        if not decompressor.eof:
            return out.getvalue(), True
        data = decompressor.unused_data
    return out.getvalue(), False
