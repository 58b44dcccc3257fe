"""The run's history: records in order with their times, written as JSON lines, read back, closed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.history import HISTORY_FILE, History, find_history, read_lines


def test_records_carry_kind_fields_and_times_in_order(tmp_path: Path) -> None:
    history = History(tmp_path / "history.jsonl")
    before = time.time()
    first = history.record("step", name="steady_before", detail=None)
    second = history.record("feed", ids=["F1-0", "F1-1"], node="n1")
    history.close()
    assert first["kind"] == "step" and first["name"] == "steady_before"
    assert second["ids"] == ["F1-0", "F1-1"] and second["node"] == "n1"
    assert 0 <= first["t"] <= second["t"] and before <= first["w"] <= second["w"] <= time.time()
    assert history.records == [first, second]
    assert [r["kind"] for r in history.of("feed", "close")] == ["feed"]


def test_written_lines_read_back_as_the_same_records(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    history = History(path)
    history.record("target", event="started", pid=123, code=None)
    history.record("log", level="ERROR", line="boom\twith a tab", lineno=7, where=tmp_path)
    history.flush()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["target", "log"]  # readable while the run goes
    history.close()
    loaded = History.load(path)
    assert loaded.records[0] == history.records[0]
    assert loaded.records[1]["where"] == str(tmp_path)  # what JSON cannot hold is written as text
    assert loaded.path is None and loaded.records[1]["line"] == "boom\twith a tab"


def test_close_ends_the_file_but_not_the_records(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    history = History(path)
    history.record("step", name="method")
    history.close()
    history.close()  # closing twice is harmless
    history.record("step", name="heal")
    assert [r["name"] for r in history.records] == ["method", "heal"]
    assert [json.loads(line)["name"] for line in path.read_text().splitlines()] == ["method"]


def test_a_history_without_a_file_keeps_records_in_memory_only(tmp_path: Path) -> None:
    history = History()
    history.record("probe", check="ws", ok=True)
    history.flush()
    history.close()
    assert history.path is None and len(history.records) == 1 and list(tmp_path.iterdir()) == []


def test_blank_lines_are_skipped_and_a_broken_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text('{"t": 0, "w": 1, "kind": "step"}\n\n   \n{"t": 1, "w": 2, "kind": "feed"}\n')
    assert [r["kind"] for r in History.load(path).records] == ["step", "feed"]
    path.write_text('{"t": 0, "w": 1, "ki\n{"t": 1, "w": 2, "kind": "feed"}\n')  # broken in the middle
    with pytest.raises(ValueError):
        History.load(path)


def test_a_plain_last_line_cut_short_is_left_out_and_said(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text('{"t": 0, "w": 1, "kind": "step"}\n{"t": 1, "w": 2, "ki')  # a run killed mid-write
    loaded = History.load(path)
    assert [r["kind"] for r in loaded.records] == ["step"]
    assert loaded.loaded is not None and loaded.loaded.truncated
    assert loaded.loaded.note.endswith("1 records read, cut short after its last complete record")


def write_both(tmp_path: Path, n: int) -> tuple[History, History]:
    plain, packed = History(tmp_path / "history.jsonl"), History(tmp_path / HISTORY_FILE)
    for i in range(n):
        fields = {"client": f"c-{i % 7}", "seq": i, "ids": [f"F1-{i}"], "sent_at": 1.5 * i}
        plain.record("batch", **fields)
        packed.record("batch", **fields)
    plain.close()
    packed.close()
    return plain, packed


def test_compressed_and_plain_writing_keep_the_same_records(tmp_path: Path) -> None:
    plain, packed = write_both(tmp_path, 5000)
    assert len(plain.records) == len(packed.records) == 5000
    from_plain = History.load(tmp_path / "history.jsonl").records
    from_packed = History.load(tmp_path / HISTORY_FILE).records
    assert len(from_plain) == len(from_packed) == 5000, "no record dropped"
    assert [r["seq"] for r in from_packed] == [r["seq"] for r in from_plain] == list(range(5000))
    assert (tmp_path / HISTORY_FILE).read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / HISTORY_FILE).stat().st_size < (tmp_path / "history.jsonl").stat().st_size / 4


def test_the_plain_name_finds_the_compressed_file(tmp_path: Path) -> None:
    history = History(tmp_path / HISTORY_FILE)
    history.record("step", name="method")
    history.close()
    assert find_history(tmp_path / "history.jsonl") == tmp_path / HISTORY_FILE
    assert find_history(tmp_path) == tmp_path / HISTORY_FILE
    assert [r["name"] for r in History.load(tmp_path / "history.jsonl").records] == ["method"]


def test_a_compressed_history_is_readable_up_to_its_last_flush_while_written(tmp_path: Path) -> None:
    path = tmp_path / HISTORY_FILE
    history = History(path)
    for i in range(100):
        history.record("feed", ids=[f"F1-{i}"])
    history.flush()
    history.record("feed", ids=["not yet flushed"])
    early = read_lines(path)  # no gzip trailer yet: a reader sees a stream cut short
    assert early.truncated and len(early.lines) == 100
    history.close()
    done = read_lines(path)
    assert not done.truncated and len(done.lines) == 101


def test_a_compressed_history_cut_anywhere_reads_its_complete_records(tmp_path: Path) -> None:
    path = tmp_path / HISTORY_FILE
    history = History(path)
    for i in range(3000):
        history.record("batch", seq=i, ids=[f"F1-{i}"])
        if i % 1000 == 999:
            history.flush()
    history.close()
    data = path.read_bytes()
    for cut in (len(data) - 5, len(data) // 2, len(data) // 3, 11):
        path.write_bytes(data[:cut])
        got = History.load(path)  # never EOFError: the tail is left out, and said
        seqs = [r["seq"] for r in got.records]
        assert seqs == list(range(len(seqs)))
        assert got.loaded is not None and got.loaded.truncated
    path.write_bytes(data[: len(data) - 8])  # only the trailer lost: every record is still there
    assert len(History.load(path).records) == 3000


def test_a_killed_writer_leaves_a_readable_file_up_to_the_last_flush(tmp_path: Path) -> None:
    path = tmp_path / HISTORY_FILE
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from harness.history import History\n"
        f"h = History(Path({str(path)!r}))\n"
        "for i in range(500): h.record('feed', ids=[i])\n"
        "h.flush()\n"
        "for i in range(500, 600): h.record('feed', ids=[i])\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent, timeout=60)
    assert proc.returncode == -9
    got = History.load(path)
    assert [r["ids"][0] for r in got.records] == list(range(500))
    assert got.loaded is not None and got.loaded.truncated
