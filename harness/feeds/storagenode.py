"""The ``storagenode_log`` feed: storagenode ``uploaded``/``downloaded`` lines appended to the node
log files the target tails. The id goes in the line's ``id_field``: "Piece ID" by default; "Size"
carries it as an integer (for a server that forwards only some fields); any other name adds a field."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.feeds.base import Event, FileSink
from harness.storagenode import format_line
from harness.targetspec import FeedSpec

INTEGER_FIELDS = frozenset({"Size"})
ID_BASE = 10**9  # integer ids: 10 digits, a run's token in the upper ones, the event's number below

# (message, action, weight): mostly customer traffic, some audits and repairs.
TRANSFERS = (
    ("downloaded", "GET", 45),
    ("uploaded", "PUT", 35),
    ("downloaded", "GET_AUDIT", 8),
    ("downloaded", "GET_REPAIR", 6),
    ("uploaded", "PUT_REPAIR", 6),
)
# Public satellite ids (us1, eu1, ap1, saltlake).
SATELLITES = (
    "12EayRS2V1kEsWESU9QMRseFhdxYxKicsiFmxrsLZHeLUtdps3S",
    "12L9ZFwhzVpuEKMUNUqkaTLGzwY9G24tbiigLiXpmZWKwmcNDDs",
    "121RTSDpyNZVcEU84Ticf2L1ntiuUimbWgfATz21tuvgk3vzoA6",
    "1wFTAgs9DP5RSnCqKV1eLf6N9wtk4EAtmN5DpSxcs8EjT69tGE",
)
_WEIGHTS = [weight for *_, weight in TRANSFERS]


class StoragenodeSink(FileSink):
    kind = "storagenode_log"

    def __init__(self, spec: FeedSpec, workdir: Path, rng: random.Random) -> None:
        self.files = spec.paths(workdir)
        self.nodes = list(self.files)
        self.id_field = spec.id_field
        self.rng = rng

    @property
    def integer_ids(self) -> bool:
        return self.id_field in INTEGER_FIELDS

    def make_id(self, token: str, n: int) -> str | int:
        if self.integer_ids:
            return ID_BASE * (1 + int(token, 16) % 9) + n
        return f"F{token}-{n:08d}"

    def path_of(self, node: str) -> Path:
        return self.files[node]

    def render(self, node: str, events: list[Event]) -> list[str]:
        ts = datetime.now(UTC)
        return [self.line(event.id, ts) for event in events]

    def line(self, event_id: str | int, ts: datetime) -> str:
        """A storagenode ``uploaded``/``downloaded`` line for one transfer, the id in ``id_field``."""
        rng = self.rng
        message, action, _ = rng.choices(TRANSFERS, _WEIGHTS)[0]
        fields: dict[str, Any] = {
            "Piece ID": event_id,
            "Satellite ID": rng.choice(SATELLITES),
            "Action": action,
            "Size": rng.choice((2_319_872, 1_048_576, 181_504, 36_864, rng.randrange(512, 2_319_872))),
            "Remote Address": f"203.0.113.{rng.randrange(1, 255)}:{rng.randrange(1024, 65536)}",
        }
        if self.id_field != "Piece ID":
            fields["Piece ID"] = f"P{rng.getrandbits(64):016x}"
            fields[self.id_field] = event_id
        return format_line(ts, "INFO", "piecestore", message, fields)
