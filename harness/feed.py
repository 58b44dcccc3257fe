"""Drive events into the target at a set rate, each with an id the checkers can follow.

Every 20 ms the feed issues ``rate * 0.02`` events (the fraction carried over), round-robin over the
sink's nodes, each with a unique id (``F<run token>-<n>``, or an integer for a field that takes one),
and hands them to the sink of the target's ``feed.kind`` (``harness.feeds``) in batches. Every
delivered batch is one ``feed`` record with its ids and node, at the time it was written; a delivery
the receiver refused is a ``feed_error`` record and the feed goes on. It stops by itself after
``max_events``. A target without a feed gets a Feed that does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.feeds import Event, FeedError, FeedRejected, FileSink, Sink, StoragenodeSink, make_sink
from harness.history import History
from harness.targetspec import TargetSpec
from harness.tasks import stop_tasks

log = logging.getLogger(__name__)

TICK = 0.02
SPLIT_PAUSE = 0.08  # longer than a tailer's poll interval, so it reads the first piece alone
MAX_CATCH_UP = 0.5  # after a stalled event loop, feed at most this many seconds' worth at once
DEFAULT_MAX_EVENTS = 1_000_000

__all__ = ["DEFAULT_MAX_EVENTS", "Feed", "FeedError"]


class Feed:
    """Feeds events to the target's input at ``rate`` a second until stopped or ``max_events``.

    ``placeholders``: the target's ``{host}``, ``{port}``, ``{workdir}``..., for an http feed's path
    and a command feed's argv."""

    def __init__(
        self,
        spec: TargetSpec,
        workdir: Path,
        history: History,
        rate: float,
        rng: random.Random,
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
        placeholders: Mapping[str, Any] | None = None,
        split_lines: bool = False,
    ) -> None:
        self.spec = spec
        self.workdir = Path(workdir)
        self.history = history
        self.rate = _checked_rate(rate)
        self.rng = rng
        self.max_events = max_events
        self.fed: list[str | int] = []
        self.run_token = f"{rng.getrandbits(32):08x}"
        values = {"workdir": self.workdir, **(placeholders or {})}
        self.sink: Sink | None = make_sink(spec.feed, self.workdir, rng, values) if spec.feed is not None else None
        self.files: Mapping[str, Path] = self.sink.files if isinstance(self.sink, FileSink) else {}
        if split_lines:
            if not isinstance(self.sink, FileSink):
                kind = self.sink.kind if self.sink is not None else "none"
                raise FeedError(f"feed.split_lines: needs a feed that writes files (line, storagenode_log), not {kind}")
            self.sink.split = (SPLIT_PAUSE, random.Random(rng.random()))
        self.error: FeedError | None = None
        self.rejected = 0  # events whose delivery failed
        self.first_rejection: str | None = None
        self._nodes = list(self.sink.nodes) if self.sink is not None else []
        self._next_node = 0
        self._issued = 0
        self._owed = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        """False for a target without a feed: then start, write and stop do nothing."""
        return self.sink is not None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def done(self) -> bool:
        """Whether it has issued ``max_events`` and stopped by itself."""
        return self._issued >= self.max_events

    async def start(self) -> None:
        if self.sink is None or self.running:
            return
        self.sink.prepare()
        self._task = asyncio.create_task(self._run(), name="feed")

    def set_rate(self, rate: float) -> None:
        self.rate = _checked_rate(rate)

    async def stop(self) -> None:
        """Stop feeding; raises FeedError if a write had failed, or if no delivery ever succeeded."""
        task, self._task = self._task, None
        failed = await stop_tasks(task) if task is not None else None
        if self.sink is not None:
            await self.sink.close()
        if failed is not None:
            raise failed
        if self.error is not None:
            raise self.error
        if self.rejected and not self.fed:
            kind = self.sink.kind if self.sink is not None else ""
            raise FeedError(f"feed ({kind}): no delivery succeeded, {self.rejected} event(s) refused; "
                            f"first: {self.first_rejection}")  # fmt: skip
        if self.rejected:
            log.warning("feed: %d event(s) refused; first: %s", self.rejected, self.first_rejection)

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
                await self.emit(count)
            except FeedError as exc:
                self.error = exc
                log.error("%s", exc)
                return
        log.info("feed reached max_events=%d and stopped", self.max_events)

    def write(self, count: int) -> list[str | int]:
        """Append ``count`` events now (fewer once ``max_events`` is reached); returns their ids. Only
        for a feed that writes files; others use ``emit``."""
        if self.sink is None:
            return []
        if not isinstance(self.sink, FileSink):
            raise FeedError(f"a {self.sink.kind} feed delivers asynchronously: use emit()")
        written: list[str | int] = []
        for node, events in self._plan(count).items():
            self.sink.write(node, events)
            written += self._delivered(node, events)
        return written

    async def emit(self, count: int) -> list[str | int]:
        """Deliver ``count`` events now, in batches the sink takes; returns the ids delivered."""
        if self.sink is None:
            return []
        delivered: list[str | int] = []
        for node, events in self._plan(count).items():
            size = self.sink.batch or len(events)
            for start in range(0, len(events), size):
                batch = events[start : start + size]
                # Stamped before the send: the target may broadcast an event before its request returns.
                sent = {"t": round(self.history.now(), 6), "w": time.time()}
                try:
                    await self.sink.send(node, batch)
                except FeedRejected as exc:
                    self._refused(node, batch, exc)
                    continue
                except asyncio.CancelledError:
                    if isinstance(self.sink, FileSink):  # it finished writing the batch before it let go
                        self._delivered(node, batch, sent)
                    raise
                delivered += self._delivered(node, batch, sent)
        return delivered

    def _plan(self, count: int) -> dict[str, list[Event]]:
        count = min(count, self.max_events - self._issued)
        per_node: dict[str, list[Event]] = {}
        now = time.time()
        for _ in range(max(count, 0)):
            node = self._nodes[self._next_node % len(self._nodes)]
            self._next_node += 1
            per_node.setdefault(node, []).append(Event(self._make_id(self._issued), self._issued, now, node))
            self._issued += 1
        return per_node

    def _make_id(self, n: int) -> str | int:
        if isinstance(self.sink, StoragenodeSink):
            return self.sink.make_id(self.run_token, n)
        return f"F{self.run_token}-{n:08d}"

    def _delivered(self, node: str, events: list[Event], sent: dict[str, float] | None = None) -> list[str | int]:
        ids = [event.id for event in events]
        self.fed.extend(ids)
        self.history.record("feed", ids=ids, node=node, **(sent or {}))
        return ids

    def _refused(self, node: str, events: list[Event], exc: FeedRejected) -> None:
        if self.first_rejection is None:
            self.first_rejection = exc.message
            log.warning("feed: %s (recorded as feed_error; the feed goes on)", exc.message)
        self.rejected += len(events)
        self.history.record("feed_error", ids=[e.id for e in events], node=node, error=exc.message)


def _checked_rate(rate: float) -> float:
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 <= rate <= 1_000_000:
        raise FeedError(f"feed rate must be a number of events a second, 0 or more; got {rate!r}")
    return float(rate)
