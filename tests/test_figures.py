"""Figures that lie fail: latencies no clock can give, server counters that do not match the feed,
warnings where a normal event should be quiet."""

from __future__ import annotations

import json

import pytest

from harness.checkers import CHECKERS
from harness.errors import HarnessError
from harness.faultbase import FAULTS, FaultSpec, make_fault
from harness.faultfamilies.badinput import MalformedInput, frames
from harness.history import History
from harness.serverstats import parse_counts
from harness.targetspec import TARGETS_DIR, StatsSpec, TargetError, bundled_monitor, load_target, parse_target
from tests.test_checkers import WALL, connect, ctx_for, feed, log, problems, rec


def batch_sent(h: History, t: float, client: str, seq: int, ids: list[str], sent_at: object) -> None:
    rec(h, t, "batch", client=client, seq=seq, ids=ids, sent_at=sent_at, recv_at=WALL + t)


def clock_run(sent_at: object) -> History:
    """Two clients, three events; the second batch carries ``sent_at``."""
    h = History()
    for client in ("g-0", "g-1"):
        connect(h, 0.0, client, "good")
    for i in (1, 2, 3):
        feed(h, float(i), f"e{i}")
        for client in ("g-0", "g-1"):
            batch_sent(h, i + 0.05, client, i, [f"e{i}"], sent_at if i == 2 else WALL + i + 0.04)
    return h


def test_delivery_passes_with_sane_clocks() -> None:
    verdict = CHECKERS["delivery"](ctx_for(clock_run(WALL + 2.04)), {})
    assert verdict.status == "pass", verdict.summary


def test_delivery_negative_latency_is_a_clock_or_unit_error() -> None:
    verdict = CHECKERS["delivery"](ctx_for(clock_run((WALL + 2.04) * 1000)), {})  # sent_at in ms
    assert verdict.status == "fail"
    assert "clock or unit error" in verdict.summary
    assert "clock or unit error: negative latency" in problems(verdict)
    assert verdict.figures["clock_errors"] == 2


def test_delivery_sent_before_fed_is_a_clock_or_unit_error() -> None:
    verdict = CHECKERS["delivery"](ctx_for(clock_run(WALL + 1.5)), {"latency_p99_ms": 1000.0})
    assert verdict.status == "fail"
    assert problems(verdict)[0] == "clock or unit error: latency above end-to-end (sent before fed)"


def test_delivery_clock_tolerance() -> None:
    early = clock_run(WALL + 1.95)  # 50 ms before the feed wrote e2
    assert CHECKERS["delivery"](ctx_for(early), {}).status == "pass"
    assert CHECKERS["delivery"](ctx_for(early), {"clock_tolerance_ms": 10.0}).status == "fail"


def test_delivery_sent_at_not_a_number() -> None:
    verdict = CHECKERS["delivery"](ctx_for(clock_run("yesterday")), {})
    assert verdict.status == "fail"
    assert problems(verdict)[0] == "clock or unit error: sent_at is not a number"


def locust(h: History, t: float, phase: str, **figures: object) -> None:
    base = {"requests": 100, "failures": 0, "batches": 100, "rps": 10.0, "gaps": 0, "p50": 3.0, "p99": 9.0}
    rec(h, t, "locust", phase=phase, **{**base, **figures})


def test_load_negative_latency_fails() -> None:
    h = History()
    locust(h, 1.0, "sample")
    locust(h, 2.0, "final", min_ms=1.0)
    assert CHECKERS["load"](ctx_for(h), {}).status == "pass"
    h = History()
    locust(h, 1.0, "sample", p50=-1.79e15, p99=-1.79e15)
    locust(h, 2.0, "final", p50=-1.79e15, p99=-1.79e15, min_ms=-1.79e15)
    verdict = CHECKERS["load"](ctx_for(h), {})
    assert verdict.status == "fail"
    assert verdict.summary.startswith("clock or unit error")


def test_load_negative_latency_within_tolerance_passes() -> None:
    h = History()
    locust(h, 2.0, "final", min_ms=-20.0)
    assert CHECKERS["load"](ctx_for(h), {}).status == "pass"
    assert CHECKERS["load"](ctx_for(h), {"clock_tolerance_ms": 5.0}).status == "fail"


def stats_run(**reading: object) -> History:
    h = History()
    rec(h, 1.0, "feed", ids=["a", "b", "c"], node="n1")
    rec(h, 1.1, "feed", ids=["d", "e"], node="n2")
    rec(h, 3.0, "server_stats", **reading)
    return h


def test_stats_passes_when_counts_match_the_feed() -> None:
    verdict = CHECKERS["stats"](ctx_for(stats_run(declared=True, total=5, nodes={"n1": 3, "n2": 2})), {})
    assert verdict.status == "pass", verdict.summary
    assert verdict.figures["server_total"] == 5


