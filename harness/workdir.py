"""A finished scenario's folder, kept small: the feed's log files, the target's database and Locust's
tables are most of a run directory's size. Once the scenario is judged (the checkers have read the
database), each large file is gzipped in place; pages (HTML) and images stay as they are."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

MIN_BYTES = 64 * 1024  # smaller files (target.log, the SQLite shm) stay plain to read
KEPT_PLAIN = {"target.log"}  # the reports and a reader look at it first; it is small unless the target misbehaves
SKIPPED_SUFFIXES = {".gz", ".png", ".html"}  # compressed already, or opened in a browser


def compress_workdir(folder: Path, min_bytes: int = MIN_BYTES) -> int:
    """Gzips every file in ``folder`` (recursively) of at least ``min_bytes``; returns bytes saved.
    A file that cannot be compressed (disk full, permissions) is left as it was."""
    saved = 0
    if not folder.is_dir():
        return 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        size = path.stat().st_size
        if size < min_bytes or path.suffix in SKIPPED_SUFFIXES or (path.name in KEPT_PLAIN and size < 16 * min_bytes):
            continue
        packed = path.with_name(path.name + ".gz")
        try:
            with path.open("rb") as src, gzip.open(packed, "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except OSError:
            packed.unlink(missing_ok=True)
            continue
        saved += size - packed.stat().st_size
        path.unlink()
    return saved
