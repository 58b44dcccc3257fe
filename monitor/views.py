"""What a client watches: every node (the aggregate view) or a chosen set of nodes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ALL = "all"


class InvalidView(ValueError):
    pass


@dataclass(frozen=True)
class View:
    nodes: frozenset[str] | None = None  # None: the aggregate view

    @classmethod
    def parse(cls, raw: Any, known: Iterable[str]) -> View:
        """Accept ``"all"``, a node name, or a non-empty list of known node names."""
        known_set = set(known)
        if raw == ALL:
            return cls()
        names = [raw] if isinstance(raw, str) else raw
        if not isinstance(names, list) or not names:
            raise InvalidView('a view is "all", a node name, or a non-empty list of node names')
        if not all(isinstance(n, str) for n in names):
            raise InvalidView("node names in a view must be strings")
        unknown = sorted(set(names) - known_set)
        if unknown:
            raise InvalidView(f"unknown node(s) {', '.join(unknown[:5])}; known: {', '.join(sorted(known_set))}")
        return cls(frozenset(names))

    def includes(self, node: str) -> bool:
        return self.nodes is None or node in self.nodes

    def select(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if self.includes(n)]

    def to_json(self) -> str | list[str]:
        return ALL if self.nodes is None else sorted(self.nodes)
