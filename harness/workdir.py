"""A finished scenario's folder, kept small: the feed's log files, the target's database and Locust's
files are most of a run directory's size. Once the scenario is judged (the checkers have read the
database and its stored ids are in the history), each large file is gzipped in place; images stay as
they are. The target's SQLite files are dropped when the scenario held (nothing to investigate, and
`wschaos analyze` judges persistence from the history), kept gzipped when it did not."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

MIN_BYTES = 64 * 1024  # smaller files (target.log, the SQLite shm) stay plain to read
KEPT_PLAIN = {"target.log"}  # the reports and a reader look at it first; it is small unless the target misbehaves
SKIPPED_SUFFIXES = {".gz", ".png", ".jpg"}  # compressed already
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def compress_workdir(folder: Path, min_bytes: int = MIN_BYTES, *, held: bool = False) -> int:
    """Gzips every file in ``folder`` (recursively) of at least ``min_bytes``, after dropping the SQLite
    files when the scenario ``held``; returns bytes saved. A file that cannot be compressed (disk full,
    permissions) is left as it was."""
    saved = 0
    if not folder.is_dir():
        return 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        size = path.stat().st_size
        if held and is_sqlite_file(path):
            path.unlink()
            saved += size
            continue
        if path.suffix in SKIPPED_SUFFIXES or (path.name in KEPT_PLAIN and size < 16 * min_bytes):
            continue
        packed = compress_file(path, min_bytes)
        if packed != path:
            saved += size - packed.stat().st_size
    return saved


def is_sqlite_file(path: Path) -> bool:
    """A database and its journal, write-ahead log and shared-memory index (``x.db-wal``, ``x.db-shm``)."""
    name = path.name.removesuffix(".gz")
    for suffix in ("-wal", "-shm", "-journal"):
        name = name.removesuffix(suffix)
    return name.endswith(SQLITE_SUFFIXES)


def compress_file(path: Path, min_bytes: int = MIN_BYTES) -> Path:
    """``path`` gzipped in place when it is at least ``min_bytes``; the path to read it from."""
    if not path.is_file() or path.stat().st_size < min_bytes:
        return path
    packed = path.with_name(path.name + ".gz")
    try:
        with path.open("rb") as src, gzip.open(packed, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except OSError:
        packed.unlink(missing_ok=True)
        return path
    path.unlink()
    return packed
