"""Type checks for fault params and checker options: a value must have the kind of its default, so
``share: most``, ``cycles: "3"`` or ``rst: "no"`` are errors that name the field, not a crash mid-run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Unset:
    """A default meaning "not set" that still has a kind: the option is None unless given, and when
    given it must be of the kind of ``example``."""

    example: Any


NO_NUMBER = Unset(0.0)
NO_LIST = Unset([])


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean (true or false)"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def type_problem(value: Any, default: Any) -> str | None:
    """Why ``value`` cannot stand where ``default`` is the default, or None when it can. A default
    of None (no default, or optional) accepts anything; a number default accepts any number (not a
    boolean), an integer default only integers."""
    if isinstance(default, Unset):
        default = default.example
    if default is None or value is None:
        return None
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list | tuple):
        ok = isinstance(value, list | tuple)
    elif isinstance(default, dict):
        ok = isinstance(value, dict)
    else:
        ok = True
    return None if ok else f"must be {kind(default)}, got {value!r}"
