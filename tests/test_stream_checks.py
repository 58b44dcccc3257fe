"""The checks of the stream's numbering, resume and views against small hand-built histories: a resume
that repeats or reorders batches or crosses an epoch change, an init that announces a wrong seq, a
resume request answered with batches the client had, a view that leaks or skips batches. Each passes
on a good history, fails on a bad one, and says "not applicable" when the target gives nothing to judge.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.checkers import CHECKERS, CohortInfo, Verdict, split_connections
from harness.dialects import Position, Ready, make_dialect
from harness.history import History
from harness.scenario import ScenarioError, parse
from tests.test_checkers import EPOCH, batch, close, ctx_for, cut_and_reconnect, feed, rec

VICTIMS = {"victims": CohortInfo("victims", 1, "probe")}
RECOVERY = {"cohort": "victims", "within": 3.0}


def problems(verdict: Verdict) -> list[str]:
    return [e.get("problem", "") for e in verdict.evidence]


def connect(h: History, t: float, client: str, cohort: str, *, seq: int | None = 0, epoch: str = EPOCH,
            since: int | None = None, view: Any = None) -> None:  # fmt: skip
    rec(h, t, "connect", client=client, cohort=cohort, attempt=1, since=since)
    extra = {} if view is None else {"view": view}
    rec(h, t + 0.01, "init", client=client, epoch=epoch, seq=seq, **extra)


# ---------------------------------------------------------------------------------------------
# recovery: what a resume replays, and a resume across an epoch change


def test_recovery_fails_a_resume_that_replays_a_batch_the_client_had() -> None:
    verdict = CHECKERS["recovery"](ctx_for(cut_and_reconnect("resumed", [2, 3, 4]), cohorts=VICTIMS), RECOVERY)
    assert verdict.status == "fail"
    assert {"duplicate after reconnect", "seq went back after reconnect"} <= set(problems(verdict))


def test_recovery_fails_a_resume_that_replays_out_of_order() -> None:
    verdict = CHECKERS["recovery"](ctx_for(cut_and_reconnect("resumed", [4, 3]), cohorts=VICTIMS), RECOVERY)
    assert verdict.status == "fail"
    back = next(e for e in verdict.evidence if e["problem"] == "seq went back after reconnect")
    assert (back["seq"], back["after_seq"]) == (3, 4)


def test_recovery_fails_resumed_across_an_epoch_change() -> None:
    h = cut_and_reconnect("resumed", [3, 4], epoch="epoch-2")
    verdict = CHECKERS["recovery"](ctx_for(h, cohorts=VICTIMS), RECOVERY)
    assert verdict.status == "fail"
    (item,) = [e for e in verdict.evidence if e["problem"] == "resumed across an epoch change"]
    assert (item["epoch_before"], item["epoch"], item["last_seq_before"]) == (EPOCH, "epoch-2", 2)


def test_recovery_fails_a_gap_right_after_a_resync() -> None:
    # Told to resync with init seq 4, the client then gets seq 6: seq 5 went out after its init.
    h = cut_and_reconnect("resync_required", [])
    h.records = [r for r in h.records if not (r["kind"] == "batch" and r.get("seq") == 5)]
    batch(h, 6.0, "v-0", 6, ["e6"])
    verdict = CHECKERS["recovery"](ctx_for(h, cohorts=VICTIMS), RECOVERY)
    assert verdict.status == "fail"
    gap = verdict.evidence[0]
    assert (gap["problem"], gap["first_missing_seq"], gap["last_seq_before"]) == ("gap after resync", 5, 4)


def test_recovery_after_a_resync_or_a_new_epoch_still_passes() -> None:
    for h in (cut_and_reconnect("resync_required", []), cut_and_reconnect(None, [], epoch="epoch-2", init_seq=0)):
        verdict = CHECKERS["recovery"](ctx_for(h, cohorts=VICTIMS), RECOVERY)
        assert verdict.status == "pass", verdict.summary


# ---------------------------------------------------------------------------------------------
# delivery: the init's seq


def fresh_connection(init_seq: int, first_seq: int, **connect_kwargs: Any) -> History:
    h = History()
    connect(h, 0.0, "g-0", "good", seq=init_seq, **connect_kwargs)
    for i, seq in enumerate(range(first_seq, first_seq + 3), start=1):
        feed(h, float(i), f"e{seq}")
        batch(h, i + 0.05, "g-0", seq, [f"e{seq}"])
    return h


ONE = {"good": CohortInfo("good", 1, "probe")}


def test_delivery_fails_a_batch_at_or_below_the_inits_seq_when_no_resume_was_asked() -> None:
    verdict = CHECKERS["delivery"](ctx_for(fresh_connection(5, 5), cohorts=ONE), {})
    assert verdict.status == "fail"
    item = verdict.evidence[0]
    assert item["problem"] == "batch at or below the init's seq, no resume asked"
    assert (item["seq"], item["init_seq"]) == (5, 5)
    assert verdict.figures["before_init"] == 1


def test_delivery_fails_a_gap_between_the_init_and_the_first_batch() -> None:
    verdict = CHECKERS["delivery"](ctx_for(fresh_connection(5, 7), cohorts=ONE), {})
    assert verdict.status == "fail" and problems(verdict)[0] == "lost seq"


def test_delivery_takes_batches_below_the_init_as_replays_when_a_resume_was_asked_or_answered() -> None:
    asked = fresh_connection(5, 5, since=4)
    assert CHECKERS["delivery"](ctx_for(asked, cohorts=ONE), {}).status == "pass"
    answered = fresh_connection(5, 5)
    rec(answered, 0.02, "notice", client="g-0", type="resumed", body={})
    assert CHECKERS["delivery"](ctx_for(answered, cohorts=ONE), {}).status == "pass"
    without_connects = [r for r in fresh_connection(5, 5).records if r["kind"] != "connect"]
    (conn,) = split_connections(without_connects)
    assert conn.resume_asked() is None  # not judged: the history does not say


def test_delivery_without_seqs_judges_no_init_seq() -> None:
    h = History()
    connect(h, 0.0, "g-0", "good", seq=None)
    feed(h, 1.0, "e1")
    batch_without_seq = {"client": "g-0", "seq": None, "ids": ["e1"], "sent_at": None, "recv_at": None}
    rec(h, 1.05, "batch", **batch_without_seq)
    assert CHECKERS["delivery"](ctx_for(h, cohorts=ONE), {}).status == "pass"


def test_delivery_leaves_view_cohorts_to_the_views_checker() -> None:
    h = fresh_connection(0, 1)
    connect(h, 0.0, "v-0", "viewers", view=["n1"])
    cohorts = {**ONE, "viewers": CohortInfo("viewers", 1, "probe", "n1")}
    verdict = CHECKERS["delivery"](ctx_for(h, cohorts=cohorts), {})
    assert verdict.status == "pass" and verdict.figures["clients"] == 1


# ---------------------------------------------------------------------------------------------
# resume: a resume request on an open connection


RESUMERS = {"resumers": CohortInfo("resumers", 1, "probe")}


def resumed_connection(replay: list[int], answer: str | None = "resumed") -> History:
    """r-0 connects at seq 2, gets seqs 3-4 live, asks at t=3 to resume after 2, then ``answer`` and
    the ``replay``ed seqs, then seq 5 live."""
    h = History()
    connect(h, 0.0, "r-0", "resumers", seq=2)
    for seq in (3, 4):
        feed(h, seq - 2.0, f"e{seq}")
        batch(h, seq - 1.95, "r-0", seq, [f"e{seq}"])
    rec(h, 3.0, "resume_request", client="r-0", cohort="resumers", epoch=EPOCH, since=2)
    if answer is not None:
        rec(h, 3.01, "notice", client="r-0", type=answer, body={})
    for seq in replay:
        batch(h, 3.02, "r-0", seq, [f"e{seq}"])
    feed(h, 3.5, "e5")
    batch(h, 3.55, "r-0", 5, ["e5"])
    return h


def resume_verdict(h: History) -> Verdict:
    return CHECKERS["resume"](ctx_for(h, cohorts=RESUMERS), {"cohort": "resumers"})


def test_resume_passes_when_resumed_replays_nothing_the_client_had() -> None:
    verdict = resume_verdict(resumed_connection([]))
    assert verdict.status == "pass", verdict.summary
    assert (verdict.figures["requests"], verdict.figures["resumed"]) == (1, 1)
    assert resume_verdict(resumed_connection([], "resync_required")).status == "pass"


def test_resume_fails_a_replay_up_to_the_head() -> None:
    verdict = resume_verdict(resumed_connection([3, 4]))
    assert verdict.status == "fail"
    item = verdict.evidence[0]
    assert (item["problem"], item["seqs_again"], item["first_seq_again"], item["ids_again"]) == (
        "received again after resumed", 2, 3, 2)  # fmt: skip


def test_resume_fails_a_replay_at_or_below_the_seq_asked_from_and_out_of_order() -> None:
    below = resume_verdict(resumed_connection([2]))
    assert below.status == "fail" and problems(below) == ["replayed at or below the seq asked from"]
    h = History()
    connect(h, 0.0, "r-0", "resumers", seq=6)
    batch(h, 1.0, "r-0", 7, ["e7"])
    rec(h, 2.0, "resume_request", client="r-0", cohort="resumers", epoch=EPOCH, since=3)
    rec(h, 2.01, "notice", client="r-0", type="resumed", body={})
    for seq in (5, 4, 6):
        batch(h, 2.02, "r-0", seq, [f"e{seq}"])
    disorder = resume_verdict(h)
    assert disorder.status == "fail" and problems(disorder) == ["replay out of order"]
    assert disorder.evidence[0]["seq"] == 4


def test_resume_fails_an_unanswered_request_when_others_were_answered() -> None:
    h = resumed_connection([])
    rec(h, 3.6, "resume_request", client="r-0", cohort="resumers", epoch=EPOCH, since=5)
    close(h, 4.0, "r-0", "resumers", 1000, "client")
    verdict = resume_verdict(h)
    assert verdict.status == "fail" and problems(verdict) == ["resume request not answered"]


def test_resume_is_not_applicable_without_requests_or_answers() -> None:
    none_sent = History()
    connect(none_sent, 0.0, "r-0", "resumers")
    verdict = resume_verdict(none_sent)
    assert (verdict.status, verdict.unknown_reason) == ("unknown", "not_applicable")
    assert "sent a resume request" in verdict.summary
    for answer in (None, "error"):
        verdict = resume_verdict(resumed_connection([], answer))
        assert (verdict.status, verdict.unknown_reason) == ("unknown", "not_applicable"), answer
        assert "has no resume by message" in verdict.summary


# ---------------------------------------------------------------------------------------------
# views


VIEWERS = {"steady": CohortInfo("steady", 1, "probe"), "viewers": CohortInfo("viewers", 1, "probe", "n1")}


def view_history(batches: list[tuple[int, list[str]]], *, confirmed: Any = ("n1",)) -> History:
    """Events a1, b2, a3, b4 fed to nodes n1 (a*) and n2 (b*); w-0 watches n1 and gets ``batches``."""
    h = History()
    connect(h, 0.0, "w-0", "viewers", view=None if confirmed is None else list(confirmed))
    for i, event in enumerate(("a1", "b2", "a3", "b4"), start=1):
        rec(h, float(i), "feed", ids=[event], node="n1" if event.startswith("a") else "n2")
    for seq, ids in batches:
        batch(h, seq + 0.05, "w-0", seq, ids)
    return h


def views_verdict(h: History, options: dict[str, Any] | None = None) -> Verdict:
    return CHECKERS["views"](ctx_for(h, cohorts=VIEWERS), options or {})


GOOD_VIEW = [(1, ["a1"]), (2, []), (3, ["a3"]), (4, [])]


def test_views_pass_with_every_batch_and_only_the_views_events() -> None:
    verdict = views_verdict(view_history(GOOD_VIEW))
    assert verdict.status == "pass", verdict.summary
    assert (verdict.figures["clients"], verdict.figures["events_in_view"]) == (1, 2)


def test_views_fail_an_event_of_another_node() -> None:
    verdict = views_verdict(view_history([(1, ["a1"]), (2, ["b2"]), (3, ["a3"]), (4, [])]))
    assert verdict.status == "fail"
    item = verdict.evidence[0]
    assert (item["problem"], item["id"], item["node"], item["view"]) == ("event outside the view", "b2", "n2", "n1")


def test_views_fail_an_inverted_filter() -> None:
    verdict = views_verdict(view_history([(1, []), (2, ["b2"]), (3, []), (4, ["b4"])]))
    assert verdict.status == "fail"
    assert {"event outside the view", "fed event never received"} <= set(problems(verdict))
    assert verdict.figures["missing_ids"] == 2 and verdict.figures["outside_view"] == 2


def test_views_fail_skipped_empty_batches() -> None:
    verdict = views_verdict(view_history([(1, ["a1"]), (3, ["a3"])]))
    assert verdict.status == "fail"
    assert problems(verdict) == ["lost seq"] and verdict.evidence[0]["seq"] == 2


def test_views_fail_an_init_that_confirms_another_view() -> None:
    verdict = views_verdict(view_history(GOOD_VIEW, confirmed="all"))
    assert verdict.status == "fail" and problems(verdict) == ["init confirms another view"]


def test_views_not_applicable_without_a_confirmed_view_or_a_view_cohort() -> None:
    unconfirmed = views_verdict(view_history([(1, ["a1"]), (2, ["b2"])], confirmed=None))
    assert (unconfirmed.status, unconfirmed.unknown_reason) == ("unknown", "not_applicable")
    assert "confirmed a view" in unconfirmed.summary and unconfirmed.figures["unconfirmed"] == 1
    no_cohort = CHECKERS["views"](ctx_for(view_history(GOOD_VIEW)), {})
    assert (no_cohort.status, no_cohort.unknown_reason) == ("unknown", "not_applicable")
    named = views_verdict(view_history(GOOD_VIEW), {"cohorts": ["steady"]})
    assert named.unknown_reason == "not_applicable" and "steady ask for no view" in named.summary


# ---------------------------------------------------------------------------------------------
# dialects and scenarios


def test_monitor_dialect_asks_for_views_in_the_url_and_resumes_by_message() -> None:
    dialect = make_dialect()
    assert dialect.view_url("http://h/ws", "n1") == "http://h/ws?view=n1"
    assert dialect.view_url("http://h/ws?x=1", ["n1", "n2"]) == "http://h/ws?x=1&view=n1&view=n2"
    resume = dialect.resume_message(Position("e", 7))
    assert resume is not None and json.loads(resume) == {"type": "resume", "epoch": "e", "since": 7}
    (ready,) = dialect.parse('{"type":"init","epoch":"e","seq":3,"nodes":["n1"],"view":["n1"]}')
    assert ready == Ready("e", 3, ("n1",), ["n1"])


def test_dialects_without_views_or_a_resume_message_say_so() -> None:
    for spec in ("centrifugo", "socketio", {"name": "json", "resume": {"query": {"since": "s"}}}):
        dialect = make_dialect(spec)
        assert dialect.view_url("http://h/ws", "n1") is None
        assert dialect.resume_message(Position("e", 1)) is None
    json_dialect = make_dialect({"name": "json", "resume": {"message": {"op": "resume", "from": "{since}"}}})
    assert json_dialect.resume_message(Position("e", 4)) == '{"op":"resume","from":4}'


SCENARIO = {"name": "s", "method": [{"wait": 1}], "checks": {"views": {}}}


def test_cohorts_take_a_view_and_resume_after() -> None:
    cohorts = [{"name": "a", "clients": 1, "view": "n1"}, {"name": "b", "clients": 1, "view": ["n1", "n2"],
                                                           "resume_after": 0.5}]  # fmt: skip
    scenario = parse({**SCENARIO, "cohorts": cohorts}, "s.yaml")
    assert [(c.view, c.resume_after) for c in scenario.cohorts] == [("n1", None), (["n1", "n2"], 0.5)]


@pytest.mark.parametrize(
    ("cohort", "words"),
    [
        ({"name": "a", "clients": 1, "view": []}, "cohorts.0.view"),
        ({"name": "a", "clients": 1, "resume_after": -1}, "cohorts.0.resume_after"),
        ({"name": "a", "clients": 1, "kind": "stuck", "view": "n1"}, "cohorts.0.view: only probe cohorts"),
    ],
)
def test_bad_cohort_views_and_resume_after_name_the_field(cohort: dict[str, Any], words: str) -> None:
    with pytest.raises(ScenarioError, match=words):
        parse({**SCENARIO, "cohorts": [cohort]}, "s.yaml")
