"""The README's target file reference documents every field of the target schema, and nothing else;
its worked example is a valid target file."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from harness.targetspec import parse_target

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "harness" / "target.schema.json").read_text(encoding="utf-8"))
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README.split("### Target file reference", 1)[1].split("\n## ", 1)[0]
ROW_RE = re.compile(r"^\| `([a-z_.]+)` \|", re.M)


def schema_fields(node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for name, sub in node.get("properties", {}).items():
        yield prefix + name
        if isinstance(sub, dict):
            yield from schema_fields(sub, f"{prefix}{name}.")


def test_every_schema_field_is_documented_and_every_documented_field_exists() -> None:
    documented = ROW_RE.findall(SECTION)
    assert len(documented) == len(set(documented)), "a field documented twice"
    fields = set(schema_fields(SCHEMA))
    assert sorted(fields - set(documented)) == [], "fields of the schema missing from the README table"
    assert sorted(set(documented) - fields) == [], "README rows naming no field of the schema"


def test_the_worked_example_is_a_valid_target_file() -> None:
    example = README.split("## Testing your own server", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    assert len(example.splitlines()) <= 22
    spec = parse_target(yaml.safe_load(example), "README example")
    assert spec.feed is not None and spec.feed.kind == "http" and spec.feed.batch == 20
