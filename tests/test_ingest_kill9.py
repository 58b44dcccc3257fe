"""kill -9 the ingesting process at random moments: the database ends with every line exactly once."""

from __future__ import annotations

import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from monitor.logparse import format_line

ROOT = Path(__file__).parent.parent
ROTATE_AT = 300  # the writer renames the log to node.log.1 after this many lines


class LogWriter(threading.Thread):
    """Appends numbered lines, sometimes in two writes (a partial line), and rotates once."""

    def __init__(self, log: Path, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.log = log
        self.rng = rng
        self.written: list[str] = []
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.write_until_halted()
        except BaseException as exc:
            self.error = exc
            raise

    def write_until_halted(self) -> None:
        while not self.halt.is_set():
            if len(self.written) == ROTATE_AT:
                self.log.rename(self.log.with_name("node.log.1"))
            # Now and then a burst, so that kills also land in the middle of a backlog.
            data = self.lines(100 if self.rng.random() < 0.02 else 1)
            cut = self.rng.randrange(len(data)) if self.rng.random() < 0.2 else len(data)
            with self.log.open("ab") as f:
                f.write(data[:cut])
                f.flush()
                time.sleep(self.rng.uniform(0, 0.002))
                f.write(data[cut:])
            time.sleep(self.rng.uniform(0, 0.001))

    def lines(self, count: int) -> bytes:
        out = []
        if len(self.written) < ROTATE_AT:
            count = min(count, ROTATE_AT - len(self.written))
        for _ in range(count):
            piece = f"P{len(self.written):07d}"
            fields = {"Piece ID": piece, "Action": "PUT", "Size": len(self.written)}
            out.append(format_line("2026-11-25T12:00:00.000Z", "INFO", "piecestore", "uploaded", fields) + "\n")
            self.written.append(piece)
        return "".join(out).encode()


def spawn(db: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.ingest_proc", str(db), str(log)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_ready(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    assert readable, "ingest process did not start"
    assert proc.stdout.readline().strip() == b"ready"


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


def stored_pieces(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [row[0] for row in conn.execute("SELECT piece_id FROM events ORDER BY rowid")]
    finally:
        conn.close()


def count_rows(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*), count(DISTINCT piece_id) FROM events").fetchone()
    finally:
        conn.close()


def wait_for_rows(db: Path, expected: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while count_rows(db)[0] < expected:
        assert proc.poll() is None, "ingest process died"
        assert time.monotonic() < deadline, f"only {count_rows(db)[0]} of {expected} lines stored"
        time.sleep(0.02)


def wait_for_offset(db: Path, timeout: float = 10.0) -> None:
    """Until the first start position is stored: lines written before it are not the monitor's."""
    deadline = time.monotonic() + timeout
    while True:
        conn = sqlite3.connect(db)
        try:
            if conn.execute("SELECT count(*) FROM offsets").fetchone()[0]:
                return
        finally:
            conn.close()
        assert time.monotonic() < deadline, "no offset stored"
        time.sleep(0.01)


def wait_for_rotation(writer: LogWriter, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(writer.written) <= ROTATE_AT and writer.is_alive():
        assert time.monotonic() < deadline, "the writer is stuck"
        time.sleep(0.01)


@pytest.mark.parametrize("seed", [1, 2])
def test_kill9_three_times_loses_and_duplicates_nothing(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    log, db = tmp_path / "node.log", tmp_path / "events.db"
    log.touch()
    writer = LogWriter(log, random.Random(seed + 1000))
    procs: list[subprocess.Popen[bytes]] = []
    stored_after_kill: list[int] = []
    try:
        for round_ in range(3):
            procs.append(spawn(db, log))
            wait_ready(procs[-1])
            if round_ == 0:
                wait_for_offset(db)
                writer.start()
            time.sleep(rng.uniform(0.05, 0.4))
            kill(procs[-1])
            stored_after_kill.append(count_rows(db)[0])
            time.sleep(rng.uniform(0, 0.1))  # lines keep coming while it is down
        wait_for_rotation(writer)
        writer.halt.set()
        writer.join(timeout=5)
        procs.append(spawn(db, log))
        wait_ready(procs[-1])
        wait_for_rows(db, len(writer.written), procs[-1])
        time.sleep(0.1)  # a duplicate, if any, would land now
    finally:
        writer.halt.set()
        for proc in procs:
            kill(proc)
    assert writer.error is None
    assert len(writer.written) > ROTATE_AT
    assert stored_after_kill[-1] > 0, "the kills all landed before anything was stored"
    rows, distinct = count_rows(db)
    assert rows == distinct == len(writer.written)
    assert stored_pieces(db) == writer.written
