"""The feed: storagenode lines with unique ids, written round-robin to the target's node files at a
set rate, bounded, each write recorded in the history; the monitor's parser reads every line."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.feed import Feed, FeedError
from harness.history import History
from harness.storagenode import format_line
from harness.targetspec import FeedSpec, TargetSpec
from monitor.logparse import ACTIONS, parse_line

FEED = FeedSpec("storagenode_log", {"n1": "{workdir}/logs/n1.log", "n2": "{workdir}/logs/n2.log"})


def spec(feed: FeedSpec | None = FEED) -> TargetSpec:
    return TargetSpec(name="t", command=["true"], feed=feed)


async def stopped_by_itself(feed: Feed, within: float = 5.0) -> bool:
    for _ in range(int(within / 0.02)):
        if not feed.running:
            return True
        await asyncio.sleep(0.02)
    return False


def lines_of(feed: Feed) -> dict[str, list[str]]:
    return {node: path.read_text(encoding="utf-8").splitlines() for node, path in feed.files.items()}


async def test_written_lines_parse_with_unique_ids_round_robin(tmp_path: Path) -> None:
    history = History()
    feed = Feed(spec(), tmp_path, history, rate=0, rng=random.Random(1))
    await feed.start()  # creates the node files; at rate 0 only write() adds lines
    ids = feed.write(5) + feed.write(6)
    await feed.stop()
    assert len(ids) == len(set(ids)) == 11 == len(feed.fed)
    assert all(i.startswith(f"F{feed.run_token}-") for i in ids)
    written = lines_of(feed)
    assert [len(written["n1"]), len(written["n2"])] == [6, 5]
    seen = []
    for line in written["n1"] + written["n2"]:
        parsed = parse_line(line)
        assert parsed is not None, line
        assert (parsed.level, parsed.component, parsed.message) in {("INFO", "piecestore", m)
                                                                    for m in ("uploaded", "downloaded")}  # fmt: skip
        assert parsed.fields["Action"] in ACTIONS and parsed.fields["Size"] > 0
        assert abs((datetime.now(UTC) - parsed.ts).total_seconds()) < 60
        seen.append(parsed.fields["Piece ID"])
    assert sorted(seen) == sorted(ids)
    recorded = [(r["node"], r["ids"]) for r in history.of("feed")]
    assert sorted(i for _, batch in recorded for i in batch) == sorted(ids)
    assert {node for node, _ in recorded} == {"n1", "n2"}


def test_a_formatted_line_round_trips_through_the_monitors_parser() -> None:
    ts = datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC)
    fields = {"Piece ID": "F0-1", "Size": 512, "Remote Address": "203.0.113.9:4000", "note": "ünïcode"}
    line = format_line(ts, "INFO", "piecestore", "uploaded", fields)
    assert line.split("\t")[0] == "2026-01-02T03:04:05.678Z" and "ünïcode" in line
    parsed = parse_line(line)
    assert parsed is not None
    assert parsed.ts == ts.replace(microsecond=678_000) and parsed.fields == fields
    assert parse_line(format_line("2026-01-02T03:04:05.000Z", "WARN", "pieces", "no fields", None)) is not None
    with pytest.raises(ValueError, match="tabs or newlines"):
        format_line(ts, "INFO", "piecestore", "two\nlines", None)


async def test_feeds_at_the_set_rate_until_stopped(tmp_path: Path) -> None:
    rate = 200.0
    feed = Feed(spec(), tmp_path, History(), rate=rate, rng=random.Random(2))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await feed.start()
    await asyncio.sleep(1.0)
    await feed.stop()
    elapsed = loop.time() - started
    count = len(feed.fed)
    assert count <= rate * elapsed + 1, f"{count} events in {elapsed:.2f}s"
    assert count >= 0.5 * rate * 1.0, f"only {count} events in {elapsed:.2f}s"  # lenient: a busy machine
    assert not feed.running and sum(len(v) for v in lines_of(feed).values()) == count
    await asyncio.sleep(0.1)
    assert len(feed.fed) == count  # nothing after stop


async def test_stops_by_itself_at_max_events(tmp_path: Path) -> None:
    feed = Feed(spec(), tmp_path, History(), rate=5000, rng=random.Random(3), max_events=40)
    await feed.start()
    assert await stopped_by_itself(feed)
    assert feed.done and len(feed.fed) == 40 and len(set(feed.fed)) == 40
    assert feed.write(10) == []
    await feed.stop()
    assert sum(len(v) for v in lines_of(feed).values()) == 40


async def test_rate_zero_writes_nothing_and_a_bad_rate_is_refused(tmp_path: Path) -> None:
    feed = Feed(spec(), tmp_path, History(), rate=0, rng=random.Random(4))
    await feed.start()
    await asyncio.sleep(0.2)
    await feed.stop()
    assert feed.fed == [] and lines_of(feed) == {"n1": [], "n2": []}
    for bad in (-1, True, "fast", 2_000_000):
        with pytest.raises(FeedError, match="feed rate"):
            feed.set_rate(bad)  # type: ignore[arg-type]


async def test_a_target_without_a_feed_gets_one_that_does_nothing(tmp_path: Path) -> None:
    feed = Feed(spec(feed=None), tmp_path, History(), rate=100, rng=random.Random(5))
    await feed.start()
    assert not feed.enabled and not feed.running and feed.write(3) == []
    await feed.stop()
    assert list(tmp_path.iterdir()) == []


async def test_a_failed_write_stops_the_feed_and_is_raised_at_stop(tmp_path: Path) -> None:
    feed = Feed(spec(), tmp_path, History(), rate=500, rng=random.Random(6))
    await feed.start()
    feed.files["n1"].unlink()
    feed.files["n1"].mkdir()  # appending to a directory fails
    assert await stopped_by_itself(feed)
    with pytest.raises(FeedError, match=r"cannot append to .*n1\.log \(node n1\)"):
        await feed.stop()
