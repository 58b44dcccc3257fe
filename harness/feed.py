"""Drive events into the target at a set rate, each with an id the checkers can follow.

For a ``storagenode_log`` feed, events are storagenode log lines appended to the node files the
target tails, round-robin, every 20 ms (``rate * 0.02`` lines a tick, the fraction carried over).
Each line's "Piece ID" is a unique id ``F<run token>-<n>``; every write is one ``feed`` record with
the ids written and the node. A target without a feed gets a Feed that does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.history import History
from harness.storagenode import format_line
from harness.targetspec import TargetSpec

log = logging.getLogger(__name__)

TICK = 0.02
MAX_CATCH_UP = 0.5  # after a stalled event loop, feed at most this many seconds' worth at once
DEFAULT_MAX_EVENTS = 1_000_000

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


class FeedError(HarnessError):
    """The feed could not write to the target's input."""


class Feed:
    """Appends events to the target's input at ``rate`` a second until stopped or ``max_events``."""

    def __init__(
        self,
        spec: TargetSpec,
        workdir: Path,
        history: History,
        rate: float,
        rng: random.Random,
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        self.spec = spec
        self.workdir = Path(workdir)
        self.history = history
        self.rate = _checked_rate(rate)
        self.rng = rng
        self.max_events = max_events
        self.fed: list[str] = []
        self.files: dict[str, Path] = spec.feed.paths(self.workdir) if spec.feed is not None else {}
        self.run_token = f"{rng.getrandbits(32):08x}"
        self.error: FeedError | None = None
        self._nodes = list(self.files)
        self._next_node = 0
        self._issued = 0
        self._owed = 0.0
        self._task: asyncio.Task[None] | None = None
        self._weights = [weight for *_, weight in TRANSFERS]

    @property
    def enabled(self) -> bool:
        """False for a target without a feed: then start, write and stop do nothing."""
        return bool(self.files)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def done(self) -> bool:
        """Whether it has fed ``max_events`` and stopped by itself."""
        return len(self.fed) >= self.max_events

    async def start(self) -> None:
        if not self.enabled or self.running:
            return
        for path in self.files.values():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        self._task = asyncio.create_task(self._run(), name="feed")

    def set_rate(self, rate: float) -> None:
        self.rate = _checked_rate(rate)

    async def stop(self) -> None:
        """Stop feeding; raises FeedError if a write had failed."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.error is not None:
            raise self.error

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not self.done:
            await asyncio.sleep(TICK)
            now = loop.time()
            self._owed += self.rate * min(now - last, MAX_CATCH_UP)
            last = now
            count = int(self._owed)
            self._owed -= count
            try:
                self.write(count)
            except FeedError as exc:
                self.error = exc
                log.error("%s", exc)
                return
        log.info("feed reached max_events=%d and stopped", self.max_events)

    def write(self, count: int) -> list[str]:
        """Append ``count`` events now (fewer once ``max_events`` is reached); returns their ids."""
        count = min(count, self.max_events - len(self.fed))
        if count <= 0 or not self.enabled:
            return []
        ts = datetime.now(UTC)
        per_node: dict[str, list[tuple[str, str]]] = {}
        for _ in range(count):
            node = self._nodes[self._next_node % len(self._nodes)]
            self._next_node += 1
            piece_id = f"F{self.run_token}-{self._issued:08d}"
            self._issued += 1
            per_node.setdefault(node, []).append((piece_id, self.line(piece_id, ts)))
        written: list[str] = []
        for node, items in per_node.items():
            written += self._append(node, items)
        return written

    def _append(self, node: str, items: list[tuple[str, str]]) -> list[str]:
        path = self.files[node]
        try:
            with path.open("a", encoding="utf-8") as fh:  # opened each time: follows rotation
                fh.write("".join(line + "\n" for _, line in items))
        except OSError as exc:
            raise FeedError(f"feed: cannot append to {path} (node {node}): {exc.strerror or exc}") from exc
        ids = [piece_id for piece_id, _ in items]
        self.fed.extend(ids)
        self.history.record("feed", ids=ids, node=node)
        return ids

    def line(self, piece_id: str, ts: datetime) -> str:
        """A storagenode ``uploaded``/``downloaded`` line for one transfer."""
        rng = self.rng
        message, action, _ = rng.choices(TRANSFERS, self._weights)[0]
        fields: dict[str, Any] = {
            "Piece ID": piece_id,
            "Satellite ID": rng.choice(SATELLITES),
            "Action": action,
            "Size": rng.choice((2_319_872, 1_048_576, 181_504, 36_864, rng.randrange(512, 2_319_872))),
            "Remote Address": f"203.0.113.{rng.randrange(1, 255)}:{rng.randrange(1024, 65536)}",
        }
        return format_line(ts, "INFO", "piecestore", message, fields)


def _checked_rate(rate: float) -> float:
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 <= rate <= 1_000_000:
        raise FeedError(f"feed rate must be a number of events a second, 0 or more; got {rate!r}")
    return float(rate)
