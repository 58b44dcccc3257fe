"""Client lifecycle checks on hand-made histories: eviction ends the connection, a reconnected client is
judged afresh, and the leaks check."""

from __future__ import annotations

from typing import Any

import pytest

from harness.checkers import CHECKERS, CohortInfo
from harness.history import History
from tests.test_checkers import close, connect, ctx_for, eviction_history, rec


def sockets(h: History, points: list[tuple[float, int, list[int]]]) -> None:
    """Metrics samples with the registry gauge and the target's ESTABLISHED connections (remote ports)."""
    for t, registry, peers in points:
        rec(h, t, "metrics", clients=registry, values={}, peers=peers)


OLD = [101, 102, 103, 104, 900]  # the four clients' connections and the harness's metrics scrape
GOOD = [101, 102, 900]  # g-0 and g-1 stay


def test_eviction_fails_when_the_registry_drops_but_the_connections_stay() -> None:
    h = eviction_history([], stuck_close_t=None)
    sockets(h, [(0.6, 4, OLD), (1.5, 4, OLD), (2.0, 2, OLD), (3.0, 2, OLD), (5.0, 2, OLD), (7.0, 2, OLD)])
    verdict = CHECKERS["eviction"](ctx_for(h), {"cohort": "victims", "within": 3.0})
    assert verdict.status == "fail", verdict.summary
    assert "connections stayed open" in verdict.summary and "2 more connection(s)" in verdict.summary


def test_eviction_passes_when_registry_and_connections_both_drop() -> None:
    h = eviction_history([], stuck_close_t=None)
    sockets(h, [(0.6, 4, OLD), (1.5, 4, OLD), (2.0, 2, OLD), (2.5, 2, GOOD), (4.0, 2, GOOD)])
    verdict = CHECKERS["eviction"](ctx_for(h), {"cohort": "victims", "within": 3.0})
    assert verdict.status == "pass", verdict.summary
    assert verdict.figures["evicted_after_s"] == pytest.approx(1.5)


def test_eviction_new_connections_after_the_fault_are_not_the_victims_kept() -> None:
    """Connections opened after the fault (reconnects held by a cut proxy) are not the old ones."""
    h = eviction_history([], stuck_close_t=None)
    sockets(h, [(0.6, 4, OLD), (2.0, 2, OLD), (2.5, 2, [*GOOD, 201, 202]), (4.0, 2, [*GOOD, 201, 202])])
    verdict = CHECKERS["eviction"](ctx_for(h), {"cohort": "victims", "within": 3.0})
    assert verdict.status == "pass", verdict.summary


def test_eviction_without_a_socket_count_judges_the_registry_alone() -> None:
    h = eviction_history([(1.5, 4), (2.0, 2), (4.5, 2)])
    verdict = CHECKERS["eviction"](ctx_for(h), {"cohort": "victims", "within": 3.0})
    assert verdict.status == "pass", verdict.summary


def watched_stuck(h: History, *, seen_close_t: float | None) -> None:
    """Two stuck readers connected straight to the target, whose send paths the fault watched."""
    connect(h, 0.0, "g-0", "good")
    rec(h, 1.0, "fault_start", fault="stuck", type="stuck_reader", cohort="stuck", params={})
    for i in range(2):
        rec(h, 1.1, "connect", client=f"stuck-{i}", cohort="stuck", attempt=1)
    figures = {"tx_max[stuck-0]": 9000, "tx_max[stuck-1]": 9000}
    rec(h, 2.0, "fault_bite", fault="stuck", type="stuck_reader", cohort="stuck", bit=True, how="full",
        figures=figures, full_t=2.0)  # fmt: skip
    for i in range(2):
        if seen_close_t is not None:
            rec(h, seen_close_t, "close", client=f"stuck-{i}", cohort="stuck", code=None, by="error", reason="",
                how="reset")  # fmt: skip
    rec(h, 4.0, "fault_heal", fault="stuck", type="stuck_reader", cohort="stuck")
    for i in range(2):
        if seen_close_t is None:
            rec(h, 4.0, "close", client=f"stuck-{i}", cohort="stuck", code=None, by="client", reason="rst")
    for t in (1.5, 2.5, 3.5, 4.5):
        rec(h, t, "metrics", clients=3 if t < 2.2 else 1, values={})


def test_eviction_a_watched_victim_that_saw_the_target_reset_it_was_not_held() -> None:
    """The victim noticed the reset before the socket watch sampled the target's side: still ended."""
    h = History()
    watched_stuck(h, seen_close_t=2.3)
    cohorts = {"good": CohortInfo("good", 1, "probe"), "stuck": CohortInfo("stuck", 0, "probe")}
    verdict = CHECKERS["eviction"](ctx_for(h, cohorts=cohorts), {"cohort": "stuck", "within": 3.0})
    assert verdict.status == "pass", verdict.summary
    assert "seen by the victim" in verdict.summary


