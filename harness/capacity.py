"""A target's measured capacity, stored per target, and feed rates given as a share of it.

``wschaos calibrate`` measures the highest feed rate a target delivers in full to a crowd of probe
clients without faults (``harness.calibrate``) and stores it here, in a small JSON file (by default
``runs/capacity.json``) keyed by the target's name and a hash of its target file: an edited target
file needs a new calibration. A scenario's ``feed.rate`` may then be a share of it (``"50%"``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.targetspec import TargetSpec

SCHEMA = "wschaos.capacity/1"
DEFAULT_CAPACITY_FILE = Path("runs") / "capacity.json"


class CapacityError(HarnessError):
    """No capacity stored for a target whose scenario asks for a share of it, or an unreadable store."""


@dataclass
class Capacity:
    """One calibration: the highest rate that held, and under what it was measured."""

    target: str
    target_file: str | None
    target_sha256: str
    rate: float  # events a second
    clients: int
    p99_ms: float
    date: str  # UTC, ISO 8601
    cpu_count: int
    failed_rate: float | None = None  # the lowest rate that did not hold, if one was tried
    steps: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FeedRate:
    """A scenario's feed rate once resolved: events a second, and where it came from."""

    rate: float
    share: float | None = None  # the percentage asked for, when the scenario gave one
    capacity: float | None = None
    capacity_key: str | None = None

    def to_record(self) -> dict[str, Any]:
        return {"rate": self.rate, "share_percent": self.share, "capacity": self.capacity, "key": self.capacity_key}


def target_digest(spec: TargetSpec) -> str:
    """SHA-256 of the target file (of the spec itself for a target built in code)."""
    if spec.path is not None and spec.path.is_file():
        return hashlib.sha256(spec.path.read_bytes()).hexdigest()
    return hashlib.sha256(json.dumps(asdict(spec), sort_keys=True, default=str).encode()).hexdigest()


def target_key(spec: TargetSpec) -> str:
    return f"{spec.name}@{target_digest(spec)[:12]}"


def read_store(path: Path) -> dict[str, Any]:
    """Every stored capacity by key; an absent file holds none."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CapacityError(f"cannot read the capacity file {path}: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("targets"), dict):
        raise CapacityError(f"{path} is not a capacity file (expected {{'schema': {SCHEMA!r}, 'targets': {{...}}}})")
    return raw["targets"]


def store(path: Path, spec: TargetSpec, capacity: Capacity) -> str:
    """Add or replace this target's entry, keeping the others; returns its key."""
    targets = read_store(path)
    key = target_key(spec)
    targets[key] = capacity.to_json()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"schema": SCHEMA, "targets": targets}, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return key


def lookup(path: Path, spec: TargetSpec) -> Capacity | None:
    entry = read_store(path).get(target_key(spec))
    return Capacity(**entry) if isinstance(entry, dict) else None


def parse_share(rate: float | str) -> float | None:
    """The percentage of ``"50%"``; None for a plain number of events a second."""
    if isinstance(rate, str):
        return float(rate.strip().removesuffix("%"))
    return None


def resolve_feed_rate(rate: float | str, spec: TargetSpec, capacity_file: Path, scenario: str = "") -> FeedRate:
    """``rate`` in events a second: a number as it is, a share from the target's stored capacity."""
    share = parse_share(rate)
    if share is None:
        return FeedRate(float(rate))
    capacity = lookup(capacity_file, spec)
    if capacity is None:
        raise CapacityError(_missing(rate, spec, capacity_file, scenario))
    return FeedRate(round(capacity.rate * share / 100.0, 3), share, capacity.rate, target_key(spec))


def _missing(rate: float | str, spec: TargetSpec, capacity_file: Path, scenario: str) -> str:
    where = f"scenario {scenario}: " if scenario else ""
    others = [k for k in read_store(capacity_file) if k.split("@")[0] == spec.name]
    why = "its target file changed since it was calibrated" if others else f"{capacity_file} holds none for it"
    command = f"wschaos calibrate --target {_relative(spec.path) if spec.path is not None else 'FILE'}"
    if Path(capacity_file).resolve() != DEFAULT_CAPACITY_FILE.resolve():
        command += f" --capacity {capacity_file}"
    return f"{where}feed rate {rate} is a share of {spec.name}'s capacity, and {why}: run `{command}` first"


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
