"""What every kind of feed shares: the event, the errors and the sink interface.

A sink delivers a batch of events for one node. A file sink's failure (the target's input cannot
be written) is fatal, ``FeedError``; a delivery the receiver refused (a connection refused, a wrong
status, a command that failed) is ``FeedRejected``: the feed records it and goes on, since the
target may be down for a moment on purpose.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

_PLACEHOLDER_RE = re.compile(r"\{(id|n|t|node)\}")


class FeedError(HarnessError):
    """The feed could not write to the target's input."""


class FeedRejected(FeedError):
    """One delivery failed; the feed records it and goes on."""


@dataclass(frozen=True)
class Event:
    id: str | int
    n: int  # the how-manieth event of the run, from 0
    t: float  # Unix time of the write, seconds
    node: str

    def values(self) -> dict[str, Any]:
        return {"id": self.id, "n": self.n, "t": round(self.t, 6), "node": self.node}

    def json_line(self) -> str:
        return json.dumps(self.values(), separators=(",", ":"))


def render_text(template: str, event: Event) -> str:
    """``template`` with {id} {n} {t} {node} replaced; other braces stay as written."""
    values = event.values()
    return _PLACEHOLDER_RE.sub(lambda m: str(values[m[1]]), template)


def render_json(template: Any, event: Event) -> Any:
    """A JSON template with its strings rendered; a string that is one placeholder alone takes the
    value's own type (``"{n}"`` gives a number)."""
    if isinstance(template, str):
        whole = _PLACEHOLDER_RE.fullmatch(template)
        return event.values()[whole[1]] if whole else render_text(template, event)
    if isinstance(template, dict):
        return {key: render_json(value, event) for key, value in template.items()}
    if isinstance(template, list):
        return [render_json(item, event) for item in template]
    return template


class Sink:
    """Delivers events. ``batch``: most events a ``send`` takes (None: any number)."""

    kind = ""
    batch: int | None = None
    nodes: list[str]

    def prepare(self) -> None:
        """Before the first send (create files)."""

    async def send(self, node: str, events: list[Event]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Release what the sink holds; safe to call twice."""


class FileSink(Sink):
    """A sink that appends to files: synchronous, so ``Feed.write`` can use it directly."""

    files: Mapping[str, Path]

    def prepare(self) -> None:
        for path in self.files.values():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()

    def write(self, node: str, events: list[Event]) -> None:
        raise NotImplementedError

    async def send(self, node: str, events: list[Event]) -> None:
        self.write(node, events)

    def append(self, path: Path, lines: list[str], node: str) -> None:
        try:
            with path.open("a", encoding="utf-8") as fh:  # opened each time: follows rotation
                fh.write("".join(line + "\n" for line in lines))
        except OSError as exc:
            raise FeedError(f"feed: cannot append to {path} (node {node}): {exc.strerror or exc}") from exc
