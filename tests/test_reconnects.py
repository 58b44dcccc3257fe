"""Recovery judged by fed ids, on hand-built histories: a reconnect of a server without seq that loses
what was fed while the client was away is a silent gap; resumes, resyncs and declared semantics are not;
ids received twice and seqs going back are failures. And the identity check that comes first."""

from __future__ import annotations

from harness.checkers import CHECKERS, CohortInfo, run_checks
from harness.history import History
from tests.test_checkers import EPOCH, batch, close, connect, ctx_for, feed, rec

COHORTS = {"steady": CohortInfo("steady", 1, "probe"), "cut": CohortInfo("cut", 1, "probe")}
RECOVERY = {"cohort": "cut", "within": 3.0}


def cut_history(*, replay: list[str], notice: str | None = None, epoch: str = EPOCH,
                seq: bool = False, after: list[str] | None = None, hole: str | None = None) -> History:  # fmt: skip
    """e1..e8 fed at t=1..8; s-0 gets each; c-0 gets e1-e2, breaks at t=3 (cut 2.5 to heal at 4),
    reconnects at t=5.5 with ``notice``, gets ``replay`` then ``after`` (default e6-e8, live); the
    batch of the ``hole`` event comes without it."""
    h = History()
    connect(h, 0.0, "s-0", "steady")
    connect(h, 0.0, "c-0", "cut")
    for i in range(1, 9):
        feed(h, float(i), f"e{i}")
        batch(h, i + 0.05, "s-0", i if seq else None, [f"e{i}"])
    for i in (1, 2):
        batch(h, i + 0.06, "c-0", i if seq else None, [f"e{i}"])
    rec(h, 2.5, "fault_start", fault="cut", type="network_cut", cohort="cut", params={})
    close(h, 3.0, "c-0", "cut", None, "error")
    rec(h, 4.0, "fault_heal", fault="cut", type="network_cut", cohort="cut")
    connect(h, 5.5, "c-0", "cut", seq=5 if seq else None, epoch=epoch)  # type: ignore[arg-type]
    if notice is not None:
        rec(h, 5.52, "notice", client="c-0", type=notice, body={})
    for event in replay:
        batch(h, 5.53, "c-0", int(event[1:]) if seq else None, [] if event == hole else [event])
    for event in after if after is not None else ["e6", "e7", "e8"]:
        batch(h, int(event[1:]) + 0.06, "c-0", int(event[1:]) if seq else None, [event])
    return h


def judge(h: History, **ctx: object) -> dict:
    verdict = CHECKERS["recovery"](ctx_for(h, cohorts=COHORTS, **ctx), dict(RECOVERY))
    return {"status": verdict.status, "summary": verdict.summary, "evidence": verdict.evidence,
            "figures": verdict.figures}  # fmt: skip


def test_a_reconnect_without_seq_that_misses_fed_events_is_a_silent_gap() -> None:
    got = judge(cut_history(replay=[]))
    assert got["status"] == "fail" and got["summary"].startswith("silent gap")
    gap = got["evidence"][0]
    assert (gap["client"], gap["problem"], gap["fault"], gap["missing"]) == ("c-0", "silent gap", "cut", 3)
    assert gap["first_missing_ids"] == "e3, e4, e5"
    assert got["figures"]["missed_events"] == 3


def test_a_resume_that_replays_the_missed_events_passes() -> None:
    got = judge(cut_history(replay=["e3", "e4", "e5"], notice="resumed"))
    assert got["status"] == "pass", got["summary"]
    assert "no silent gap" in got["summary"] and got["figures"]["gaps"] == 0


def test_events_fed_just_before_the_reconnect_are_excused_by_the_settle_margin() -> None:
    got = judge(cut_history(replay=["e3", "e4"], notice="resumed"))  # e5 fed at 5.0, reconnect at 5.5
    assert got["status"] == "fail" and got["evidence"][0]["first_missing_ids"] == "e5"
    loose = CHECKERS["recovery"](ctx_for(cut_history(replay=["e3", "e4"]), cohorts=COHORTS),
                                 {**RECOVERY, "settle_s": 0.6})  # fmt: skip
    assert loose.status == "pass", loose.summary


