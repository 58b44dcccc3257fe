"""Fields inside decoded JSON, named by a dotted path (``data.items.0.id``) or a JSON pointer
(``/data/items/0/id``)."""

from __future__ import annotations

from typing import Any


def split_path(path: str) -> list[str]:
    if path.startswith("/"):
        return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]
    return path.split(".") if path else []


def get_path(value: Any, path: str | None) -> Any:
    """The value at ``path`` (None when any step is missing; an empty path is the value itself)."""
    if path is None:
        return None
    for part in split_path(path):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value
