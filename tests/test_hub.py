"""The hub on in-memory sinks: the direct path, the queue and writer, eviction, ordering, views.

A unit test of the hub's logic: no socket is opened (``no_sockets`` makes any attempt fail)."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import weakref

import pytest

from monitor.hub import LIVE_CLIENTS, BroadcastResult, Client, CloseCode, Hub, dumps
from monitor.metrics import Metrics
from monitor.views import View
from tests.fakesink import FakeSink, SocketOpened, forbid_sockets, until

LIMIT = 1024


@pytest.fixture(autouse=True)
async def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_sockets(monkeypatch)


def connect(hub: Hub, view: View | None = None, **sink_options: int) -> tuple[Client, FakeSink]:
    sink = FakeSink(**sink_options)
    return hub.register(sink, "198.51.100.1", view or View()), sink


def behind(sink: FakeSink, stalled: bool = True) -> None:
    """The sink has more buffered than it may hold for a direct write (and stopped reading)."""
    sink.backlog = sink.high_water + 1
    sink.stalled = stalled


async def test_no_socket_can_be_opened_here() -> None:
    with pytest.raises(SocketOpened):
        socket.socket()
    with pytest.raises(SocketOpened):
        await asyncio.open_connection("127.0.0.1", 9)


async def test_a_sink_that_keeps_up_gets_frames_written_directly() -> None:
    metrics = Metrics()
    hub = Hub(metrics)
    client, sink = connect(hub)
    _, other_sink = connect(hub)
    assert hub.send(client, {"n": 1})
    result = hub.robust_broadcast({"n": 2})
    assert result == BroadcastResult(queued=2)
    assert sink.received == [("direct", {"n": 1}), ("direct", {"n": 2})]
    assert other_sink.received == [("direct", {"n": 2})]
    assert sink.frames[1] is other_sink.frames[0], "a broadcast is framed once for every client"
    assert not client.queue and client.writer is None and client.wake is None
    assert (hub.direct_writes, hub.queued_writes) == (3, 0)
    assert (client.sent, metrics.messages_sent, metrics.broadcasts) == (2, 3, 1)
    assert metrics.bytes_sent == len(dumps({"n": 1})) + 2 * len(dumps({"n": 2}))


@pytest.mark.parametrize(
    ("high_water", "backlog", "path"),
    [
        (LIMIT, 0, "direct"),
        (LIMIT, LIMIT, "direct"),  # at the mark: the write still goes straight out
        (LIMIT, LIMIT + 1, "sent"),  # past it: a send would have to wait, so it is queued
        (-1, 0, "sent"),  # a sink that takes no direct writes
    ],
)
async def test_the_direct_path_holds_while_the_buffer_is_at_most_the_high_water_mark(
    high_water: int, backlog: int, path: str
) -> None:
    hub = Hub(Metrics())
    client, sink = connect(hub, high_water=high_water)
    sink.backlog = backlog
    hub.send(client, {"n": 1})
    await until(lambda: bool(sink.received), "the message")
    assert sink.received == [(path, {"n": 1})]
    hub.unregister(client)


async def test_a_sink_over_its_limit_gets_messages_through_its_queue_and_writer() -> None:
    hub = Hub(Metrics())
    client, sink = connect(hub)
    behind(sink)
    assert hub.send(client, {"n": 1}) and hub.send(client, {"n": 2})
    assert sink.received == [] and list(client.queue) == [dumps({"n": 1}), dumps({"n": 2})]
    assert client.writer is not None and (hub.direct_writes, hub.queued_writes) == (0, 2)
    await asyncio.sleep(0.01)
    assert client.sending and sink.received == [], "the writer waits on the stalled sink"
    sink.unstall()
    await until(lambda: not client.queue and not client.sending, "the queue to drain")
    assert sink.received == [("sent", {"n": 1}), ("sent", {"n": 2})] and client.sent == 2
    sink.backlog = 0
    hub.send(client, {"n": 3})
    assert sink.received[-1] == ("direct", {"n": 3}), "a drained client is back on the direct path"
    assert client.evicted is None
    hub.unregister(client)
    await asyncio.sleep(0)
    assert client.writer.done()


async def test_a_full_queue_evicts_the_client_with_4008_and_aborts_it() -> None:
    metrics = Metrics()
    hub = Hub(metrics, queue_size=3, send_timeout=60.0)
    good, good_sink = connect(hub)
    slow, slow_sink = connect(hub)
    behind(slow_sink)
    hub.robust_broadcast({"n": 0})
    await until(lambda: slow.sending, "the writer to take the first message")
    results = [hub.robust_broadcast({"n": n}) for n in range(1, 5)]
    assert [r.evicted for r in results] == [0, 0, 0, 1], "three fit in the queue, the fourth evicts"
    assert slow.evicted == "queue_full" and not slow.queue
    assert list(hub.clients) == [good.id] and metrics.clients_connected == 1
    assert dict(metrics.evictions) == {"queue_full": 1}
    assert not hub.send(slow, {"n": 5}), "an evicted client takes nothing more"
    await hub.wait_closed()
    assert slow_sink.closed_with == (CloseCode.SLOW_CONSUMER, b"queue_full") and slow_sink.aborted
    assert slow.writer is not None and slow.writer.cancelled()
    assert good_sink.messages() == [{"n": n} for n in range(5)] and good.evicted is None


async def test_a_send_timeout_evicts_the_client_with_4009_and_aborts_it() -> None:
    metrics = Metrics()
    hub = Hub(metrics, send_timeout=0.05, close_timeout=0.05)
    client, sink = connect(hub)
    behind(sink)  # stalled: the send never completes, and neither does the close handshake
    started = asyncio.get_running_loop().time()
    hub.send(client, {"n": 1})
    await until(lambda: client.evicted is not None, "the eviction")
    assert client.evicted == "send_timeout" and client.id not in hub.clients
    assert dict(metrics.send_failures) == {"timeout": 1} and dict(metrics.evictions) == {"send_timeout": 1}
    await hub.wait_closed()
    assert sink.closed_with == (CloseCode.SEND_TIMEOUT, b"send_timeout")
    assert sink.aborted, "a close handshake that does not finish within close_timeout is cut short"
    assert asyncio.get_running_loop().time() - started < 1.0
    assert sink.received == []


async def test_each_client_gets_every_broadcast_in_order_across_both_paths() -> None:
    hub = Hub(Metrics(), queue_size=1000)
    _, steady_sink = connect(hub)
    flaky, flaky_sink = connect(hub)
    for n in range(60):
        if n in (10, 35):
            behind(flaky_sink, stalled=False)  # falls behind: what follows queues behind this
        elif n in (20, 45):
            flaky_sink.backlog = 0  # caught up in the socket, but its queue may still hold messages
        hub.robust_broadcast({"n": n})
        if n % 7 == 0:
            await asyncio.sleep(0)  # let the writer send some in between
    await until(lambda: not flaky.queue and not flaky.sending, "the flaky client's queue to drain")
    assert steady_sink.messages() == flaky_sink.messages() == [{"n": n} for n in range(60)]
    assert {path for path, _ in flaky_sink.received} == {"direct", "sent"}, "both paths were used"
    assert {path for path, _ in steady_sink.received} == {"direct"}
    hub.unregister(flaky)


async def test_a_message_waits_behind_the_one_its_writer_is_sending() -> None:
    hub = Hub(Metrics())
    client, sink = connect(hub)
    behind(sink)
    hub.send(client, {"n": 1})
    await until(lambda: client.sending, "the writer to take the message")
    assert not client.queue
    sink.backlog = 0  # the socket drained, but message 1 is still in the writer's hands
    hub.send(client, {"n": 2})
    sink.unstall()
    await until(lambda: len(sink.received) == 2, "both messages")
    assert sink.received == [("sent", {"n": 1}), ("sent", {"n": 2})]
    hub.unregister(client)


async def test_a_closing_sink_is_dropped_quietly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    metrics = Metrics()
    hub = Hub(metrics)
    gone, gone_sink = connect(hub)
    failing, failing_sink = connect(hub)
    live, live_sink = connect(hub)
    gone_sink.closing = True
    failing_sink.fail_next_write = True
    result = hub.robust_broadcast({"n": 1})
    assert result == BroadcastResult(queued=2, evicted=1), "the failed write evicts at once"
    assert failing.evicted == "send_failed" and gone_sink.received == []
    await until(lambda: gone.evicted is not None, "the closing client's eviction")
    assert gone.evicted == "send_failed"
    assert list(hub.clients) == [live.id] and live_sink.messages() == [{"n": 1}]
    assert dict(metrics.evictions) == {"send_failed": 2} and dict(metrics.send_failures) == {"failed": 2}
    hub.unregister(live)
    await hub.wait_closed()
    assert gone_sink.aborted and failing_sink.aborted
    loud = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records if r.levelno > logging.DEBUG]
    assert loud == []
    assert any("send_failed" in r.getMessage() for r in caplog.records), "the evictions were logged at DEBUG"


async def test_a_broadcast_for_one_node_reaches_only_the_views_that_include_it() -> None:
    hub = Hub(Metrics())
    everything, everything_sink = connect(hub, View())
    node_a, a_sink = connect(hub, View(frozenset({"a"})))
    node_b, b_sink = connect(hub, View(frozenset({"b"})))
    both, both_sink = connect(hub, View(frozenset({"a", "b"})))
    assert hub.robust_broadcast({"n": 1}, node="a") == BroadcastResult(queued=3, skipped=1)
    assert hub.robust_broadcast({"n": 2}) == BroadcastResult(queued=4)
    assert everything_sink.messages() == a_sink.messages() == both_sink.messages() == [{"n": 1}, {"n": 2}]
    assert b_sink.messages() == [{"n": 2}]
    groups = hub.by_view()
    assert groups[View()] == [everything] and groups[View(frozenset({"b"}))] == [node_b]
    assert len(groups) == 4 and node_a in groups[View(frozenset({"a"}))] and both not in groups[View()]


async def test_close_all_closes_every_client_with_going_away() -> None:
    hub = Hub(Metrics(), close_timeout=0.05)
    clients = [connect(hub) for _ in range(3)]
    behind(clients[0][1])  # one never finishes its close handshake
    await hub.close_all()
    assert hub.clients == {}
    for client, sink in clients:
        assert client.evicted == "shutdown" and sink.aborted
        assert sink.closed_with == (CloseCode.GOING_AWAY, b"shutdown")


async def test_an_evicted_client_is_freed_at_once_not_by_the_cycle_collector() -> None:
    """A writer cancelled mid-send keeps its frame in the task's traceback; the client keeps the task.
    That cycle must not hold the client: with the collector off, it is gone as soon as it is dropped."""
    hub = Hub(Metrics(), queue_size=2, send_timeout=60.0, close_timeout=0.05)
    client, sink = connect(hub)
    behind(sink)
    hub.robust_broadcast({"n": 0})
    await until(lambda c=client: c.sending, "the writer to take the first message")
    writer = client.writer
    assert writer is not None
    gc.disable()
    try:
        for n in range(1, 4):
            hub.robust_broadcast({"n": n})
        assert client.evicted == "queue_full"
        await hub.wait_closed()
        await asyncio.wait([writer])
        assert writer.cancelled()
        gone = weakref.ref(client)
        assert client in LIVE_CLIENTS
        del client, writer
        assert gone() is None, "the evicted client is still held"
    finally:
        gc.enable()
