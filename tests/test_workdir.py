"""A judged scenario's target folder is gzipped file by file: nothing is lost, small files stay plain."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from harness.workdir import compress_file, compress_workdir, is_sqlite_file
from reports.versions import toxiproxy_version


def test_large_files_are_gzipped_in_place_and_read_back_byte_for_byte(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    line = b"2026-12-02T10:00:00.000Z INFO piecestore uploaded {\"Piece ID\": \"P1\", \"Size\": 2048}\n"
    big = line * 4000
    (logs / "n1.log").write_bytes(big)
    (tmp_path / "monitor.db").write_bytes(os.urandom(1024) + bytes(200_000))
    (tmp_path / "target.log").write_bytes(b"listening\n" * 100)
    (tmp_path / "small.txt").write_bytes(b"x" * 100)
    (tmp_path / "locust.html").write_bytes(b"<p>report</p>" * 10_000)  # Locust's page, its scripts inline
    (tmp_path / "page.png").write_bytes(bytes(100_000))

    saved = compress_workdir(tmp_path)

    assert not (logs / "n1.log").exists() and gzip.decompress((logs / "n1.log.gz").read_bytes()) == big
    assert (tmp_path / "monitor.db.gz").is_file() and not (tmp_path / "monitor.db").exists()
    assert (tmp_path / "target.log").read_bytes() == b"listening\n" * 100
    assert (tmp_path / "small.txt").read_bytes() == b"x" * 100
    assert (tmp_path / "locust.html.gz").is_file() and not (tmp_path / "locust.html").exists()
    assert (tmp_path / "page.png").is_file()  # compressed already
    assert saved > len(big) // 2
    assert compress_workdir(tmp_path) == 0  # a second pass leaves the .gz files alone


def test_a_missing_folder_is_nothing_to_do(tmp_path: Path) -> None:
    assert compress_workdir(tmp_path / "never-started") == 0


def test_a_scenario_that_held_leaves_no_database_and_one_that_did_not_keeps_it_gzipped(tmp_path: Path) -> None:
    for name in ("held", "failed"):
        target = tmp_path / name / "target"
        target.mkdir(parents=True)
        (target / "monitor.db").write_bytes(os.urandom(1024) + bytes(200_000))
        (target / "monitor.db-wal").write_bytes(bytes(100_000))
        (target / "monitor.db-shm").write_bytes(bytes(32_768))
        (target / "target.log").write_bytes(b"listening\n")

    compress_workdir(tmp_path / "held", held=True)
    compress_workdir(tmp_path / "failed", held=False)

    assert sorted(p.name for p in (tmp_path / "held" / "target").iterdir()) == ["target.log"]
    kept = sorted(p.name for p in (tmp_path / "failed" / "target").iterdir())
    assert kept == ["monitor.db-shm", "monitor.db-wal.gz", "monitor.db.gz", "target.log"]


def test_sqlite_files_are_told_from_others() -> None:
    for name in ("monitor.db", "m.db-wal", "m.db-shm.gz", "s.sqlite3", "s.sqlite-journal"):
        assert is_sqlite_file(Path(name)), name
    for name in ("history.jsonl.gz", "db.log", "target.log", "dbdump.txt"):
        assert not is_sqlite_file(Path(name)), name


def test_compress_file_leaves_small_files_and_gzips_large_ones(tmp_path: Path) -> None:
    small, large = tmp_path / "small.log", tmp_path / "toxiproxy.log"
    small.write_text("one line\n")
    large.write_bytes(b'{"level":"info","msg":"Started proxy"}\n' * 5000)
    assert compress_file(small) == small and small.is_file()
    packed = compress_file(large)
    assert packed == tmp_path / "toxiproxy.log.gz" and not large.exists()
    assert gzip.decompress(packed.read_bytes()) == b'{"level":"info","msg":"Started proxy"}\n' * 5000


def test_the_toxiproxy_version_is_read_from_a_gzipped_log(tmp_path: Path) -> None:
    line = b'{"level":"info","version":"9.8.7","time":"2026-12-02T10:00:00Z","message":"Starting Toxiproxy"}\n'
    (tmp_path / "toxiproxy.log.gz").write_bytes(gzip.compress(line + b"{}\n" * 10))
    assert toxiproxy_version(tmp_path) == "9.8.7"  # not the installed binary's
