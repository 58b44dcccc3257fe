"""Protocol dialects: how a probe client talks to a target and reads its frames.

A target file names one with ``dialect:`` (a name, or ``{name: ..., <options>}``); without one the
target speaks the monitor's protocol, renamed by its ``messages:`` block. ``make_dialect`` builds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.dialects import centrifugo, jsonframes, monitor, socketio
from harness.dialects.base import (
    DIALECTS,
    ERROR,
    RESUMED,
    RESYNC,
    UNPARSABLE,
    Batch,
    Dialect,
    DialectError,
    Info,
    Notice,
    Position,
    Ready,
    Record,
    Reply,
)
from harness.dialects.monitor import MessageShape, MonitorDialect

__all__ = [
    "DIALECTS",
    "ERROR",
    "RESUMED",
    "RESYNC",
    "UNPARSABLE",
    "Batch",
    "Dialect",
    "DialectError",
    "Info",
    "MessageShape",
    "MonitorDialect",
    "Notice",
    "Position",
    "Ready",
    "Record",
    "Reply",
    "centrifugo",
    "dialect_spec",
    "jsonframes",
    "make_dialect",
    "monitor",
    "socketio",
]  # fmt: skip

DEFAULT = "monitor"


def dialect_spec(raw: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """A target file's ``dialect:`` as ``{"name": ..., **options}``."""
    if raw is None:
        return {"name": DEFAULT}
    if isinstance(raw, str):
        return {"name": raw}
    return {"name": raw.get("name", DEFAULT), **{k: v for k, v in raw.items() if k != "name"}}


def make_dialect(raw: str | Mapping[str, Any] | None = None, messages: Mapping[str, Any] | None = None) -> Dialect:
    """The dialect a target speaks; ``messages`` (a target file's block) are the monitor dialect's options."""
    spec = dialect_spec(raw)
    name = spec.pop("name")
    cls = DIALECTS.get(name)
    if cls is None:
        raise DialectError(f"unknown dialect {name!r} (known: {', '.join(sorted(DIALECTS))})")
    if messages:
        if cls is not MonitorDialect:
            raise DialectError(f"messages: is for the monitor dialect; give dialect {name!r} its options instead")
        spec = {**messages, **spec}
    return cls(**spec)
