"""Faults that must bite: the kernel's queues read from /proc/net/tcp, the ``fault_bite`` records, and
the checks of a cohort whose fault never took effect (unknown, did_not_bite)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from harness.bite import SlowWatch, Subject, record_cut
from harness.checkers import DID_NOT_BITE, PASS, UNKNOWN, CheckContext, CohortInfo, run_checks
from harness.history import History
from harness.runner import run_scenario
from harness.scenario import parse
from harness.targetspec import bundled_monitor
from harness.tcpqueues import ESTABLISHED, TcpSocket, find, parse_address, parse_table, read_sockets, receive_queue
from harness.toxiproxy import Toxiproxy

# In the kernel's format: a listener on 8080, a connection 127.0.0.1:8080 <-> :51298 whose server side
# holds 0x2F000 bytes unacknowledged (its reader has 0x15A6 unread), and a tcp6 listener on ::1 port 9000.
TCP_SAMPLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0
   1: 0100007F:1F90 0100007F:C862 01 0002F000:00000000 01:00000014 00000000  1000        0 4243 1 0
   2: 0100007F:C862 0100007F:1F90 01 00000000:000015A6 00:00000000 00000000  1000        0 4244 1 0
"""
TCP6_SAMPLE = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when
   0: 00000000000000000000000001000000:2328 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000
