"""Figures that lie fail: latencies no clock can give, server counters that do not match the feed,
warnings where a normal event should be quiet."""

from __future__ import annotations

from harness.checkers import CHECKERS
from harness.history import History
from tests.test_checkers import WALL, connect, ctx_for, feed, problems, rec


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
