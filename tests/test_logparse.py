"""Parsing storagenode log lines, and formatting them back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.logparse import EVENT_KEYS, format_line, parse_line, to_event

TS = "2026-11-25T12:00:00.123Z"
PIECE = "2POFPCQHJXZBX2TDAHKMLFEQHHXDPKBTYJUBFS4ZXOAWDGEEHXUA"
SAT = "12EayRS2V1kEsWESU9QMRseFhdxYxKicsiFmxrsLZHeLUtdps3S"
TRANSFER = {"Piece ID": PIECE, "Satellite ID": SAT, "Remote Address": "203.0.113.7:28967"}


def line(message: str, fields: dict | None = None, level: str = "INFO", component: str = "piecestore") -> str:
    return format_line(TS, level, component, message, fields)


def event(text: str) -> dict:
    parsed = parse_line(text)
    assert parsed is not None, text
    return to_event(parsed, "node1", "node1:1.2:0")


@pytest.mark.parametrize(
    ("message", "action", "extra", "category", "status"),
    [
        ("uploaded", "PUT", {"Size": 2048}, "upload", "success"),
        ("downloaded", "GET", {"Size": 4096}, "download", "success"),
        ("upload started", "PUT", {"Available Space": 10**12}, "upload", "started"),
        ("download started", "GET", {}, "download", "started"),
        ("download canceled", "GET", {"reason": "context canceled"}, "download", "canceled"),
        ("upload canceled", "PUT", {"reason": "context canceled"}, "upload", "canceled"),
        ("upload failed", "PUT", {"error": "unexpected EOF"}, "upload", "failed"),
        ("download failed", "GET", {"error": "file does not exist"}, "download", "failed"),
        ("downloaded", "GET_AUDIT", {"Size": 256}, "audit", "success"),
        ("download failed", "GET_AUDIT", {"error": "file does not exist"}, "audit", "failed"),
        ("downloaded", "GET_REPAIR", {"Size": 512}, "repair", "success"),
        ("uploaded", "PUT_REPAIR", {"Size": 1024}, "repair", "success"),
        ("upload started", "PUT_REPAIR", {}, "repair", "started"),
    ],
)
def test_transfer_messages(message: str, action: str, extra: dict, category: str, status: str) -> None:
    level = "ERROR" if status == "failed" else "INFO"
    ev = event(line(message, {**TRANSFER, "Action": action, **extra}, level=level))
    assert (ev["category"], ev["status"], ev["action"]) == (category, status, action)
    assert (ev["piece_id"], ev["satellite_id"], ev["remote"]) == (PIECE, SAT, "203.0.113.7:28967")
    assert ev["size"] == extra.get("Size")
    assert ev["reason"] == extra.get("reason")
    assert ev["error"] == extra.get("error")
    assert (ev["level"], ev["component"], ev["message"]) == (level, "piecestore", message)


def test_event_has_every_key_and_absent_fields_are_none() -> None:
    ev = event(line("beginning compaction", None, component="hashstore"))
    assert tuple(ev) == EVENT_KEYS
    assert (ev["id"], ev["node"], ev["ts"]) == ("node1:1.2:0", "node1", TS)
    assert (ev["category"], ev["status"]) == ("compaction", "started")
    for key in ("action", "size", "piece_id", "satellite_id", "remote", "reason", "error"):
        assert ev[key] is None


def test_compaction_finished_with_fields() -> None:
    fields = {"satellite": SAT, "store": "s0", "duration": "1.5s"}
    ev = event(line("finished compaction", fields, component="hashstore"))
    assert (ev["category"], ev["status"], ev["satellite_id"]) == ("compaction", "success", None)


@pytest.mark.parametrize(
    ("message", "category", "status"),
    [
        ("upload started", "upload", "started"),
        ("download canceled", "download", "canceled"),
        ("bandwidth usage rolled up", "other", "info"),
    ],
)
def test_category_falls_back_to_the_message(message: str, category: str, status: str) -> None:
    ev = event(line(message, {"Piece ID": PIECE}))
    assert (ev["category"], ev["status"]) == (category, status)


def test_unknown_action_falls_back_to_the_message() -> None:
    ev = event(line("uploaded", {"Action": "PUT_GRACEFUL_EXIT", "Size": 1}))
    assert (ev["action"], ev["category"], ev["status"]) == ("PUT_GRACEFUL_EXIT", "upload", "success")


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r", "\r\r\n"])
def test_line_endings_are_ignored(ending: str) -> None:
    base = line("downloaded", {**TRANSFER, "Action": "GET", "Size": 1})
    assert parse_line(base + ending) == parse_line(base)
    bare = line("beginning compaction", None, component="hashstore")
    assert parse_line(bare + ending) == parse_line(bare)


@pytest.mark.parametrize(
    ("stamp", "normalized"),
    [
        ("2026-11-25T12:00:00Z", "2026-11-25T12:00:00.000Z"),
        ("2026-11-25T12:00:00.5Z", "2026-11-25T12:00:00.500Z"),
        ("2026-11-25T12:00:00.123456789Z", "2026-11-25T12:00:00.123Z"),
        ("2026-11-25T14:00:00.250+02:00", "2026-11-25T12:00:00.250Z"),
    ],
)
def test_timestamps_are_normalized_to_utc_milliseconds(stamp: str, normalized: str) -> None:
    ev = event(format_line(stamp, "INFO", "piecestore", "downloaded", {"Action": "GET"}))
    assert ev["ts"] == normalized


def test_lowercase_level_is_accepted() -> None:
    assert event(line("downloaded", {"Action": "GET"}, level="info"))["level"] == "INFO"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "garbage",
        "not-a-time\tINFO\tpiecestore\tdownloaded\t{}",
        "2026-13-45T12:00:00Z\tINFO\tpiecestore\tdownloaded\t{}",
        "2026-11-25 12:00:00Z\tINFO\tpiecestore\tdownloaded\t{}",
        f"{TS}\tNOTICE\tpiecestore\tdownloaded\t{{}}",
        f'{TS}\tINFO\tpiecestore\tdownloaded\t{{"Piece ID": ',
        f'{TS}\tINFO\tpiecestore\tdownloaded\t{{"Piece ID": "x"}} trailing',
        f"{TS}\tINFO\tpiecestore\tdownloaded\t[1, 2]",
        f'{TS}\tINFO\tpiecestore\tdownloaded\t"text"',
        f"{TS}\tINFO\tpiecestore\tdownloaded\tnull",
        f"{TS}\tINFO\tpiecestore",
        f"{TS}\tINFO\tpiecestore\tdownloaded\t{{}}\textra",
        f"{TS} INFO piecestore downloaded {{}}",
        f"{TS}\tINFO \tpiecestore\tdownloaded\t{{}}",
        f"{TS}\tINFO\t\tdownloaded",
        f"{TS}\tINFO\tpiecestore\t",
        f'{TS}\tINFO\tConfiguration loaded\t{{"Location": "/app/config/config.yaml"}}',
        f"{TS}\tINFO\tpiecestore\tdownloaded\t" + "[" * 100_000,
        "\tgoroutine 1 [running]:",
    ],
)
def test_malformed_lines_are_rejected(text: str) -> None:
    assert parse_line(text) is None


def test_truncated_lines_are_rejected_or_parse_as_a_prefix_form() -> None:
    full = line("downloaded", {**TRANSFER, "Action": "GET", "Size": 123456})
    json_start = full.index("{")
    for cut in range(len(full)):
        parsed = parse_line(full[:cut])
        if cut > json_start:
            assert parsed is None, full[:cut]
        elif parsed is not None:
            assert parsed.fields == {}


@pytest.mark.parametrize("size", [True, "123", -5, 1.5, float("inf"), None, [1]])
def test_odd_sizes_become_none(size: object) -> None:
    assert event(line("downloaded", {"Action": "GET", "Size": size}))["size"] is None


def test_integral_float_size_is_an_int() -> None:
    assert event(line("downloaded", {"Action": "GET", "Size": 2048.0}))["size"] == 2048


def test_non_string_fields_become_none() -> None:
    ev = event(line("downloaded", {"Action": 3, "Piece ID": ["x"], "Remote Address": 1, "error": {}}))
    assert (ev["action"], ev["piece_id"], ev["remote"], ev["error"]) == (None, None, None, None)
    assert ev["category"] == "download"


def test_format_line_has_no_trailing_newline_and_takes_datetimes() -> None:
    when = datetime(2026, 11, 25, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    text = format_line(when, "INFO", "hashstore", "beginning compaction", None)
    assert text == "2026-11-25T12:00:00.123Z\tINFO\thashstore\tbeginning compaction"


def test_format_line_refuses_tabs_and_newlines() -> None:
    with pytest.raises(ValueError):
        format_line(TS, "INFO", "piece\tstore", "downloaded", None)
    with pytest.raises(ValueError):
        format_line(TS, "INFO", "piecestore", "down\nloaded", None)


@given(st.text())
def test_parse_line_never_raises(text: str) -> None:
    parse_line(text)


@given(st.lists(st.sampled_from(["\t", "{", "}", '"', "[", "\\", "2026-11-25T12:00:00Z", "INFO", "x", ":"])))
def test_parse_line_never_raises_on_near_misses(parts: list[str]) -> None:
    parse_line("".join(parts))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
words = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1).filter(lambda s: not s.startswith("{"))


@given(
    when=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    level=st.sampled_from(["DEBUG", "INFO", "WARN", "ERROR"]),
    component=words,
    message=words,
    fields=st.none() | st.dictionaries(st.text(), json_values, max_size=5),
)
def test_format_then_parse_round_trips(
    when: datetime, level: str, component: str, message: str, fields: dict | None
) -> None:
    parsed = parse_line(format_line(when, level, component, message, fields))
    assert parsed is not None
    assert (parsed.level, parsed.component, parsed.message) == (level, component, message)
    assert parsed.fields == (fields or {})
    assert parsed.ts == when.replace(microsecond=when.microsecond // 1000 * 1000)
