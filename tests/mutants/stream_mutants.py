"""Mutants of the live stream's numbering, resume and views: each breaks one promise a client relies
on to tell a gap from a quiet stream, and one scenario's checker must notice.

Every mutant's docstring says what it breaks.
"""

from __future__ import annotations

import time
from typing import Any

from monitor import app, hub, protocol, stream
from monitor.hub import dumps
from monitor.stream import Stream
from tests.mutants.registry import mutant


def _patch_replay(change: Any) -> None:
    """Wrap ``Stream.plan_resume``: ``change(stream, since, plan)`` gives the batches a resumed plan sends."""
    original = Stream.plan_resume

    def plan_resume(self: Stream, epoch: Any, since: Any, upto: int) -> stream.ResumePlan:
        plan = original(self, epoch, since, upto)
        if plan.notice["type"] != "resumed":
            return plan
        return stream.ResumePlan(plan.notice, change(self, since, plan))

    Stream.plan_resume = plan_resume  # type: ignore[method-assign]


@mutant("network_cut", "recovery")
def resume_replays_boundary_twice() -> None:
    """A resume replays from ``since`` instead of ``since + 1`` (an off-by-one at the lower bound): the
    batch the client already had comes a second time."""

    def change(self: Stream, since: Any, plan: stream.ResumePlan) -> list[stream.Batch]:
        return [b for b in self.replay if b.seq == since] + plan.batches

    _patch_replay(change)


@mutant("network_cut", "recovery")
def resume_replays_out_of_order() -> None:
    """A resume replays the missed batches newest first."""
    _patch_replay(lambda self, since, plan: list(reversed(plan.batches)))


@mutant("server_restart", "recovery")
def resume_ignores_epoch() -> None:
    """A resume does not check the epoch: after a restart, a client that asks to resume the old stream
    is told ``resumed`` and gets the new stream's batches after its old seq, as if nothing had changed
    (it silently misses the new stream's first batches)."""
    original = Stream.plan_resume

    def plan_resume(self: Stream, epoch: Any, since: Any, upto: int) -> stream.ResumePlan:
        return original(self, self.epoch, since, upto)

    Stream.plan_resume = plan_resume  # type: ignore[method-assign]


@mutant("resume_message", "resume")
def resume_message_to_head() -> None:
    """A ``resume`` request replays up to the stream's head instead of up to where the client's
    connection started: batches it already received live come again."""

    async def resume(self: protocol.Session, request: dict[str, Any]) -> None:
        plan = self.stream.plan_resume(request.get("epoch"), request.get("since"), self.stream.seq)
        self.stream.deliver_resume(self.client, plan)

    protocol.Session._resume = resume  # type: ignore[method-assign]


def _shift_init_seq(by: int) -> None:
    original = app.MonitorState.init_message

    def init_message(self: app.MonitorState, view: Any) -> dict[str, Any]:
        message = original(self, view)
        message["seq"] = max(0, message["seq"] + by)
        return message

    app.MonitorState.init_message = init_message  # type: ignore[method-assign]


@mutant("baseline", "delivery")
def init_seq_ahead() -> None:
    """The init announces one seq more than the last batch sent: the client's first live batch carries
    the seq the init announced, so it looks like a replay, and a client that resumes from the init's
    seq skips that batch."""
    _shift_init_seq(+1)


@mutant("server_restart", "recovery")
def init_seq_behind() -> None:
    """The init announces one seq less than the last batch sent: a client that joins a running stream
    (here, after a restart) waits for a batch that went out before it connected.

    The clients of a scenario connect before the feed starts, at seq 0 (where one less is still 0),
    so a scenario needs clients that connect to a stream already running to see it."""
    _shift_init_seq(-1)


@mutant("views", "views")
def view_filter_inverted() -> None:
    """A client's view filter is inverted: it gets the events of every node except those it watches."""

    def message(self: stream.Batch, view: Any) -> dict[str, Any]:
        events = self.events if view.nodes is None else [e for e in self.events if not view.includes(e["node"])]
        return {"type": "log_entry_batch", "seq": self.seq, "sent_at": self.sent_at, "events": events}

    stream.Batch.message = message  # type: ignore[method-assign]


@mutant("views", "views")
def view_skips_empty_batches() -> None:
    """A batch none of whose events is in a client's view is not sent to that client: its seqs jump,
    and it cannot tell a quiet node from a lost batch."""

    def broadcast(self: Stream, events: list[dict[str, Any]]) -> Any:
        self.seq += 1
        batch = stream.Batch(self.seq, time.time(), events)
        self.replay.append(batch)
        result = hub.BroadcastResult()
        for view, clients in self.hub.by_view().items():
            message = batch.message(view)
            if message["events"]:
                result.add(self.hub.broadcast_text(dumps(message), clients))
        return result

    Stream.broadcast = broadcast  # type: ignore[method-assign]


@mutant("views", "views")
def view_filter_ignored() -> None:
    """Batches ignore the client's view: a client that watches one node gets every node's events
    (its init still confirms the view it asked for)."""

    def message(self: stream.Batch, view: Any) -> dict[str, Any]:
        return {"type": "log_entry_batch", "seq": self.seq, "sent_at": self.sent_at, "events": self.events}

    stream.Batch.message = message  # type: ignore[method-assign]
