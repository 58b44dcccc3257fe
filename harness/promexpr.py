"""The client registry size read from a target's Prometheus samples (``metrics.clients``).

It names a gauge (``monitor_clients``), a metric with labels (``x{action="add_client"}``: the sum of
every sample whose labels include these), or such terms joined by `` + `` and `` - ``
(``added - removed``): a server whose own gauge is refreshed only now and then usually has counters
of clients added and removed that move at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_TERM = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^{}]*)\})?")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*')

Sample = tuple[str, Mapping[str, str], float]


@dataclass(frozen=True)
class Term:
    sign: int
    name: str
    labels: tuple[tuple[str, str], ...]

    def value(self, samples: Iterable[Sample]) -> float | None:
        # The parser names a counter's samples NAME_total, whether the text says so or not.
        names = {self.name, f"{self.name}_total"}
        found = [v for name, labels, v in samples if name in names and self._matches(labels)]
        return sum(found) if found else None

    def _matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.labels)


def parse_expr(text: str) -> list[Term]:
    """The terms of ``text``; ValueError saying where it is not a sum of metric names."""
    parts = re.split(r"\s+([+-])\s+", text.strip())
    terms, sign = [], 1
    for index, part in enumerate(parts):
        if index % 2:
            sign = 1 if part == "+" else -1
            continue
        match = _TERM.fullmatch(part)
        if match is None:
            raise ValueError(f"{part!r} is not a metric name with optional {{label=\"value\"}}")
        terms.append(Term(sign, match[1], _labels(match[2] or "")))
    return terms


def _labels(text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in filter(str.strip, text.split(",")):
        match = _LABEL.fullmatch(item)
        if match is None:
            raise ValueError(f"{item!r} is not a label matcher name=\"value\"")
        pairs.append((match[1], match[2]))
    return tuple(pairs)


def registry_size(samples: list[Sample], expr: str | None) -> float | None:
    """The value of ``expr`` over ``samples``; None when it is None or any term has no sample."""
    if not expr:
        return None
    total = 0.0
    for term in parse_expr(expr):
        value = term.value(samples)
        if value is None:
            return None
        total += term.sign * value
    return total