def test_a_resync_or_a_new_epoch_excuses_the_gap() -> None:
    assert judge(cut_history(replay=[], notice="resync_required"))["status"] == "pass"
    assert judge(cut_history(replay=[], epoch="epoch-2"))["status"] == "pass"


def test_a_seqd_resume_that_drops_ids_is_a_gap_after_resume() -> None:
    """The seqs are all there, but one replayed batch lacks its event: only the ids show it."""
    got = judge(cut_history(replay=["e3", "e4", "e5"], notice="resumed", seq=True, hole="e4"))
    problems = [e["problem"] for e in got["evidence"]]
    assert got["status"] == "fail" and "gap after resume" in problems
    assert next(e for e in got["evidence"] if e["problem"] == "gap after resume")["first_missing_ids"] == "e4"


def test_ids_received_twice_across_a_reconnect_fail() -> None:
    got = judge(cut_history(replay=["e2", "e3", "e4", "e5"], notice="resumed"))
    dup = next(e for e in got["evidence"] if e["problem"] == "duplicate after reconnect")
    assert got["status"] == "fail" and (dup["duplicated"], dup["first_duplicated_ids"]) == (1, "e2")


def test_a_seq_going_back_across_a_reconnect_fails() -> None:
    got = judge(cut_history(replay=["e3", "e5", "e4"], notice="resumed", seq=True))
    back = next(e for e in got["evidence"] if e["problem"] == "seq went back after reconnect")
    assert got["status"] == "fail" and (back["seq"], back["after_seq"]) == (4, 5)


def test_declared_semantics_allow_the_gap_and_say_so() -> None:
    got = judge(cut_history(replay=[]), semantics={"gaps_after_reconnect": "allowed"})
    assert got["status"] == "pass"
    assert "1 gap(s), 3 event(s) missed, allowed by the target's declared semantics" in got["summary"]
    duplicated = judge(cut_history(replay=["e2"]), semantics={"gaps_after_reconnect": "allowed"})
    assert duplicated["status"] == "fail", "only gaps are allowed, not duplicates"


def test_a_fault_that_disconnected_nobody_did_not_bite() -> None:
    h = History()
    connect(h, 0.0, "c-0", "cut")
    feed(h, 1.0, "e1")
    batch(h, 1.05, "c-0", None, ["e1"])
    rec(h, 2.0, "fault_start", fault="cut", type="network_cut", cohort="cut", params={})
    rec(h, 3.0, "fault_heal", fault="cut", type="network_cut", cohort="cut")
    verdict = CHECKERS["recovery"](ctx_for(h, cohorts=COHORTS), RECOVERY)
    assert (verdict.status, verdict.unknown_reason) == ("unknown", "did_not_bite")
    assert verdict.summary.startswith("the fault did not take effect: no client of cohort 'cut' was disconnected")


# ---------------------------------------------------------------------------------------------
# identity


def wrongly_mapped() -> History:
    h = History()
    connect(h, 0.0, "s-0", "steady")
    for i in range(1, 41):
        feed(h, i / 10, f"e{i}")
        batch(h, i / 10 + 0.05, "s-0", i, [None] if i != 7 else ["e7"])
    return h


