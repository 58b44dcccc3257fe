"""The storagenode log line format, as the feed writes it for a ``storagenode_log`` target.

A line is ``timestamp<TAB>LEVEL<TAB>component<TAB>message[<TAB>{json fields}]``: zap's console
encoding, the form storagenode writes and the monitor tails. The timestamp is UTC with millisecond
precision and a ``Z`` suffix; the fields are JSON in UTF-8, not escaped.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def format_ts(ts: datetime) -> str:
    """UTC, millisecond precision, ``Z`` suffix."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def format_line(ts: datetime | str, level: str, component: str, message: str, fields: dict[str, Any] | None) -> str:
    """One log line, without its newline; a part holding a tab or a newline would break the line apart."""
    parts = [ts if isinstance(ts, str) else format_ts(ts), level, component, message]
    if any("\t" in p or "\n" in p for p in parts):
        raise ValueError("log line parts must not contain tabs or newlines")
    if fields is not None:
        parts.append(json.dumps(fields, ensure_ascii=False))
    return "\t".join(parts)