def test_eviction_a_watched_victim_held_until_the_heal_fails_whatever_the_registry() -> None:
    h = History()
    watched_stuck(h, seen_close_t=None)
    cohorts = {"good": CohortInfo("good", 1, "probe"), "stuck": CohortInfo("stuck", 0, "probe")}
    verdict = CHECKERS["eviction"](ctx_for(h, cohorts=cohorts), {"cohort": "stuck", "within": 3.0})
    assert verdict.status == "fail" and "until the harness closed it at heal" in verdict.summary


def test_eviction_a_client_another_fault_hit_counts_again_once_it_reconnected() -> None:
    """Another cohort's client was hit earlier and reconnected: its new connection is legitimately in
    the registry, not a suspect whose entry could hide the victims'."""
    h = History()
    for client, cohort in (("g-0", "good"), ("o-0", "other"), ("v-0", "victims")):
        connect(h, 0.0, client, cohort)
    rec(h, 0.5, "fault_start", fault="drop", type="mass_drop", cohort="other", params={})
    close(h, 0.5, "o-0", "other", None, "client")
    connect(h, 0.8, "o-0", "other")  # a new connection
    rec(h, 1.0, "fault_start", fault="cut", type="network_cut", cohort="victims", params={})
    for t, size in ((1.5, 3), (2.0, 2), (3.0, 2), (4.5, 2)):
        rec(h, t, "metrics", clients=size, values={})
    cohorts = {name: CohortInfo(name, 1, "probe") for name in ("good", "other", "victims")}
    verdict = CHECKERS["eviction"](ctx_for(h, cohorts=cohorts), {"cohort": "victims", "within": 3.0})
    assert verdict.status == "pass", verdict.summary
    assert verdict.figures["evicted_after_s"] == pytest.approx(1.0)


def test_eviction_a_suspect_still_on_its_hit_connection_is_not_counted() -> None:
    """Without the reconnect, the other cohort's client stays a suspect: registry 2 is not enough."""
    h = History()
    for client, cohort in (("g-0", "good"), ("o-0", "other"), ("v-0", "victims")):
        connect(h, 0.0, client, cohort)
    rec(h, 0.5, "fault_start", fault="cut0", type="network_cut", cohort="other", params={})
    rec(h, 1.0, "fault_start", fault="cut", type="network_cut", cohort="victims", params={})
    for t, size in ((1.5, 3), (2.0, 2), (3.0, 2), (4.5, 2)):
        rec(h, t, "metrics", clients=size, values={})
    cohorts = {name: CohortInfo(name, 1, "probe") for name in ("good", "other", "victims")}
    verdict = CHECKERS["eviction"](ctx_for(h, cohorts=cohorts), {"cohort": "victims", "within": 3.0})
    assert verdict.status == "fail", verdict.summary



def lag_history(other_closes_at: float | None) -> History:
    """A slow_close (2 s) on another cohort's client, then a cut of the victims; the registry drops to 2."""
    h = History()
    for client, cohort in (("g-0", "good"), ("o-0", "other"), ("v-0", "victims")):
        connect(h, 0.0, client, cohort)
    rec(h, 0.5, "fault_start", fault="sc", type="slow_close", cohort="other", params={"delay": 2000})
    rec(h, 1.0, "fault_start", fault="cut", type="network_cut", cohort="victims", params={})
    for t, size in ((1.5, 3), (2.0, 2), (3.0, 2), (4.5, 2)):
        rec(h, t, "metrics", clients=size, values={})
    if other_closes_at is not None:
        close(h, other_closes_at, "o-0", "other", None, "error")
    for client, cohort in (("g-0", "good"), ("o-0", "other"), ("v-0", "victims")):
        close(h, 9.0, client, cohort, 1000, "client")
    return h


@pytest.mark.parametrize(("other_closes_at", "status"), [(None, "pass"), (3.5, "fail")])
def test_eviction_a_client_a_slow_close_hit_counts_while_its_connection_outlasts_the_delay(
    other_closes_at: float | None, status: str
) -> None:
    """slow_close only delays a close: a client it hit that kept its connection the delay (and a margin)
    past a sample was in the registry rightly then. One whose connection ended within that time may have
    been dropped by the target at the sample, so it still cannot vouch for the count."""
    h = lag_history(other_closes_at)
    cohorts = {name: CohortInfo(name, 1, "probe") for name in ("good", "other", "victims")}
    verdict = CHECKERS["eviction"](ctx_for(h, cohorts=cohorts), {"cohort": "victims", "within": 3.0})
    assert verdict.status == status, verdict.summary


# -- leaks ---------------------------------------------------------------------------------------


def leak_history(after: dict[str, float], *, resources: bool = True, bit: bool = True) -> History:
    """Baseline before the churn (t=1..2), the fault from t=2 to 8, the steady state after from 8 to 10."""
    h = History()
    base = {"num_fds": 16, "num_threads": 2, "rss_bytes": 40e6}
    gauges = {"tasks": 17, "objects": 4}
    for i in range(10):
        rec(h, 1.0 + i * 0.1, "metrics", clients=4, values=base, resources=gauges if resources else {})
    rec(h, 2.0, "fault_start", fault="behind", type="stuck_churn", cohort="behind", params={})
    rec(h, 8.0, "fault_bite", fault="behind", type="stuck_churn", cohort="behind", bit=bit, how="churned", figures={})
    rec(h, 8.0, "fault_heal", fault="behind", type="stuck_churn", cohort="behind")
    rec(h, 8.0, "step", name="steady_after", detail=2.0)
    for i in range(10):
        t = 9.0 + i * 0.1
        values = {**base, **{k: v for k, v in after.items() if k in base}}
        later = {**gauges, **{k: v for k, v in after.items() if k in gauges}}
        rec(h, t, "metrics", clients=4, values=values, resources=later if resources else {})
    return h


