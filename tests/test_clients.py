"""The probe clients against the real monitor on loopback: what they record, how they reconnect and
resume, and whether their faults reach the server the way they claim to."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from harness.clients import Cohort, MessageShape, ProbeClient, StuckClient, probe_session
from harness.errors import HarnessError
from harness.history import History
from tests.monitor_fixture import RunningMonitor, running_monitor

pytestmark = [pytest.mark.integration, pytest.mark.timeout(20)]


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> float:
    """Wait for ``predicate``; returns how long it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def records(history: History, kind: str, client: str | None = None) -> list[dict[str, Any]]:
    return [r for r in history.of(kind) if client is None or r.get("client") == client]


def received_ids(history: History, client: str) -> list[str]:
    return [i for r in records(history, "batch", client) for i in r["ids"]]


def server_side(mon: RunningMonitor, probe: ProbeClient) -> Any:
    """The hub's registry entry for ``probe``, matched by the probe's local port."""
    address = probe.local_address()
    assert address is not None, f"{probe.name} is not connected"
    port = address[1]
    for client in mon.hub.clients.values():
        transport = client.sink.transport  # the monitor's AiohttpSink
        if transport is not None and transport.get_extra_info("peername")[1] == port:
            return client
    raise AssertionError(f"{probe.name} is not in the registry")


@asynccontextmanager
async def probes(mon: RunningMonitor, history: History, *names: str, **kwargs: Any) -> AsyncIterator[list[ProbeClient]]:
    async with probe_session() as session:
        clients = [ProbeClient(n, "c1", mon.ws_url, history, session=session, **kwargs) for n in names]
        cohort = Cohort("c1", list(clients))
        try:
            await cohort.start()
            yield clients
        finally:
            await cohort.stop()


async def test_probe_records_init_and_batches_in_order(tmp_path: Path) -> None:
    history = History()
    async with running_monitor(tmp_path) as mon, probes(mon, history, "p1") as (probe,):
        (init,) = records(history, "init", "p1")
        assert init["epoch"] == mon.state.stream.epoch and probe.connected
        fed = mon.feed(150) + mon.feed(150, node="n2")
        await until(lambda: len(received_ids(history, "p1")) >= len(fed), "all fed ids")
        assert received_ids(history, "p1") == fed
        seqs = [r["seq"] for r in records(history, "batch", "p1")]
        assert seqs == list(range(init["seq"] + 1, init["seq"] + 1 + len(seqs)))
        batch = records(history, "batch", "p1")[0]
        assert batch["recv_at"] >= batch["sent_at"] > 0
        assert probe.last_seq == seqs[-1] and probe.batches == len(seqs)
    (close,) = records(history, "close", "p1")
    assert close["by"] == "client" and close["code"] == 1000
    assert [r["kind"] for r in history.records][:2] == ["connect", "init"]


async def test_reconnect_after_eviction_resumes_without_a_gap(tmp_path: Path) -> None:
    history = History()
    async with running_monitor(tmp_path) as mon, probes(mon, history, "p1", backoff=(1.0, 1.0)) as (probe,):
        fed = mon.feed(20)
        await until(lambda: len(received_ids(history, "p1")) == 20, "the first batches")
        last = probe.last_seq
        mon.hub.evict(server_side(mon, probe), "test", 4008)
        await until(lambda: records(history, "close", "p1"), "the close")
        fed += mon.feed(30)  # broadcast while the probe waits out its backoff (0.5 to 1 s)
        await until(lambda: mon.state.stream.seq > last, "the missed broadcast")
        fed += mon.feed(10, node="n2")
        await until(lambda: len(received_ids(history, "p1")) >= len(fed), "every fed id", timeout=8)

        (close,) = records(history, "close", "p1")
        assert (close["by"], close["code"]) == ("server", 4008)
        connects = records(history, "connect", "p1")
        assert [c["since"] for c in connects] == [None, last] and probe.connections == 2
        (resumed,) = [r for r in records(history, "notice", "p1") if r["type"] == "resumed"]
        assert resumed["body"]["from_seq"] == last + 1
        after = history.records[history.records.index(resumed) + 1 :]
        resumed_seqs = [r["seq"] for r in after if r["kind"] == "batch"]
        assert resumed_seqs[0] == last + 1, "the missed batches come right after the resumed notice"
        seqs = [r["seq"] for r in records(history, "batch", "p1")]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"a gap or repeat: {seqs}"
        assert received_ids(history, "p1") == fed


