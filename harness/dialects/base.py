"""What every protocol dialect gives the clients: the records a frame is read into, and the interface.

A dialect is pure Python (no aiohttp, no asyncio): the Locust user imports it under gevent. A client
asks it for the URL to connect to and the messages to send first (both given the epoch and position it
last saw, to resume), and hands it every text frame; ``parse`` answers with small records: events
(``Batch``), the frame that says the stream is ready (``Ready``), notices (resumed, resync_required,
error), texts to send back at once (``Reply``: application-level pings) and known frames of no
interest to the history (``Info``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit, urlunsplit

from harness.errors import HarnessError

RESUMED = "resumed"
RESYNC = "resync_required"
ERROR = "error"
UNPARSABLE = "unparsable"


class DialectError(HarnessError):
    """A dialect name or option a target file cannot use."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a client was in the stream when its connection ended: resume from here."""

    epoch: Any
    seq: int


@dataclass(frozen=True, slots=True)
class Batch:
    """Events that arrived together, with the stream position (seq, offset) they carry, if any."""

    seq: int | None
    ids: list[Any]
    sent_at: float | None = None
    epoch: Any = None


@dataclass(frozen=True, slots=True)
class Ready:
    """The stream is live for this connection (the monitor's init), with its epoch and position."""

    epoch: Any = None
    seq: int | None = None
    nodes: tuple[str, ...] = ()
    view: Any = None  # the view the server says it applied (a node, a list of nodes, "all"), if it says


@dataclass(frozen=True, slots=True)
class Notice:
    type: str
    body: Any = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A text to send back at once (an application-level pong)."""

    text: str


@dataclass(frozen=True, slots=True)
class Info:
    """A known frame the history need not keep (``view_changed``, an Engine.IO open)."""

    type: str


Record = Batch | Ready | Notice | Reply | Info


class Dialect:
    """Base of the dialects: a monitor-like default for everything a subclass leaves alone."""

    name: ClassVar[str]
    options: ClassVar[frozenset[str]] = frozenset()
    # The Locust request name of a received batch (its response time is the delivery latency).
    batch_name: str = "event"
    # False: a reconnected client starts afresh (the server has no way to resume).
    resumes: bool = True
    # True: the handshake alone makes the stream ready (the server sends nothing like an init).
    ready_on_open: bool = False
    # The text a stuck client sends now and then to keep its connection: None for a WebSocket pong.
    heartbeat_text: str | None = None
    # None: the heartbeat may come unasked, as often as the stuck client likes. Else the server's ping
    # period (s): the server wants exactly one answer per ping, sent ``heartbeat_delay`` s after it.
    heartbeat_period: float | None = None
    heartbeat_delay: float = 0.0
    # The close code the server sends every client when it shuts down (the shutdown checker's default).
    shutdown_code: int = 1001
    # What the target's close codes mean, for the history (``close`` records keep the number).
    close_codes: ClassVar[Mapping[int, str]] = {}

    @property
    def id_setting(self) -> tuple[str, str]:
        """Where the target file says which field of an event carries the fed id, and its value now."""
        return ("dialect.event_id", str(getattr(self, "event_id", "id")))

    def connect_url(self, url: str, resume: Position | None) -> str:
        return url

    def opening(self, resume: Position | None) -> list[str]:
        """Texts to send once connected (subscribe, authenticate, resume)."""
        return []

    def parse(self, text: str) -> list[Record]:
        raise NotImplementedError

    def set_view(self, view: Any) -> str | None:
        """The text asking for another view of the stream; None when the dialect has no views."""
        return None

    def view_url(self, url: str, view: Any) -> str | None:
        """``url`` asking for ``view`` (a node or a list of nodes) from the connection's start; None
        when the dialect has no views."""
        return None

    def resume_message(self, position: Position) -> str | None:
        """The text asking, on an open connection, for what came after ``position``; None when the
        dialect has no such message."""
        return None

    def quick_batch(self, data: bytes) -> tuple[int, float] | None:
        """A batch's seq and sent_at read without a JSON parse, when the dialect can (the load users'
        hot path); None to fall back on ``parse``."""
        return None


DIALECTS: dict[str, type[Dialect]] = {}


def register(cls: type[Dialect]) -> type[Dialect]:
    DIALECTS[cls.name] = cls
    return cls


def check_options(name: str, given: Mapping[str, Any], known: frozenset[str]) -> None:
    unknown = sorted(set(given) - known)
    if unknown:
        raise DialectError(f"dialect {name!r}: unknown option(s) {', '.join(unknown)} "
                           f"(known: {', '.join(sorted(known)) or 'none'})")  # fmt: skip


def loads(text: str) -> Any:
    """JSON, or None when the text is not JSON."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def dumps(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def add_query(url: str, query: Mapping[str, str | list[str]]) -> str:
    """``url`` with ``query`` added to (or replacing keys of) its query string; a list value repeats its key."""
    parts = urlsplit(url)
    kept = [p for p in parts.query.split("&") if p and p.split("=", 1)[0] not in query]
    joined = "&".join([*kept, urlencode(dict(query), doseq=True)]) if query else parts.query
    return urlunsplit((parts.scheme, parts.netloc, parts.path, joined, parts.fragment))


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
