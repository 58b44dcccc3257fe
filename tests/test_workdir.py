"""A judged scenario's target folder is gzipped file by file: nothing is lost, small files stay plain."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from harness.workdir import compress_workdir


def test_large_files_are_gzipped_in_place_and_read_back_byte_for_byte(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    line = b"2026-12-02T10:00:00.000Z INFO piecestore uploaded {\"Piece ID\": \"P1\", \"Size\": 2048}\n"
    big = line * 4000
    (logs / "n1.log").write_bytes(big)
    (tmp_path / "monitor.db").write_bytes(os.urandom(1024) + bytes(200_000))
    (tmp_path / "target.log").write_bytes(b"listening\n" * 100)
    (tmp_path / "small.txt").write_bytes(b"x" * 100)
    (tmp_path / "locust.html").write_bytes(b"<p>report</p>" * 10_000)
    (tmp_path / "page.png").write_bytes(bytes(100_000))

    saved = compress_workdir(tmp_path)

    assert not (logs / "n1.log").exists() and gzip.decompress((logs / "n1.log.gz").read_bytes()) == big
    assert (tmp_path / "monitor.db.gz").is_file() and not (tmp_path / "monitor.db").exists()
    assert (tmp_path / "target.log").read_bytes() == b"listening\n" * 100
    assert (tmp_path / "small.txt").read_bytes() == b"x" * 100
    assert (tmp_path / "locust.html").is_file() and (tmp_path / "page.png").is_file()  # opened as they are
    assert saved > len(big) // 2
    assert compress_workdir(tmp_path) == 0  # a second pass leaves the .gz files alone


def test_a_missing_folder_is_nothing_to_do(tmp_path: Path) -> None:
    assert compress_workdir(tmp_path / "never-started") == 0