def leaks(h: History, **options: Any) -> Any:
    return CHECKERS["leaks"](ctx_for(h), {"cohort": "behind", **options})


def test_leaks_pass_when_everything_returns_to_its_baseline() -> None:
    verdict = leaks(leak_history({"num_fds": 18, "tasks": 18, "rss_bytes": 50e6}))
    assert verdict.status == "pass", verdict.summary
    assert verdict.figures["num_fds_before"] == 16 and verdict.figures["tasks_after"] == 18


@pytest.mark.parametrize("measure, value", [("num_fds", 40), ("tasks", 41), ("objects", 28), ("rss_bytes", 90e6)])
def test_leaks_fail_on_any_measure_that_stays_up(measure: str, value: float) -> None:
    verdict = leaks(leak_history({measure: value}))
    assert verdict.status == "fail", verdict.summary
    assert [e["measure"] for e in verdict.evidence] == [measure]


def test_leaks_judge_the_process_alone_without_gauges() -> None:
    verdict = leaks(leak_history({"num_fds": 40}, resources=False))
    assert verdict.status == "fail" and "tasks_before" not in verdict.figures


def test_leaks_unknown_when_the_target_restarted_between_the_baseline_and_the_end() -> None:
    """A restarted process starts afresh: its figures after say nothing about what the first one kept."""
    h = leak_history({"num_fds": 40})
    rec(h, 5.0, "target", event="started", pid=2, code=None)
    verdict = leaks(h)
    assert (verdict.status, verdict.unknown_reason) == ("unknown", "unreliable"), verdict.summary
    assert "restarted at t=5.00s" in verdict.summary


def test_leaks_not_applicable_without_pid_or_gauges() -> None:
    h = History()
    rec(h, 1.0, "metrics", clients=None, values={})
    rec(h, 2.0, "fault_start", fault="behind", type="stuck_churn", cohort="behind", params={})
    verdict = leaks(h)
    assert (verdict.status, verdict.unknown_reason) == ("unknown", "not_applicable")


def test_leaks_unknown_when_the_churn_did_not_bite() -> None:
    verdict = leaks(leak_history({"num_fds": 40}, bit=False))
    assert (verdict.status, verdict.unknown_reason) == ("unknown", "did_not_bite")


def test_leaks_not_applicable_when_no_fault_churned_the_cohort() -> None:
    verdict = CHECKERS["leaks"](ctx_for(leak_history({})), {"cohort": "elsewhere"})
    assert (verdict.status, verdict.unknown_reason) == ("unknown", "not_applicable")


# -- rate limit ----------------------------------------------------------------------------------


def chatty_history(*, error_t: float | None = None, close_t: float | None = None, bit: bool = True) -> History:
    h = History()
    connect(h, 0.0, "chatty-0", "chatty")
    rec(h, 1.0, "fault_start", fault="chatty", type="steady_requests", cohort="chatty", params={"rate": 25.0})
    if error_t is not None:
        rec(h, error_t, "notice", client="chatty-0", type="error", body={"code": "rate_limited"})
    if close_t is not None:
        close(h, close_t, "chatty-0", "chatty", 1008, "server")
    figures = {"clients": 1, "requests_sent": 250, "requests_planned": 250, "rate": 25.0}
    rec(h, 11.0, "fault_bite", fault="chatty", type="steady_requests", cohort="chatty", bit=bit, how="sent",
        figures=figures)  # fmt: skip
    rec(h, 11.0, "fault_heal", fault="chatty", type="steady_requests", cohort="chatty")
    return h


def rate_limit(h: History) -> Any:
    cohorts = {"chatty": CohortInfo("chatty", 1, "probe")}
    return CHECKERS["rate_limit"](ctx_for(h, cohorts=cohorts), {"cohort": "chatty"})


def test_rate_limit_passes_when_legitimate_clients_are_left_alone() -> None:
    verdict = rate_limit(chatty_history(error_t=0.5))  # an error before the chatter is not the limiter's
    assert verdict.status == "pass", verdict.summary


@pytest.mark.parametrize("kind", ["error", "close"])
def test_rate_limit_fails_on_an_error_answer_or_a_close(kind: str) -> None:
    h = chatty_history(error_t=6.0) if kind == "error" else chatty_history(close_t=11.5)
    verdict = rate_limit(h)
    assert verdict.status == "fail", verdict.summary


def test_rate_limit_is_unknown_without_chatter_or_when_it_could_not_chat() -> None:
    assert rate_limit(History()).unknown_reason == "not_applicable"
    assert rate_limit(chatty_history(bit=False)).unknown_reason == "did_not_bite"
