"""The ``line`` feed: one line a event, from a template with {id} {n} {t} {node}, appended to a file
the target tails."""

from __future__ import annotations

from pathlib import Path

from harness.feeds.base import Event, FileSink, render_text
from harness.targetspec import FeedSpec


class LineSink(FileSink):
    kind = "line"

    def __init__(self, spec: FeedSpec, workdir: Path) -> None:
        assert spec.template is not None
        self.files = spec.paths(workdir)
        self.path = self.files["line"]
        self.template = spec.template
        self.nodes = list(spec.nodes)

    def path_of(self, node: str) -> Path:
        return self.path

    def render(self, node: str, events: list[Event]) -> list[str]:
        return [render_text(self.template, event) for event in events]