"""


def test_the_tcp_table_is_parsed_with_addresses_ports_states_and_queues() -> None:
    sockets = parse_table(TCP_SAMPLE)
    assert [s.local for s in sockets] == [("127.0.0.1", 8080), ("127.0.0.1", 8080), ("127.0.0.1", 51298)]
    (server,) = find(sockets, local_port=8080, remote_port=51298)
    assert server.established and server.tx_queue == 0x2F000 and server.rx_queue == 0
    (client,) = find(sockets, local_port=51298)
    assert client.rx_queue == 0x15A6 and client.remote == ("127.0.0.1", 8080)
    assert not sockets[0].established
    assert parse_table(TCP_SAMPLE, ports=[51298]) == sockets[1:]
    (listener,) = parse_table(TCP6_SAMPLE)
    assert listener.local == ("::1", 9000) and listener.state == 0x0A
    assert parse_address("0100007F:0050") == ("127.0.0.1", 80)


def test_a_reader_that_stops_reading_fills_its_queue_and_the_writers_send_queue() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect(listener.getsockname())
    writer, _ = listener.accept()
    try:
        writer.setblocking(False)
        written = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                written += writer.send(b"x" * 4096)
            except BlockingIOError:
                break
        time.sleep(0.05)
        unread, rcvbuf = receive_queue(reader)
        table = read_sockets([reader.getsockname()[1]])
        if table is None:
            pytest.skip("no /proc/net/tcp on this system")
        (held,) = find(table, local_port=writer.getsockname()[1], remote_port=reader.getsockname()[1])
        assert 0 < unread <= rcvbuf
        assert held.tx_queue > 0 and held.tx_queue + unread == written  # all of it, nowhere else
        reader.recv(1 << 20)
        time.sleep(0.05)
        (after,) = find(read_sockets() or [], local_port=writer.getsockname()[1], remote_port=reader.getsockname()[1])
        assert after.tx_queue < held.tx_queue
    finally:
        for sock in (reader, writer, listener):
            sock.close()


def _history_with(bit: bool) -> History:
    history = History()
    for i in range(2):
        history.record("connect", client=f"crowd-{i}", cohort="crowd", attempt=1, since=None)
    history.record("metrics", clients=4)
    history.record("fault_start", fault="drop", type="mass_drop", cohort="crowd", params={})
    history.record("fault_bite", fault="drop", type="mass_drop", cohort="crowd", bit=bit, how="nothing sent",
                   figures={"victims": 2})  # fmt: skip
    history.record("metrics", clients=2)
    return history


def test_the_checks_of_a_cohort_whose_fault_did_not_bite_are_unknown_and_say_why() -> None:
    cohorts = {"crowd": CohortInfo("crowd", 2, "probe")}
    checks = {"eviction": {"cohort": "crowd", "within": 10, "expected": 2}, "recovery": {"cohort": "crowd"}}
    unbitten = run_checks(CheckContext(history=_history_with(False), cohorts=cohorts), checks)
    assert [(v.status, v.unknown_reason) for v in unbitten] == [(UNKNOWN, DID_NOT_BITE)] * 2
    assert all("did not take effect: nothing sent" in v.summary for v in unbitten)
    (bitten,) = run_checks(CheckContext(history=_history_with(True), cohorts=cohorts), {"eviction": checks["eviction"]})
    assert bitten.status == PASS


def _scenario(name: str, feed: float, fault: dict, checks: dict) -> object:
    raw = {
        "name": name,
        "target": {"heartbeat": 1, "send_timeout": 1},
        "cohorts": [{"name": "steady", "clients": 2}, {"name": "crowd", "clients": 4, "reconnect": False},
                    {"name": "silent", "clients": 0}],
        "feed": {"rate": feed},
        "steady_state": 0.5,
        "method": [{"wait": 0.5}, {"fault": fault}, {"wait": 0.5}],
        "checks": checks,
    }  # fmt: skip
    return parse(raw, name)


@pytest.mark.integration
async def test_a_mass_drop_on_a_cohort_that_receives_nothing_did_not_bite(toxiproxy: Toxiproxy, tmp_path: Path) -> None:
    fault = {"name": "drop", "type": "mass_drop", "cohort": "crowd", "params": {"share": 0.5}}
    scenario = _scenario("idle_drop", 0, fault, {"eviction": {"cohort": "crowd", "within": 2}})
    result = await run_scenario(scenario, bundled_monitor(), toxiproxy, tmp_path / "idle", seed=3)
    (bite,) = History.load(tmp_path / "idle" / "history.jsonl").of("fault_bite")
    assert bite["bit"] is False and bite["figures"] == {"victims": 2, "receiving": 0, "last_batch_max_s": None}
    (verdict,) = result.verdicts
    assert (verdict.status, verdict.unknown_reason) == (UNKNOWN, DID_NOT_BITE)


@pytest.mark.integration
async def test_a_stuck_reader_with_nothing_to_send_did_not_bite_within_its_ceiling(
    toxiproxy: Toxiproxy, tmp_path: Path
) -> None:
    params = {"clients": 1, "ceiling": 2, "answer_heartbeats": True}  # pongs: not evicted before the ceiling
    fault = {"name": "silent", "type": "stuck_reader", "cohort": "silent", "params": params}
    scenario = _scenario("idle_stuck", 0, fault, {"eviction": {"cohort": "silent", "within": 3}})
    started = time.monotonic()
    result = await run_scenario(scenario, bundled_monitor(), toxiproxy, tmp_path / "idle", seed=3)
    (bite,) = History.load(tmp_path / "idle" / "history.jsonl").of("fault_bite")
    assert bite["bit"] is False and "never held data back for the victim(s) before the ceiling" in bite["how"]
    assert bite["figures"]["watched_s"] >= 2
    (verdict,) = result.verdicts
    assert (verdict.status, verdict.unknown_reason) == (UNKNOWN, DID_NOT_BITE)
    assert time.monotonic() - started < 30


@pytest.mark.integration
async def test_a_stuck_reader_on_the_monitor_bites_within_seconds(toxiproxy: Toxiproxy, tmp_path: Path) -> None:
    fault = {"name": "silent", "type": "stuck_reader", "cohort": "silent", "params": {"clients": 1}}
    scenario = _scenario("stuck", 1000, fault, {"eviction": {"cohort": "silent", "within": 3.5}})
    result = await run_scenario(scenario, bundled_monitor(), toxiproxy, tmp_path / "stuck", seed=3)
    (bite,) = History.load(tmp_path / "stuck" / "history.jsonl").of("fault_bite")
    assert bite["bit"] is True and bite["figures"]["full_after_s"] < 10
    assert bite["figures"]["tx_max[silent-stuck-0]"] > 0 and bite["figures"]["rx_max[silent-stuck-0]"] > 0
    assert [v.status for v in result.verdicts] == [PASS]


def test_delivery_names_the_longest_stall_of_healthy_clients_while_the_feed_ran() -> None:
    history = History()
    history.records.append({"t": 0.0, "w": 100.0, "kind": "init", "client": "g-0", "epoch": "e", "seq": 0})
    history.records.append({"t": 0.0, "w": 100.0, "kind": "connect", "client": "g-0", "cohort": "g"})
    for i in range(50):  # an event every 0.1 s; between t=1 and t=4 nothing arrives, then the backlog
        t = i / 10
        history.records.append({"t": t, "w": 100.0 + t, "kind": "feed", "ids": [f"e{i}"]})
        recv = t if not 1.0 < t <= 4.0 else 4.05
        history.records.append({"t": max(t, recv), "w": 100.0 + recv, "kind": "batch", "client": "g-0", "seq": i + 1,
                                "ids": [f"e{i}"], "sent_at": 100.0 + recv, "recv_at": 100.0 + recv})  # fmt: skip
    history.records.sort(key=lambda r: r["t"])
    ctx = CheckContext(history=history, cohorts={"g": CohortInfo("g", 1, "probe")})
    (verdict,) = run_checks(ctx, {"delivery": {"cohorts": ["g"], "e2e_p99_ms": 1000}})
    assert verdict.status == "fail"
    assert verdict.figures["stall_start_t"] == 1.0 and verdict.figures["stall_max_s"] == pytest.approx(3.05)
    assert verdict.evidence[-1] == {"problem": "healthy clients received nothing while the feed ran", "t": 1.0,
                                    "length_s": pytest.approx(3.05)}  # fmt: skip


@pytest.mark.parametrize(("slow_after_s", "fails"), [(0.05, False), (1.5, True)])
def test_end_to_end_latency_counts_from_the_end_of_a_pause_the_scenario_made(slow_after_s, fails) -> None:
    """The target is paused from t=1 to t=3: events fed meanwhile arrive after it resumes. Their wait
    in the pause is the scenario's; a target that then takes 1.5 s more to deliver them is slow."""
    history = History()
    history.records.append({"t": 0.0, "w": 100.0, "kind": "init", "client": "g-0", "epoch": "e", "seq": 0})
    history.records.append({"t": 0.0, "w": 100.0, "kind": "connect", "client": "g-0", "cohort": "g"})
    history.records.append({"t": 1.0, "w": 101.0, "kind": "target", "event": "paused"})
    history.records.append({"t": 3.0, "w": 103.0, "kind": "target", "event": "resumed"})
    for i in range(50):  # an event every 0.1 s
        t = i / 10
        recv = t + 0.01 if not 0.9 < t <= 3.0 else 3.0 + slow_after_s
        history.records.append({"t": t, "w": 100.0 + t, "kind": "feed", "ids": [f"e{i}"]})
        history.records.append({"t": recv, "w": 100.0 + recv, "kind": "batch", "client": "g-0", "seq": i + 1,
                                "ids": [f"e{i}"], "sent_at": 100.0 + recv, "recv_at": 100.0 + recv})  # fmt: skip
    history.records.sort(key=lambda r: r["t"])
    ctx = CheckContext(history=history, cohorts={"g": CohortInfo("g", 1, "probe")})
    (verdict,) = run_checks(ctx, {"delivery": {"cohorts": ["g"], "e2e_p99_ms": 1000}})
    assert verdict.status == ("fail" if fails else "pass"), verdict.summary
    assert verdict.figures["e2e_max_ms"] == pytest.approx(slow_after_s * 1000, abs=1)


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _cut_history(receiving: bool, fed_inside: bool) -> History:
    clock = _Clock()
    history = History()
    history.now = clock  # type: ignore[method-assign]  # records at chosen times
    for t, kind, fields in [
        (0.5, "batch", {"client": "c-0", "seq": 1, "ids": ["a"]}),
        (0.6, "batch", {"client": "c-1", "seq": 1, "ids": ["a"]}),
        (1.8 if receiving else 0.7, "batch", {"client": "c-0", "seq": 2, "ids": ["b"]}),
        (1.9 if receiving else 0.7, "batch", {"client": "c-1", "seq": 2, "ids": ["b"]}),
        (2.5 if fed_inside else 1.9, "feed", {"ids": ["c"], "node": "n1"}),
    ]:
        clock.t = t
        history.record(kind, **fields)
    clock.t = 4.0
    return history


