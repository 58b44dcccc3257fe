"""A replay byte budget per client address: reconnecting with ``resume`` again and again must not
let one client pull replayed history faster than ``--replay-budget`` bytes a second. Over budget,
the client is told to resync (reload), which costs the monitor almost nothing."""

from __future__ import annotations

import logging
import time

from monitor.hub import Client, Hub, dumps
from monitor.stream import ResumePlan, Stream

log = logging.getLogger("monitor.replay")

MAX_ADDRESSES = 10_000


class ReplayBudget:
    """A token bucket of bytes per address; ``rate`` 0 means unlimited."""

    def __init__(self, rate: int, burst_seconds: float = 4.0) -> None:
        self.rate = rate
        self.burst = rate * burst_seconds
        self.buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, at)
        self.refused = 0

    def take(self, address: str, size: int) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        tokens, at = self.buckets.get(address, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        allowed = tokens >= size
        if allowed:
            tokens -= size
        if len(self.buckets) >= MAX_ADDRESSES and address not in self.buckets:
            self.buckets.clear()  # a full bucket per address is the start state anyway
        self.buckets[address] = (tokens, now)
        if not allowed:
            self.refused += 1
        return allowed


def deliver(stream: Stream, hub: Hub, client: Client, plan: ResumePlan, budget: ReplayBudget | None) -> None:
    """Send a resume plan, or a ``resync_required`` if its replay is over the client's budget."""
    if budget is None or not plan.batches:
        stream.deliver_resume(client, plan)
        return
    messages = [dumps(batch.message(client.view)) for batch in plan.batches]
    if not budget.take(client.remote, sum(map(len, messages))):
        log.debug("client %d (%s): replay over budget, asked to resync", client.id, client.remote)
        notice = {"type": "resync_required", "reason": "replay_rate_limited", "epoch": stream.epoch, "seq": stream.seq}
        hub.send(client, notice)
        return
    hub.send(client, plan.notice)
    for data in messages:
        hub.enqueue(client, data)