async def test_abort_sends_an_rst_and_does_not_reconnect(tmp_path: Path) -> None:
    history = History()
    async with running_monitor(tmp_path) as mon, probes(mon, history, "p1", backoff=(0.05, 0.1)) as (probe,):
        await mon.wait_clients(1)
        await probe.abort()
        await mon.wait_clients(0, timeout=3)
        await asyncio.sleep(0.4)  # several backoff periods: it must stay away
        assert probe.connections == 1 and not probe.connected and len(mon.hub.clients) == 0
    (fault,) = records(history, "client_fault", "p1")
    assert fault["action"] == "rst" and fault["applied"]
    (close,) = records(history, "close", "p1")
    assert (close["code"], close["by"]) == (None, "client")




@pytest.mark.parametrize("drop", ["abort", "fin"])
async def test_a_client_dropped_by_a_fault_releases_its_connection_when_stopped(tmp_path: Path, drop: str) -> None:
    # aiohttp reports a connection garbage-collected unreleased through the loop's exception handler
    # ("Unclosed connection"). Stopping right after the drop, before the reader saw it (as the churn
    # fault does), used to leave one per client.
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))
    try:
        async with running_monitor(tmp_path) as mon, probe_session() as session:
            client = ProbeClient("p1", "c1", mon.ws_url, History(), session=session)
            await client.start()
            await mon.wait_clients(1)
            await getattr(client, drop)()
            await client.stop()
            del client  # the last reference to it and its WebSocket response
            gc.collect()
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert reported == []


async def test_abort_with_resume_after_reconnects(tmp_path: Path) -> None:
    history = History()
    async with running_monitor(tmp_path) as mon, probes(mon, history, "p1", backoff=(0.05, 0.1)) as (probe,):
        await probe.close_mid_frame(resume_after=True)
        await until(lambda: probe.connections == 2 and probe.connected, "the reconnect")
        assert [r["action"] for r in records(history, "client_fault", "p1")] == ["mid_frame"]
        fed = mon.feed(5)
        await until(lambda: received_ids(history, "p1") == fed, "batches on the new connection")
        await mon.wait_clients(1)


@pytest.mark.parametrize("rcvbuf", [None, 4096])
async def test_stopped_reader_is_evicted_by_backpressure(tmp_path: Path, rcvbuf: int | None) -> None:
    history = History()
    overrides = {"queue_size": 16, "send_timeout": 1.0, "heartbeat": 60.0}
    async with running_monitor(tmp_path, **overrides) as mon, \
            probes(mon, history, "slow", "good", reconnect=False, rcvbuf=rcvbuf) as (slow, good):  # fmt: skip
        entry = server_side(mon, slow)
        slow.stop_reading()
        started, fed, backlog, server_buffer = time.monotonic(), [], 0, 0
        while entry.evicted is None:
            assert time.monotonic() - started < 8, f"not evicted after feeding {len(fed)} events"
            fed += mon.feed(200)
            backlog = max(backlog, slow.backlog())
            server_buffer = max(server_buffer, entry.sink.buffered())
            await asyncio.sleep(0.02)
        took = time.monotonic() - started
        print(
            f"\nrcvbuf={rcvbuf}: stopped reader evicted ({entry.evicted}) after {took:.2f} s and "
            f"{len(fed)} events fed; it had been sent {entry.sent} messages; peak backlog in the client "
            f"{backlog / 1024:.0f} KiB (kernel + aiohttp), in the server's transport {server_buffer / 1024:.0f} KiB"
        )
        assert entry.evicted in ("send_timeout", "queue_full")
        assert server_buffer > 0, "the server's writes never backed up"
        assert good.connected and server_side(mon, good).evicted is None
        await until(lambda: received_ids(history, "good") == fed, "the good client to get everything")

        slow.resume_reading()  # it drains what it holds, in order, then sees the connection end
        await until(lambda: records(history, "close", "slow"), "the slow client to see the end")
        seqs = [r["seq"] for r in records(history, "batch", "slow")]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap or repeat in what it drained"
        print(
            f"after resume_reading it drained {len(seqs)} batches of {mon.state.stream.seq}, then saw "
            f"{records(history, 'close', 'slow')[0]}"
        )
        assert not slow.connected and slow.connections == 1