def test_stats_fails_on_a_wrong_total_or_node_count() -> None:
    stale = CHECKERS["stats"](ctx_for(stats_run(declared=True, total=1, nodes={"n1": 3, "n2": 2})), {})
    assert stale.status == "fail" and problems(stale) == ["total 1, fed 5"]
    overwritten = CHECKERS["stats"](ctx_for(stats_run(declared=True, total=5, nodes={"n1": 1, "n2": 2})), {})
    assert overwritten.status == "fail" and problems(overwritten) == ["node n1: count 1, fed 3"]
    missing = CHECKERS["stats"](ctx_for(stats_run(declared=True, total=5, nodes={"n2": 2})), {})
    assert missing.status == "fail"
    assert CHECKERS["stats"](ctx_for(stats_run(declared=True, total=4)), {"tolerance": 1}).status == "pass"


def test_stats_fails_when_the_declared_message_never_came() -> None:
    verdict = CHECKERS["stats"](ctx_for(stats_run(declared=True, error="no stats_update message within 3s")), {})
    assert verdict.status == "fail" and "no stats_update" in verdict.summary


def test_stats_not_applicable_without_a_declaration_or_a_reading() -> None:
    verdict = CHECKERS["stats"](ctx_for(stats_run(declared=False)), {})
    assert verdict.status == "unknown" and verdict.unknown_reason == "not_applicable"
    assert "declares no stats" in verdict.summary
    assert CHECKERS["stats"](ctx_for(History()), {}).unknown_reason == "not_applicable"


def test_stats_option_is_checked() -> None:
    with pytest.raises(ValueError, match="stats: unknown option"):
        CHECKERS["stats"](ctx_for(History()), {"tolerence": 1})


def test_parse_counts_reads_the_declared_paths() -> None:
    spec = StatsSpec(message="stats_update", total="totals.events", nodes="nodes", node_count="events")
    message = {"type": "stats_update", "totals": {"events": 7}, "nodes": {"n1": {"events": 4}, "n2": {}}}
    assert parse_counts(spec, message) == {"total": 7, "nodes": {"n1": 4, "n2": None}}
    assert parse_counts(StatsSpec(message="s", total="count"), {"count": True}) == {"total": None}


def test_the_bundled_monitor_declares_its_stats_and_third_party_targets_do_not() -> None:
    assert bundled_monitor().stats == StatsSpec("stats_update", "totals.events", nodes="nodes", node_count="events")
    for name in ("centrifugo", "socketio", "ws_broadcaster"):
        assert load_target(TARGETS_DIR / f"{name}.yaml").stats is None


def test_stats_nodes_and_node_count_go_together() -> None:
    raw = {"name": "x", "command": ["x"], "stats": {"message": "m", "total": "t", "nodes": "n"}}
    with pytest.raises(TargetError, match=r"stats\.node_count"):
        parse_target(raw, "x.yaml")


def test_no_error_logs_warning_budget() -> None:
    h = History()
    log(h, 0.1, 1, "monitor started")
    log(h, 0.2, 2, "client 3 went away", "WARNING")
    log(h, 0.3, 3, "client 4 went away", "WARN")
    verdict = CHECKERS["no_error_logs"](ctx_for(h), {})
    assert verdict.status == "fail"
    assert "2 warning line(s) (budget 0)" in verdict.summary
    assert [e["lineno"] for e in verdict.evidence] == [2, 3]
    assert CHECKERS["no_error_logs"](ctx_for(h), {"warnings": 1}).status == "fail"
    passed = CHECKERS["no_error_logs"](ctx_for(h), {"warnings": 2})
    assert passed.status == "pass" and passed.figures["warnings"] == 2
    assert CHECKERS["no_error_logs"](ctx_for(h), {"warning_levels": ["NOTICE"]}).status == "pass"
    assert CHECKERS["no_error_logs"](ctx_for(h), {"allow": ["went away"]}).status == "pass"


def test_no_error_logs_errors_and_warnings_together() -> None:
    h = History()
    log(h, 0.1, 1, "boom", "ERROR")
    log(h, 0.2, 2, "client went away", "WARNING")
    verdict = CHECKERS["no_error_logs"](ctx_for(h), {"warnings": 1})
    assert verdict.status == "fail" and verdict.summary.startswith("1 error line(s)")
    assert [e["lineno"] for e in verdict.evidence] == [1]


def test_malformed_input_frames_cover_each_kind() -> None:
    sent = frames(20_000)
    assert "{not json" in sent and json.dumps({"type": "no_such_request"}) in sent
    assert json.dumps({"type": 5}) in sent and any(isinstance(f, bytes) for f in sent)
    assert max(len(f) for f in sent) > 20_000
    assert not any(isinstance(f, str) and f.startswith("[[[") for f in sent)
    assert frames(20_000, nesting=3)[-1] == "[[[]]]"


def test_malformed_input_params_are_checked() -> None:
    assert FAULTS["malformed_input"] is MalformedInput
    with pytest.raises(HarnessError, match="must be an integer"):
        make_fault(FaultSpec("bad", "malformed_input", None, {"clients": "many"}))
    with pytest.raises(HarnessError, match="unknown params"):
        make_fault(FaultSpec("bad", "malformed_input", None, {"depth": 3}))
    assert make_fault(FaultSpec("bad", "malformed_input", None, {})).params["huge_bytes"] > 1024 * 1024
