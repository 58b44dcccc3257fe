"""What every kind of feed shares: the event, the errors and the sink interface.

A sink delivers a batch of events for one node. A file sink's failure (the target's input cannot
be written) is fatal, ``FeedError``; a delivery the receiver refused (a connection refused, a wrong
status, a command that failed) is ``FeedRejected``: the feed records it and goes on, since the
target may be down for a moment on purpose.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

_PLACEHOLDER_RE = re.compile(r"\{(id|n|t|node)\}")
WHOLE_LINES_POLL = 0.005
HALF_WRITTEN: dict[Path, int] = {}  # files in which a split send has written a line's first piece only


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
    """A sink that appends to files: synchronous, so ``Feed.write`` can use it directly.

    With ``split`` (a pause and a generator) ``send`` writes a batch in two pieces, cut at a random
    place inside its last line, with the pause between: the reader meets a partial line at its EOF."""

    files: Mapping[str, Path]
    split: tuple[float, random.Random] | None = None

    def prepare(self) -> None:
        for path in self.files.values():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()

    def write(self, node: str, events: list[Event]) -> None:
        self.append(self.path_of(node), self.render(node, events), node)

    def path_of(self, node: str) -> Path:
        raise NotImplementedError

    def render(self, node: str, events: list[Event]) -> list[str]:
        """The lines for ``events``, without their newlines."""
        raise NotImplementedError

    async def send(self, node: str, events: list[Event]) -> None:
        if self.split is None or not events:
            self.write(node, events)
            return
        pause, rng = self.split
        text = "".join(line + "\n" for line in self.render(node, events))
        last_line = text.rfind("\n", 0, len(text) - 1) + 1
        cut = rng.randrange(last_line + 1, len(text) - 1) if len(text) - last_line > 2 else len(text)
        path = self.path_of(node)
        self.append_text(path, text[:cut], node)
        key = path.absolute()
        HALF_WRITTEN[key] = HALF_WRITTEN.get(key, 0) + 1
        try:
            await asyncio.sleep(pause)
        finally:  # also when the feed stops meanwhile: no line is left unfinished
            self.append_text(path, text[cut:], node)
            HALF_WRITTEN[key] -= 1
            if not HALF_WRITTEN[key]:
                del HALF_WRITTEN[key]

    def append(self, path: Path, lines: list[str], node: str) -> None:
        self.append_text(path, "".join(line + "\n" for line in lines), node)

    def append_text(self, path: Path, text: str, node: str) -> None:
        if not text:
            return
        try:
            with path.open("a", encoding="utf-8") as fh:  # opened each time: follows rotation
                fh.write(text)
        except OSError as exc:
            raise FeedError(f"feed: cannot append to {path} (node {node}): {exc.strerror or exc}") from exc


async def whole_lines(paths: list[Path], ceiling: float = 2.0) -> None:
    """Returns once none of ``paths`` ends in a line the feed has half-written (at most ``ceiling`` s).
    A rotation waits for this: a logger writes through its open file, so the second piece of a line
    never lands in another file than the first; a feed that reopens by path would put it there."""
    keys = [path.absolute() for path in paths]
    for _ in range(int(ceiling / WHOLE_LINES_POLL)):
        if not any(key in HALF_WRITTEN for key in keys):
            return
        await asyncio.sleep(WHOLE_LINES_POLL)