async def test_resume_longer_than_the_client_queue(tmp_path: Path) -> None:
    history = History()
    async with running_monitor(tmp_path, queue_size=16) as mon, \
            probes(mon, history, "p1", backoff=(2.0, 2.0)) as (probe,):  # fmt: skip
        mon.hub.evict(server_side(mon, probe), "test", 4008)
        await until(lambda: not probe.connected, "the eviction")
        for _ in range(20):  # 20 separate batches while the probe waits 1 to 2 s
            seq = mon.state.stream.seq
            mon.feed(1)
            await until(lambda s=seq: mon.state.stream.seq > s, "a broadcast")
        await until(lambda: probe.connections >= 2, "the reconnect", timeout=3)
        await asyncio.sleep(0.3)
        notices = [r["body"] for r in records(history, "notice", "p1")]
        assert [n.get("reason") for n in notices if n.get("type") == "resync_required"] == ["too_far_behind"]
        assert probe.connected


async def test_stuck_clients_and_heartbeats(tmp_path: Path) -> None:
    history = History()
    async with running_monitor(tmp_path, heartbeat=0.5) as mon:
        answering = StuckClient("s1", "stuck", mon.host, mon.port, "/ws", history, answer_heartbeats=True)
        silent = StuckClient("s2", "stuck", mon.host, mon.port, "/ws", history, answer_heartbeats=False)
        cohort = Cohort("stuck", [answering, silent])
        try:
            await cohort.start()
            await mon.wait_clients(2)
            started = time.monotonic()
            await mon.wait_clients(1, timeout=3)
            dropped = time.monotonic() - started
            await until(lambda: not silent.connected, "the silent client to notice", timeout=3)
            await asyncio.sleep(3.0 - (time.monotonic() - started))
            print(
                f"\nsilent stuck client dropped {dropped:.2f} s after connecting (heartbeat 0.5 s); "
                f"answering one still registered after 3 s, {answering.pongs_sent} pongs sent"
            )
            assert answering.connected and len(mon.hub.clients) == 1
            assert mon.state.metrics.evictions["heartbeat_timeout"] == 1
        finally:
            await cohort.stop()
        await mon.wait_clients(0)
    closes = {r["client"]: r for r in records(history, "close")}
    assert (closes["s2"]["by"], closes["s1"]["by"]) == ("error", "client")


async def test_send_garbage_gets_error_notices_and_the_client_stays(tmp_path: Path) -> None:
    history = History()
    async with running_monitor(tmp_path) as mon, probes(mon, history, "p1") as (probe,):
        await probe.send_garbage()
        errors = lambda: [r["body"]["code"] for r in records(history, "notice", "p1") if r["type"] == "error"]  # noqa: E731
        await until(lambda: len(errors()) == 3, "three error notices")
        assert errors() == ["bad_json", "binary_not_supported", "unknown_type"]
        fed = mon.feed(5)
        await until(lambda: received_ids(history, "p1") == fed, "batches after the garbage")
        assert probe.connected and probe.connections == 1
        assert [r["action"] for r in records(history, "client_fault", "p1")] == ["garbage"]


async def test_cohort_start_names_the_cohort_when_the_target_is_down(tmp_path: Path) -> None:
    history = History()
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/ws"
    async with aiohttp.ClientSession() as session:
        clients = [ProbeClient(f"p{i}", "down", url, history, session=session, backoff=(0.05, 0.1))
                   for i in range(2)]  # fmt: skip
        with pytest.raises(HarnessError, match=r"cohort 'down': only 0 of 2"):
            await Cohort("down", list(clients)).start(timeout=0.5)
        assert all(c._task is not None and c._task.done() for c in clients)
    assert records(history, "connect_error")


def test_message_shape_defaults() -> None:
    shape = MessageShape()
    assert (shape.batch_type, shape.event_id, shape.resume_query) == ("log_entry_batch", "piece_id", True)


def test_peer_end_tells_a_fin_from_a_reset() -> None:
    import socket
    import time

    from harness.wsframes import peer_end, set_linger_zero

    with socket.create_server(("127.0.0.1", 0)) as server:
        ends = {}
        for how in ("fin", "reset"):
            client = socket.create_connection(server.getsockname())
            accepted, _ = server.accept()
            assert peer_end(client) is None
            if how == "reset":
                set_linger_zero(accepted)
            accepted.close()
            time.sleep(0.05)
            ends[how] = peer_end(client)
            client.close()
    assert ends == {"fin": "fin", "reset": "reset"}
