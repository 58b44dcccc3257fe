"""Parse storagenode log lines into events, and format them back.

A line is `timestamp<TAB>LEVEL<TAB>component<TAB>message[<TAB>{json fields}]`. Anything else is not
an event: `parse_line` returns None and never raises.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

LEVELS = frozenset({"DEBUG", "INFO", "WARN", "ERROR", "DPANIC", "PANIC", "FATAL"})
EVENT_KEYS = (
    "id", "node", "ts", "level", "component", "message", "category", "status", "action", "size",
    "piece_id", "satellite_id", "remote", "reason", "error",
)  # fmt: skip

_TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})")
_FRACTION_RE = re.compile(r"(\.\d{6})\d+")

_ACTION_CATEGORY = {
    "GET": "download",
    "PUT": "upload",
    "GET_AUDIT": "audit",
    "GET_REPAIR": "repair",
    "PUT_REPAIR": "repair",
}
_MESSAGE_STATUS = {
    "uploaded": "success",
    "downloaded": "success",
    "beginning compaction": "started",
    "finished compaction": "success",
}
_SUFFIX_STATUS = (("started", "started"), ("failed", "failed"), ("canceled", "canceled"))
ACTIONS = frozenset(_ACTION_CATEGORY)


@dataclass(frozen=True)
class ParsedLine:
    ts: datetime
    level: str
    component: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


def parse_line(line: str) -> ParsedLine | None:
    """One storagenode log line, or None when it is not of that form."""
    parts = line.rstrip("\r\n").split("\t")
    if len(parts) not in (4, 5):
        return None
    ts, level, component, message = _parse_ts(parts[0]), parts[1].upper(), parts[2], parts[3]
    # `message.startswith("{")`: a component-less line (`ts LEVEL message {fields}`), not this form.
    if ts is None or level not in LEVELS or not component or not message or message.startswith("{"):
        return None
    fields = _parse_fields(parts[4]) if len(parts) == 5 else {}
    if fields is None:
        return None
    return ParsedLine(ts, level, component, message, fields)


def _parse_ts(text: str) -> datetime | None:
    if not _TS_RE.fullmatch(text):
        return None
    try:
        # fromisoformat takes at most microseconds; zap can print nanoseconds.
        return datetime.fromisoformat(_FRACTION_RE.sub(r"\1", text)).astimezone(UTC)
    except ValueError:
        return None


def _parse_fields(text: str) -> dict[str, Any] | None:
    try:
        fields = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return fields if isinstance(fields, dict) else None


def format_ts(ts: datetime) -> str:
    """UTC, millisecond precision, `Z` suffix: the form storagenode writes."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def format_line(ts: datetime | str, level: str, component: str, message: str, fields: dict[str, Any] | None) -> str:
    """The log line `parse_line` reads back (no trailing newline)."""
    parts = [ts if isinstance(ts, str) else format_ts(ts), level, component, message]
    if any("\t" in p or "\n" in p for p in parts):
        raise ValueError("log line parts must not contain tabs or newlines")
    if fields is not None:
        parts.append(json.dumps(fields, ensure_ascii=False))  # as storagenode writes it: UTF-8
    return "\t".join(parts)


def to_event(parsed: ParsedLine, node: str, event_id: str) -> dict[str, Any]:
    """The event as stored and broadcast; fields the line lacks are None."""
    f = parsed.fields
    action = _str(f.get("Action"))
    return {
        "id": event_id,
        "node": node,
        "ts": format_ts(parsed.ts),
        "level": parsed.level,
        "component": parsed.component,
        "message": parsed.message,
        "category": category_of(action, parsed.message),
        "status": status_of(parsed.message),
        "action": action,
        "size": _size(f.get("Size")),
        "piece_id": _str(f.get("Piece ID")),
        "satellite_id": _str(f.get("Satellite ID")),
        "remote": _str(f.get("Remote Address")),
        "reason": _str(f.get("reason")),
        "error": _str(f.get("error")),
    }


def category_of(action: str | None, message: str) -> str:
    if action in _ACTION_CATEGORY:
        return _ACTION_CATEGORY[action]
    if message.startswith("upload"):
        return "upload"
    if message.startswith("download"):
        return "download"
    if "compaction" in message:
        return "compaction"
    return "other"


def status_of(message: str) -> str:
    if message in _MESSAGE_STATUS:
        return _MESSAGE_STATUS[message]
    for suffix, status in _SUFFIX_STATUS:
        if message.endswith(suffix):
            return status
    return "info"


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _size(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if value >= 0 else None
