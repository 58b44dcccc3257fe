"""The log-file faults (rotation, a stopped target's backlog, a crash loop) and the feed's split
lines: what they do to real files, how bad parameters read, and that a target they cannot act on
gets a clear answer, not a crash."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from harness.checkers import FAIL, NOT_APPLICABLE, PASS, CheckContext
from harness.checkers.crash_persistence import check_crash_persistence
from harness.errors import HarnessError
from harness.external import external_skip_reason
from harness.faultbase import FaultContext, FaultSpec
from harness.faultfamilies.logfaults import CrashLoop, LogRotation, ServerDown, feed_files, rotate
from harness.feed import Feed, FeedError
from harness.history import History
from harness.scenario import ScenarioError, parse
from harness.target import Target
from harness.targetspec import FeedSpec, TargetSpec
from monitor.logparse import parse_line

FILES = FeedSpec("storagenode_log", {"n1": "{workdir}/n1.log", "n2": "{workdir}/n2.log"})


def scenario(fault: dict[str, Any], feed: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": "s", "cohorts": [{"name": "c", "clients": 1}], "feed": feed or {"rate": 10},
            "method": [{"fault": fault}], "checks": {"persistence": {}}}  # fmt: skip


def test_rename_rotation_moves_the_file_and_creates_an_empty_one(tmp_path: Path) -> None:
    log = tmp_path / "n1.log"
    log.write_text("a\nb\n")
    inode = log.stat().st_ino
    (tmp_path / "n1.log.1").write_text("older\n")
    moved = rotate(log, "rename")
    assert moved == tmp_path / "n1.log.2"  # an earlier rotation is not overwritten
    assert moved.read_text() == "a\nb\n" and moved.stat().st_ino == inode
    assert log.read_text() == "" and log.stat().st_ino != inode


def test_copytruncate_copies_and_truncates_in_place(tmp_path: Path) -> None:
    log = tmp_path / "n1.log"
    log.write_text("a\nb\n")
    inode = log.stat().st_ino
    moved = rotate(log, "copytruncate")
    assert moved.read_text() == "a\nb\n" and moved.stat().st_ino != inode
    assert log.read_text() == "" and log.stat().st_ino == inode


@pytest.mark.parametrize(
    ("fault", "field"),
    [
        ({"type": "log_rotation", "params": {"mode": "move"}}, "params.mode"),
        ({"type": "log_rotation", "params": {"times": 0}}, "params.times"),
        ({"type": "log_rotation", "params": {"down": "yes"}}, "params.down"),
        ({"type": "crash_loop", "params": {"min_gap": 2.0, "max_gap": 1.0}}, "params.min_gap"),
        ({"type": "server_down", "params": {"backlog_kib": "lots"}}, "params.backlog_kib"),
    ],
)
def test_bad_params_are_one_line_errors_naming_the_field(fault: dict[str, Any], field: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse(scenario(fault), "s.yaml")
    assert f"fault.{field}" in caught.value.message and "\n" not in caught.value.message


def test_split_lines_must_be_a_boolean() -> None:
    with pytest.raises(ScenarioError) as caught:
        parse(scenario({"type": "crash_loop"}, {"rate": 10, "split_lines": "yes"}), "s.yaml")
    assert "feed.split_lines" in caught.value.message
    assert parse(scenario({"type": "crash_loop"}, {"rate": 10, "split_lines": True}), "s.yaml").feed_split_lines


@pytest.mark.parametrize("fault", ["log_rotation", "server_down", "crash_loop"])
def test_an_external_target_skips_them_with_a_reason(fault: str) -> None:
    external = TargetSpec(name="ext", command=[], url="ws://127.0.0.1:9/ws")
    reason = external_skip_reason(parse(scenario({"name": "f", "type": fault}), "s.yaml"), external)
    assert reason == f"fault f ({fault}) needs the target's process: the target is external"


async def test_a_target_without_log_files_is_a_clear_error(tmp_path: Path) -> None:
    spec = TargetSpec(name="web", command=["true"], feed=FeedSpec("http", path="/in"))
    target = Target(spec, tmp_path, History())
    ctx = FaultContext(None, {}, {}, target, History(), random.Random(1), None, None)  # type: ignore[arg-type]
    with pytest.raises(HarnessError, match=r"fault 'rot'.* has no log files .*feed kind is http"):
        feed_files(ctx, "rot")
    fault = LogRotation(FaultSpec("rot", "log_rotation", None, {}))
    with pytest.raises(HarnessError, match="has no log files"):
        await fault.apply(ctx)


def test_crash_loop_and_rotation_act_on_the_whole_target() -> None:
    assert CrashLoop.needs_process and not CrashLoop.needs_cohort
    assert LogRotation.needs_process and not LogRotation.needs_cohort


async def test_split_lines_leave_a_partial_line_during_the_pause_then_finish_it(tmp_path: Path) -> None:
    spec = TargetSpec(name="t", command=["true"], feed=FILES)
    feed = Feed(spec, tmp_path, History(), rate=0, rng=random.Random(5), split_lines=True)
    feed.sink.prepare()  # type: ignore[union-attr]
    sending = asyncio.create_task(feed.emit(6))
    await asyncio.sleep(0)  # the first pieces are written before the pause
    first = (tmp_path / "n1.log").read_text()
    assert first and not first.endswith("\n")
    ids = await sending
    for node in ("n1", "n2"):
        lines = (tmp_path / f"{node}.log").read_text().splitlines()
        assert len(lines) == 3 and all(parse_line(line) is not None for line in lines)
    assert len(ids) == 6


async def test_split_lines_finish_the_line_when_the_feed_stops_in_the_pause(tmp_path: Path) -> None:
    spec = TargetSpec(name="t", command=["true"], feed=FILES)
    history = History()
    feed = Feed(spec, tmp_path, history, rate=0, rng=random.Random(6), split_lines=True)
    feed.sink.prepare()  # type: ignore[union-attr]
    sending = asyncio.create_task(feed.emit(2))
    await asyncio.sleep(0)
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    assert (tmp_path / "n1.log").read_text().endswith("\n")
    assert [r["ids"] for r in history.of("feed")] == [feed.fed]  # what was written is recorded as fed


def test_split_lines_need_a_file_feed(tmp_path: Path) -> None:
    spec = TargetSpec(name="t", command=["true"], feed=FeedSpec("http", url="http://127.0.0.1:9/in"))
    with pytest.raises(FeedError, match=r"feed.split_lines: needs a feed that writes files .* not http"):
        Feed(spec, tmp_path, History(), rate=0, rng=random.Random(1), split_lines=True)


def crash_checks(missing_at: dict[int, int]) -> CheckContext:
    history = History()
    for n in (1, 2, 3):
        missing = missing_at.get(n, 0)
        history.record("crash_check", fault="c", n=n, fed=100 * n, missing=missing, duplicated=0,
                       first_missing=["x"] * missing, first_duplicated=[], waited_s=3.0)  # fmt: skip
    return CheckContext(history=history)


def test_crash_persistence_judges_each_crash() -> None:
    assert check_crash_persistence(crash_checks({}), {}).status == PASS
    verdict = check_crash_persistence(crash_checks({2: 7}), {})
    assert verdict.status == FAIL and verdict.evidence[0]["crash"] == 2
    assert verdict.summary.startswith("1 of 3 crashes lost or doubled ids; first: crash 2: 7 of 200 ids")
    nothing = check_crash_persistence(CheckContext(history=History()), {})
    assert nothing.status == "unknown" and nothing.unknown_reason == NOT_APPLICABLE


async def test_a_rotation_waits_for_the_line_the_feed_is_writing_in_two_pieces(tmp_path: Path) -> None:
    spec = TargetSpec(name="t", command=["true"], feed=FILES)
    feed = Feed(spec, tmp_path, History(), rate=0, rng=random.Random(5), split_lines=True)
    feed.sink.prepare()  # type: ignore[union-attr]
    target = Target(spec, tmp_path, History())
    ctx = FaultContext(None, {}, {}, target, History(), random.Random(1), None, None)  # type: ignore[arg-type]
    sending = asyncio.create_task(feed.emit(6))
    await asyncio.sleep(0)  # each file now ends in half a line
    assert not (tmp_path / "n1.log").read_text().endswith("\n")
    await LogRotation(FaultSpec("rot", "log_rotation", None, {"mode": "rename"})).apply(ctx)
    await sending
    for node in ("n1", "n2"):  # the line was finished in the file it was begun in, then the file moved
        moved = (tmp_path / f"{node}.log.1").read_text()
        assert moved.endswith("\n") and all(parse_line(line) for line in moved.splitlines())
        assert (tmp_path / f"{node}.log").read_text() == ""


async def test_a_backlog_in_bytes_does_not_apply_to_a_target_fed_over_http(tmp_path: Path) -> None:
    spec = TargetSpec(name="web", command=["true"], feed=FeedSpec("http", path="/in"))
    ctx = FaultContext(None, {}, {}, Target(spec, tmp_path, History()), History(), random.Random(1), None, None)  # type: ignore[arg-type]
    fault = ServerDown(FaultSpec("down", "server_down", None, {"backlog_kib": 96, "kill": True}))
    assert fault.backlog_files(ctx) == {}  # the fault is down for down_s only
    files_spec = TargetSpec(name="t", command=["true"], feed=FILES)
    files_ctx = FaultContext(None, {}, {}, Target(files_spec, tmp_path, History()), History(), random.Random(1),
                             None, None)  # type: ignore[arg-type]  # fmt: skip
    assert set(fault.backlog_files(files_ctx)) == {"n1", "n2"}
