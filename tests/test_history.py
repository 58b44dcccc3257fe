"""The run's history: records in order with their times, written as JSON lines, read back, closed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness.history import History


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
    path.write_text('{"t": 0, "w": 1, "kind": "step"}\n{"t": 1, "w": 2, "ki')  # a run killed mid-write
    with pytest.raises(ValueError):
        History.load(path)