def test_batches_without_fed_ids_make_the_id_checkers_an_error_naming_the_mapping() -> None:
    h = wrongly_mapped()
    ctx = ctx_for(h, cohorts=COHORTS, stored_ids=[f"e{i}" for i in range(1, 41)], event_id_field="piece_id")
    verdicts = run_checks(ctx, {"no_error_logs": {}, "delivery": {"cohorts": ["steady"]}, "persistence": {}})
    assert [(v.checker, v.status) for v in verdicts][:1] == [("delivery", "error")]
    by = {v.checker: v.status for v in verdicts}
    assert by["persistence"] == "pass"  # judged from the store, which does not depend on the message mapping
    assert "no_error_logs" in by
    summary = verdicts[0].summary
    assert summary.startswith("clients received 40 batches but only 1 of 40 fed ids were in them")
    assert "messages.event_id (now 'piece_id')" in summary
    assert verdicts[0].evidence[0]["received_sample"] == "no event had a field 'piece_id'"


def test_the_identity_check_lets_a_run_with_matching_ids_through() -> None:
    h = History()
    connect(h, 0.0, "s-0", "steady")
    for i in range(1, 5):
        feed(h, float(i), f"e{i}")
        batch(h, i + 0.05, "s-0", i, [f"e{i}"])
    verdicts = run_checks(ctx_for(h, cohorts=COHORTS), {"delivery": {"cohorts": ["steady"]}})
    assert verdicts[0].status == "pass", verdicts[0].summary


# ---------------------------------------------------------------------------------------------
# eviction: by the server, or only by the harness at the heal


def stuck_history(*, drop_t: float, close_t: float, by: str, how: str | None = None) -> History:
    """Two stuck readers hit at t=1, healed (the harness closes their sockets) at t=4."""
    h = History()
    connect(h, 0.0, "g-0", "good")
    rec(h, 1.0, "fault_start", fault="stuck", type="stuck_reader", cohort="stuck", params={})
    for client in ("s-0", "s-1"):
        rec(h, 1.0, "connect", client=client, cohort="stuck", attempt=1)
    for t in sorted({1.5, 3.9, drop_t}):
        rec(h, t, "metrics", clients=3 if t < drop_t else 1, values={})
    for client in ("s-0", "s-1"):
        rec(h, close_t, "close", client=client, cohort="stuck", code=None, by=by, reason="rst", how=how)
    rec(h, 4.0, "fault_heal", fault="stuck", type="stuck_reader", cohort="stuck")
    return h


STUCK = {"good": CohortInfo("good", 1, "probe"), "stuck": CohortInfo("stuck", 0, "stuck")}


def test_a_registry_drop_only_after_the_heal_is_never_an_eviction() -> None:
    h = stuck_history(drop_t=4.2, close_t=4.0, by="client")
    verdict = CHECKERS["eviction"](ctx_for(h, cohorts=STUCK), {"cohort": "stuck", "within": 2.5})  # up at 3.5
    assert verdict.status == "fail"
    assert "never evicted: the server still held the connection until the harness closed the socket at heal " \
           "(t=4.00s)" in verdict.summary  # fmt: skip


def test_a_heal_before_the_bound_leaves_the_eviction_unknown() -> None:
    h = stuck_history(drop_t=4.2, close_t=4.0, by="client")  # healed at 4, the 5 s bound is up at 6
    verdict = CHECKERS["eviction"](ctx_for(h, cohorts=STUCK), {"cohort": "stuck", "within": 5.0})
    assert (verdict.status, verdict.unknown_reason) == ("unknown", "did_not_bite"), verdict.summary


def test_an_eviction_says_how_the_victims_saw_it() -> None:
    h = stuck_history(drop_t=2.5, close_t=2.4, by="error", how="reset")
    verdict = CHECKERS["eviction"](ctx_for(h, cohorts=STUCK), {"cohort": "stuck", "within": 5.0})
    assert verdict.status == "pass", verdict.summary
    assert verdict.summary.endswith("evicted by the server by t=2.50s (as the victims saw it: 2 connection reset)")
    fin = stuck_history(drop_t=2.5, close_t=2.4, by="error", how="fin")
    assert "2 FIN" in CHECKERS["eviction"](ctx_for(fin, cohorts=STUCK), {"cohort": "stuck"}).summary
