"""The live event stream: batches ingested events, numbers them, keeps a replay buffer, broadcasts.

Every batch gets the next ``seq`` and goes to every client (events filtered to the client's view,
possibly none), so a client can tell a gap from a quiet node. ``epoch`` is new on each start.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from monitor.hub import BroadcastResult, Client, Hub, dumps
from monitor.views import View


@dataclass(frozen=True)
class Batch:
    seq: int
    sent_at: float
    events: list[dict[str, Any]]

    def message(self, view: View) -> dict[str, Any]:
        events = self.events if view.nodes is None else [e for e in self.events if view.includes(e["node"])]
        return {"type": "log_entry_batch", "seq": self.seq, "sent_at": self.sent_at, "events": events}


@dataclass(frozen=True)
class ResumePlan:
    """What a resuming client gets: a ``resumed`` notice and batches, or a ``resync_required``."""

    notice: dict[str, Any]
    batches: list[Batch]


class Stream:
    def __init__(
        self,
        hub: Hub,
        *,
        interval: float = 0.025,
        max_batch: int = 200,
        replay_size: int = 2000,
    ) -> None:
        self.hub = hub
        self.interval = interval
        self.max_batch = max_batch
        self.epoch = f"{int(time.time())}-{uuid.uuid4().hex[:8]}"
        self.seq = 0
        self.replay: deque[Batch] = deque(maxlen=replay_size)
        self.pending: deque[dict[str, Any]] = deque()
        self._task: asyncio.Task[None] | None = None

    def add_events(self, events: list[dict[str, Any]]) -> None:
        """Called by ingest once the events are persisted."""
        self.pending.extend(events)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stream-flusher")

    async def stop(self) -> None:
        """Stop the ticker and broadcast whatever is still pending."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.flush()

    def flush(self) -> BroadcastResult:
        total = BroadcastResult()
        while self.pending:
            count = min(self.max_batch, len(self.pending))
            events = [self.pending.popleft() for _ in range(count)]
            total.add(self.broadcast(events))
        return total

    def broadcast(self, events: list[dict[str, Any]]) -> BroadcastResult:
        self.seq += 1
        batch = Batch(self.seq, time.time(), events)
        self.replay.append(batch)
        result = BroadcastResult()
        for view, clients in self.hub.by_view().items():
            result.add(self.hub.broadcast_text(dumps(batch.message(view)), clients))
        return result

    def plan_resume(self, epoch: Any, since: Any, upto: int) -> ResumePlan:
        """Batches in ``(since, upto]`` from the replay buffer, or why the client must resync."""
        if epoch != self.epoch:
            return self._resync("epoch_changed")
        if not isinstance(since, int) or isinstance(since, bool) or since < 0:
            return self._resync("bad_since")
        if since > upto:
            return self._resync("future_seq")
        oldest = self.replay[0].seq if self.replay else self.seq + 1
        if since + 1 < oldest and since < upto:
            return self._resync("too_old")
        batches = [b for b in self.replay if since < b.seq <= upto]
        if len(batches) > self.hub.queue_size // 2:
            # More than the client's queue could take without evicting it: reloading is cheaper.
            return self._resync("too_far_behind")
        notice = {"type": "resumed", "epoch": self.epoch, "from_seq": since + 1, "to_seq": upto}
        return ResumePlan(notice, batches)

    def _resync(self, reason: str) -> ResumePlan:
        notice = {"type": "resync_required", "reason": reason, "epoch": self.epoch, "seq": self.seq}
        return ResumePlan(notice, [])

    def deliver_resume(self, client: Client, plan: ResumePlan) -> None:
        self.hub.send(client, plan.notice)
        for batch in plan.batches:
            self.hub.send(client, batch.message(client.view))