@pytest.mark.parametrize(("receiving", "fed_inside", "bit"),
                         [(True, True, True), (True, False, False), (False, True, False)])  # fmt: skip
def test_a_cut_bites_only_when_its_clients_were_receiving_and_events_were_fed_in_it(
    receiving: bool, fed_inside: bool, bit: bool
) -> None:
    history = _cut_history(receiving, fed_inside)
    record_cut(Subject("cut", "network_cut", "c"), history, [(2.0, 3.0, ["c-0", "c-1"])])
    (bite,) = history.of("fault_bite")
    assert bite["bit"] is bit, bite["how"]


def test_a_cut_of_dashboard_pages_bites_when_their_last_seq_grew_before_it() -> None:
    history = _cut_history(receiving=False, fed_inside=True)
    clock = history.now
    for t, seq in [(1.2, 5), (1.6, 7)]:
        clock.t = t  # type: ignore[attr-defined]
        history.record("browser_state", client="page-0", cohort="browser", state="live", lastSeq=seq)
    clock.t = 4.0  # type: ignore[attr-defined]
    record_cut(Subject("cut", "network_cut", "browser"), history, [(2.0, 3.0, ["page-0"])])
    (bite,) = history.of("fault_bite")
    assert bite["bit"] is True, bite["how"]


