"""The stream on in-memory sinks: numbering, per-view batches, the replay buffer, resume plans.

A unit test of the stream's logic: no socket is opened (``no_sockets`` makes any attempt fail)."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.hub import Client, Hub
from monitor.metrics import Metrics
from monitor.stream import Stream
from monitor.views import View
from tests.fakesink import FakeSink, forbid_sockets

EPOCH = "1700000000-0123abcd"


@pytest.fixture(autouse=True)
async def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_sockets(monkeypatch)


def connect(hub: Hub, *nodes: str) -> tuple[Client, FakeSink]:
    sink = FakeSink()
    return hub.register(sink, "198.51.100.1", View(frozenset(nodes)) if nodes else View()), sink


def events(*nodes: str) -> list[dict[str, Any]]:
    return [{"node": node, "i": i} for i, node in enumerate(nodes)]


async def test_every_view_gets_every_batch_with_its_own_events() -> None:
    hub = Hub(Metrics())
    stream = Stream(hub)
    (_, all_sink), (_, a_sink), (_, c_sink) = connect(hub), connect(hub, "a"), connect(hub, "c")
    result = stream.broadcast(events("a", "b", "a"))
    assert result.queued == 3 and stream.seq == 1
    (batch,) = all_sink.messages()
    assert batch["type"] == "log_entry_batch" and batch["seq"] == 1 and batch["events"] == events("a", "b", "a")
    assert [m["events"] for m in a_sink.messages()] == [[{"node": "a", "i": 0}, {"node": "a", "i": 2}]]
    assert [(m["seq"], m["events"]) for m in c_sink.messages()] == [(1, [])], "a quiet node is not a gap"


async def test_flush_cuts_pending_events_into_numbered_batches() -> None:
    hub = Hub(Metrics())
    stream = Stream(hub, max_batch=200)
    _, sink = connect(hub)
    stream.add_events(events(*["a"] * 450))
    result = stream.flush()
    assert result.queued == 3 and not stream.pending
    assert [(m["seq"], len(m["events"])) for m in sink.messages()] == [(1, 200), (2, 200), (3, 50)]
    assert [e["i"] for m in sink.messages() for e in m["events"]] == list(range(450))
    assert stream.flush().queued == 0 and stream.seq == 3, "nothing pending: no batch"


async def test_the_replay_buffer_keeps_the_latest_batches() -> None:
    stream = Stream(Hub(Metrics()), replay_size=3)
    for _ in range(5):
        stream.broadcast(events("a"))
    assert [b.seq for b in stream.replay] == [3, 4, 5]


async def test_stop_broadcasts_what_is_still_pending() -> None:
    hub = Hub(Metrics())
    stream = Stream(hub, interval=60.0)
    _, sink = connect(hub)
    await stream.start()
    stream.add_events(events("a", "b"))
    await stream.stop()
    assert [(m["seq"], len(m["events"])) for m in sink.messages()] == [(1, 2)]


async def test_deliver_resume_sends_the_notice_then_the_batches_for_the_clients_view() -> None:
    hub = Hub(Metrics())
    stream = Stream(hub)
    for nodes in (("a", "b"), ("b",), ("a",)):
        stream.broadcast(events(*nodes))
    client, sink = connect(hub, "a")
    stream.deliver_resume(client, stream.plan_resume(stream.epoch, 1, 3))
    notice, *batches = sink.messages()
    assert notice == {"type": "resumed", "epoch": stream.epoch, "from_seq": 2, "to_seq": 3}
    assert [(b["seq"], b["events"]) for b in batches] == [(2, []), (3, [{"node": "a", "i": 0}])]


# A stream with 12 batches made, of which the replay buffer (8) holds seqs 5 to 12, for clients whose
# queue holds 10 messages: a resume may replay at most 5 batches.
HEAD, REPLAY_SIZE, QUEUE_SIZE = 12, 8, 10


def resumed(first: int, last: int) -> dict[str, Any]:
    return {"type": "resumed", "from_seq": first, "to_seq": last, "batches": list(range(first, last + 1))}


def resync(reason: str) -> dict[str, Any]:
    return {"type": "resync_required", "reason": reason, "seq": HEAD, "batches": []}


@pytest.mark.parametrize(
    ("epoch", "since", "upto", "expected"),
    [
        pytest.param(EPOCH, 10, 12, resumed(11, 12), id="same epoch, within the buffer"),
        pytest.param(EPOCH, 7, 12, resumed(8, 12), id="exactly half the client queue"),
        pytest.param(EPOCH, 8, 10, resumed(9, 10), id="only up to the seq at connect"),
        pytest.param(EPOCH, 4, 8, resumed(5, 8), id="since just before the oldest kept batch"),
        pytest.param(EPOCH, 12, 12, resumed(13, 12), id="since == head: nothing missed"),
        pytest.param(EPOCH, 2, 2, resumed(3, 2), id="since == upto, both older than the buffer"),
        pytest.param(EPOCH, 6, 12, resync("too_far_behind"), id="larger than half the client queue"),
        pytest.param(EPOCH, 3, 12, resync("too_old"), id="older than the buffer"),
        pytest.param(EPOCH, 0, 12, resync("too_old"), id="from the very start"),
        pytest.param(EPOCH, 13, 12, resync("future_seq"), id="since ahead of head"),
        pytest.param(EPOCH, 11, 10, resync("future_seq"), id="since ahead of the seq at connect"),
        pytest.param("1600000000-feedbeef", 10, 12, resync("epoch_changed"), id="other epoch"),
        pytest.param(None, 10, 12, resync("epoch_changed"), id="no epoch"),
        pytest.param(EPOCH, -1, 12, resync("bad_since"), id="negative since"),
        pytest.param(EPOCH, "10", 12, resync("bad_since"), id="since as a string"),
        pytest.param(EPOCH, 10.0, 12, resync("bad_since"), id="since as a float"),
        pytest.param(EPOCH, True, 12, resync("bad_since"), id="since as a bool"),
        pytest.param(EPOCH, None, 12, resync("bad_since"), id="no since"),
    ],
)
def test_plan_resume(epoch: Any, since: Any, upto: int, expected: dict[str, Any]) -> None:
    stream = Stream(Hub(Metrics(), queue_size=QUEUE_SIZE), replay_size=REPLAY_SIZE)
    stream.epoch = EPOCH
    for _ in range(HEAD):
        stream.broadcast(events("a"))
    plan = stream.plan_resume(epoch, since, upto)
    got = {**plan.notice, "batches": [b.seq for b in plan.batches]}
    assert got == {**expected, "epoch": EPOCH}


def test_a_fresh_stream_resumes_a_client_that_has_seen_nothing() -> None:
    stream = Stream(Hub(Metrics()))
    plan = stream.plan_resume(stream.epoch, 0, 0)
    assert plan.notice == {"type": "resumed", "epoch": stream.epoch, "from_seq": 1, "to_seq": 0}
    assert plan.batches == []
    assert stream.plan_resume(stream.epoch, 1, 0).notice["reason"] == "future_seq"
