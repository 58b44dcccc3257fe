"""A configurable dialect for plain JSON servers: where the fields are and which types mean what.

Options (every path is dotted, ``data.items``, or a JSON pointer, ``/data/items``):

- ``type``: the type field (default ``type``; null: frames carry no type);
- ``event_types``, ``init_types``, ``resync_types``, ``notice_types``: type values of events, of the
  frame that makes the stream ready (none: ready once connected), of "you must resync", and of other
  notices recorded under their own name (``resumed``, ``error``). Without event types, any frame that
  is not one of the others is an event frame;
- ``events``: the list of events in a frame, or a single event (null: the frame is the event);
- ``id``: the event id inside an event (default ``id``);
- ``seq``, ``epoch``, ``sent_at``: in the frame (null: the server has none); ``per_event: true`` reads
  them inside each event instead;
- ``subscribe``: messages (text or JSON) sent on every connect;
- ``resume``: ``{query: {epoch: NAME, since: NAME}}`` (URL query parameters) or ``{message: ...}``
  sent after the subscribe messages; ``{epoch}`` and ``{since}`` in a message are the last epoch and
  seq seen (a string that is exactly a placeholder takes the value with its JSON type);
- ``ping``: ``{match: TEXT or {path: value}, reply: TEXT or JSON}``, an application-level ping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from harness.dialects.base import (
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
    add_query,
    check_options,
    dumps,
    integer,
    loads,
    number,
    register,
)
from harness.dialects.paths import get_path

_PLACEHOLDER = re.compile(r"\{(epoch|since)\}")
_KNOWN = frozenset({
    "type", "event_types", "init_types", "resync_types", "notice_types", "events", "id", "seq", "epoch",
    "sent_at", "per_event", "subscribe", "resume", "ping",
})  # fmt: skip


def fill(template: Any, values: Mapping[str, Any]) -> Any:
    """``template`` with ``{epoch}`` and ``{since}`` replaced, inside strings, lists and objects."""
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole:
            return values[whole[1]]
        return _PLACEHOLDER.sub(lambda m: str(values[m[1]]), template)
    if isinstance(template, list):
        return [fill(v, values) for v in template]
    if isinstance(template, dict):
        return {k: fill(v, values) for k, v in template.items()}
    return template


@register
class JsonDialect(Dialect):
    name = "json"
    options = _KNOWN

    def __init__(self, **options: Any) -> None:
        check_options(self.name, options, self.options)
        get = options.get
        self.type_path: str | None = get("type", "type")
        self.event_types = frozenset(get("event_types") or ())
        self.init_types = frozenset(get("init_types") or ())
        self.resync_types = frozenset(get("resync_types") or ())
        self.notice_types = frozenset(get("notice_types") or ())
        self.events: str | None = get("events")
        self.id: str = get("id", "id")
        self.event_id = self.id
        self.seq: str | None = get("seq", "seq")
        self.epoch: str | None = get("epoch", "epoch")
        self.sent_at: str | None = get("sent_at", "sent_at")
        self.per_event = bool(get("per_event", False))
        self.subscribe: list[Any] = list(get("subscribe") or [])
        self.resume: dict[str, Any] = dict(get("resume") or {})
        self.ping: dict[str, Any] | None = get("ping")
        self.ready_on_open = not self.init_types
        self.resumes = bool(self.resume)
        if self.ping is not None and ("match" not in self.ping or "reply" not in self.ping):
            raise DialectError("dialect 'json': ping needs both match and reply")
        self.heartbeat_text = None if self.ping is None else dumps(self.ping["reply"])

    def connect_url(self, url: str, resume: Position | None) -> str:
        query = self.resume.get("query")
        if resume is None or not isinstance(query, dict):
            return url
        values = {"epoch": resume.epoch, "since": resume.seq}
        return add_query(url, {name: str(values[key]) for key, name in query.items() if key in values})

    def opening(self, resume: Position | None) -> list[str]:
        texts = [dumps(m) for m in self.subscribe]
        message = self.resume.get("message")
        if resume is not None and message is not None:
            texts.append(dumps(fill(message, {"epoch": resume.epoch, "since": resume.seq})))
        return texts

    def resume_message(self, position: Position) -> str | None:
        message = self.resume.get("message")
        return None if message is None else dumps(fill(message, {"epoch": position.epoch, "since": position.seq}))

    def parse(self, text: str) -> list[Record]:
        if self.ping is not None and isinstance(self.ping["match"], str) and text == self.ping["match"]:
            return [Reply(self.heartbeat_text or "")]
        msg = loads(text)
        if msg is None:
            return [Notice(UNPARSABLE, text[:200])]
        if self._is_ping(msg):
            return [Reply(self.heartbeat_text or "")]
        kind = get_path(msg, self.type_path) if self.type_path else None
        if kind is not None and kind in self.init_types:
            return [Ready(get_path(msg, self.epoch), integer(get_path(msg, self.seq)))]
        if kind is not None and kind in self.resync_types:
            return [Notice(RESYNC, msg)]
        if kind is not None and kind in self.notice_types:
            return [Notice(str(kind), msg)]
        if self.event_types and kind not in self.event_types:
            return [Info(str(kind))]
        return self._batches(msg)

    def _is_ping(self, msg: Any) -> bool:
        match = None if self.ping is None else self.ping["match"]
        return isinstance(match, dict) and all(get_path(msg, p) == v for p, v in match.items())

    def _batches(self, msg: Any) -> list[Record]:
        found = msg if self.events is None else get_path(msg, self.events)
        if found is None:
            return [Info("no events")]
        events = found if isinstance(found, list) else [found]
        if self.per_event:
            return [self._batch([e], e) for e in events]
        return [self._batch(events, msg)]

    def _batch(self, events: list[Any], holder: Any) -> Batch:
        ids = [get_path(e, self.id) for e in events]
        return Batch(
            integer(get_path(holder, self.seq)),
            ids,
            number(get_path(holder, self.sent_at)),
            get_path(holder, self.epoch),
        )
