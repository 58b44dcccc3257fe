"""The monitor's dialect: ``init``, ``log_entry_batch {seq, sent_at, events}``, ``resumed``,
``resync_required``; a client resumes by reconnecting with ``?epoch=E&since=S`` or by a ``resume``
request, and asks for a view with ``?view=NODE`` (repeated for several nodes), which the init confirms.

A target file's ``messages:`` block renames the types and fields (``MessageShape``), so a server that
speaks the same protocol under other names needs nothing more.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from typing import Any

from harness.dialects.base import (
    UNPARSABLE,
    Batch,
    Dialect,
    Info,
    Notice,
    Position,
    Ready,
    Record,
    add_query,
    check_options,
    integer,
    register,
)


@dataclass(frozen=True)
class MessageShape:
    """How to read a target's messages: which types and fields carry the init, batches and notices."""

    init_type: str = "init"
    batch_type: str = "log_entry_batch"
    seq: str = "seq"
    events: str | None = "events"  # None: a batch message is itself one event
    event_id: str = "piece_id"
    sent_at: str = "sent_at"
    epoch: str = "epoch"
    view: str = "view"  # in the init: the view the server applied
    notice_types: tuple[str, ...] = ("resumed", "resync_required", "error")
    resume_query: bool = True  # reconnect with ?epoch=E&since=S
    type_key: str = "type"


SHAPE_KEYS = frozenset(f.name for f in fields(MessageShape))


@register
class MonitorDialect(Dialect):
    name = "monitor"
    options = SHAPE_KEYS

    def __init__(self, shape: MessageShape | None = None, **options: Any) -> None:
        check_options(self.name, options, self.options)
        if "notice_types" in options:
            options["notice_types"] = tuple(options["notice_types"])
        self.shape = shape or MessageShape(**options)
        self.batch_name = self.shape.batch_type
        self.resumes = self.shape.resume_query
        self._prefix = _batch_prefix(self.shape)

    @property
    def id_setting(self) -> tuple[str, str]:
        return ("messages.event_id", self.shape.event_id)

    def connect_url(self, url: str, resume: Position | None) -> str:
        if resume is None or not self.resumes:
            return url
        return add_query(url, {"epoch": str(resume.epoch), "since": str(resume.seq)})

    def parse(self, text: str) -> list[Record]:
        try:
            msg = json.loads(text)
        except ValueError:
            return [Notice(UNPARSABLE, text[:200])]
        if not isinstance(msg, dict):
            return []
        shape = self.shape
        kind = msg.get(shape.type_key)
        if kind == shape.batch_type:
            return [self._batch(msg)]
        if kind == shape.init_type:
            nodes = msg.get("nodes")
            names = tuple(n for n in nodes if isinstance(n, str)) if isinstance(nodes, list) else ()
            return [Ready(msg.get(shape.epoch), integer(msg.get(shape.seq)), names, msg.get(shape.view))]
        if kind in shape.notice_types:
            return [Notice(kind, msg)]
        return [Info(kind)] if isinstance(kind, str) else []

    def _batch(self, msg: dict[str, Any]) -> Batch:
        shape = self.shape
        events = msg.get(shape.events) if shape.events is not None else [msg]
        key = shape.event_id
        ids = [e.get(key) for e in events if isinstance(e, dict)] if isinstance(events, list) else []
        # The seq and sent_at are recorded as sent: a checker judges a wrong one.
        return Batch(msg.get(shape.seq), ids, msg.get(shape.sent_at))

    def set_view(self, view: Any) -> str | None:
        return json.dumps({"type": "set_view", "view": view})

    def view_url(self, url: str, view: Any) -> str | None:
        return add_query(url, {"view": view if isinstance(view, str) else [str(v) for v in view]})

    def resume_message(self, position: Position) -> str | None:
        return json.dumps({self.shape.type_key: "resume", "epoch": position.epoch, "since": position.seq})

    def quick_batch(self, data: bytes) -> tuple[int, float] | None:
        fast = self._prefix.match(data)
        return None if fast is None else (int(fast[1]), float(fast[2]))


def _batch_prefix(shape: MessageShape) -> re.Pattern[bytes]:
    """The start of a compact batch as the monitor writes it: its seq and sent_at."""
    key = (lambda name: re.escape(json.dumps(name, separators=(",", ":")).encode()))  # noqa: E731
    return re.compile(
        rb"\{" + key(shape.type_key) + rb":" + key(shape.batch_type) + rb"," + key(shape.seq)
        + rb":(\d+)," + key(shape.sent_at) + rb":(-?[0-9.]+(?:[eE][-+]?\d+)?)[,}]"
    )  # fmt: skip