class _Victim:
    name = "slow-0"
    connected = True


def _table(server_port: int, queues: dict[int, int]) -> list[TcpSocket]:
    local = ("127.0.0.1", server_port)
    return [TcpSocket(local, ("127.0.0.1", port), ESTABLISHED, tx, 0) for port, tx in queues.items()]


def test_the_slow_link_is_the_queue_that_stays_deep_not_one_that_passes_the_mark_for_a_moment() -> None:
    # A saturated machine: a healthy client's queue (port 40001) jumps past 16 KiB for one sample and
    # drains; the throttled link's (40002) stays deep. The first-to-pass rule picked the healthy one.
    watch = SlowWatch(Subject("slow", "slow_consumer", "slow"), History(), [_Victim()], 1, ceiling=30, hold=1)
    watch.candidates = {40001, 40002, 40003}
    timeline = [(0.0, {40001: 20_347, 40002: 2_000, 40003: 0}), (0.2, {40001: 0, 40002: 18_000, 40003: 0})]
    timeline += [(0.4 + 0.2 * i, {40001: 900 * (i % 2) * 30, 40002: 20_000 + 40_000 * i, 40003: 0}) for i in range(6)]
    chosen = [watch.stayed_deep(_table(1, queues), t) for t, queues in timeline]
    assert chosen[:6] == [None] * 6  # nothing has stayed deep for a second yet (40002 since t=0.2)
    assert set(chosen[6:]) == {40002}


def test_no_link_is_chosen_when_every_queue_drains() -> None:
    watch = SlowWatch(Subject("slow", "slow_consumer", "slow"), History(), [_Victim()], 1, ceiling=30, hold=1)
    watch.candidates = {40001, 40002}
    for i in range(20):  # each deep for one sample in three
        queues = {40001: 30_000 if i % 3 == 0 else 0, 40002: 30_000 if i % 3 == 1 else 100}
        assert watch.stayed_deep(_table(1, queues), 0.2 * i) is None
