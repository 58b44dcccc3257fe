"""The log_volume checker against small hand-built histories: it counts only the lines logged while a
fault ran, fails on each budget it is over, and says not applicable when it has nothing to judge."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from harness.checkers import CHECKERS, CheckContext, Verdict, option_problem
from harness.external import inapplicable
from harness.history import History
from harness.targetspec import bundled_monitor


def rec(h: History, t: float, kind: str, **fields: Any) -> None:
    entry = h.record(kind, **fields)
    entry["t"] = t


def log(h: History, t: float, level: str | None = "INFO", line: str = "x" * 99) -> None:
    rec(h, t, "log", level=level, line=line, lineno=len(h.records), message=line)


def attacked(start: float = 1.0, end: float = 3.0) -> History:
    """A run with one fault from ``start`` to ``end`` (2 s by default) and a start-up line before it."""
    h = History()
    rec(h, 0.0, "target", event="ready")
    log(h, 0.1, "INFO", "listening")
    rec(h, start, "fault_start", fault="f", type="deep_json", cohort=None, params={})
    rec(h, end, "fault_heal", fault="f", type="deep_json", cohort=None)
    return h


def judge(h: History, **options: Any) -> Verdict:
    return CHECKERS["log_volume"](CheckContext(history=h), options)


def test_passes_within_budget_and_counts_only_the_attack() -> None:
    h = attacked()
    for i in range(10):
        log(h, 1.1 + i * 0.1)
    log(h, 1.5, "WARNING")
    log(h, 9.0, "ERROR")  # long after the heal: not the attack's
    verdict = judge(h)
    assert verdict.status == "pass", verdict.summary
    f = verdict.figures
    assert (f["window_s"], f["lines"], f["warning_lines"], f["error_lines"]) == (2.0, 11, 1, 0)
    assert f["bytes"] == 11 * 100 and f["lines_per_s"] == 5.5 and f["warnings_per_s"] == 0.5
    assert "5.5 lines/s" in verdict.summary


@pytest.mark.parametrize(
    "level, budget, count",
    [("ERROR", "errors_per_s", 4), ("CRITICAL", "errors_per_s", 4), ("WARNING", "warnings_per_s", 12),
     ("warn", "warnings_per_s", 12), ("INFO", "lines_per_s", 102)],
)  # fmt: skip
def test_fails_on_each_budget_with_the_first_line_and_the_frequent_message(level: str, budget: str, count: int) -> None:
    h = attacked()
    for i in range(count):
        log(h, 1.0 + i * 0.01, level, f"line {level}")
    verdict = judge(h, bytes_per_s=1e9)
    assert verdict.status == "fail", verdict.summary
    over = [e for e in verdict.evidence if e["problem"] == "over budget"]
    assert budget in [e["budget"] for e in over] and budget in verdict.summary
    first = next(e for e in over if e["budget"] == budget)
    assert first["t"] == 1.0 and first["first_line"] == f"line {level}"
    frequent = [e for e in verdict.evidence if e["problem"] == "frequent line"]
    assert frequent[0]["count"] == count and frequent[0]["message"] == f"line {level}"


def test_fails_on_bytes_a_second() -> None:
    h = attacked()
    log(h, 1.5, "INFO", "y" * 40_000)
    verdict = judge(h)
    assert verdict.status == "fail" and "bytes_per_s 20000.5 > 16384" in verdict.summary


def test_a_line_read_just_after_the_heal_counts_within_the_grace() -> None:
    h = attacked()
    log(h, 3.3, "ERROR")
    assert judge(h).figures["error_lines"] == 1
    assert judge(h, grace_s=0.1).figures["error_lines"] == 0


def test_overlapping_faults_are_one_window_and_an_unhealed_one_lasts_to_the_end() -> None:
    h = attacked(1.0, 3.0)
    rec(h, 2.0, "fault_start", fault="g", type="slowloris", cohort=None, params={})
    log(h, 5.0, "ERROR")
    rec(h, 6.0, "step", name="checks")
    verdict = judge(h, errors_per_s=10.0)
    assert verdict.figures["window_s"] == 5.0 and verdict.figures["error_lines"] == 1


def test_window_run_judges_the_whole_run_without_a_fault() -> None:
    h = History()
    rec(h, 0.5, "target", event="ready")
    log(h, 1.0, "ERROR")
    rec(h, 4.5, "step", name="checks")
    verdict = judge(h, window="run", errors_per_s=0.5)
    assert verdict.status == "pass" and verdict.figures["window_s"] == 4.0
    assert judge(h, window="run", errors_per_s=0.1).status == "fail"


def test_not_applicable_without_a_log_or_without_a_fault() -> None:
    h = History()
    rec(h, 1.0, "fault_start", fault="f", type="deep_json", cohort=None, params={})
    verdict = judge(h)
    assert (verdict.status, verdict.unknown_reason) == ("unknown", "not_applicable")
    assert "log cannot be read" in verdict.summary
    h = History()
    log(h, 1.0, "ERROR")
    verdict = judge(h)
    assert (verdict.status, verdict.unknown_reason) == ("unknown", "not_applicable")
    assert "no fault ran" in verdict.summary


def test_lines_without_a_level_cannot_pass_the_level_budgets() -> None:
    h = History()
    rec(h, 1.0, "fault_start", fault="f", type="deep_json", cohort=None, params={})
    log(h, 1.5, None)
    verdict = judge(h)
    assert (verdict.status, verdict.unknown_reason) == ("unknown", "not_applicable")
    assert "carry no level" in verdict.summary and verdict.figures["lines"] == 1


def test_bad_options_are_named_before_any_run() -> None:
    assert "window must be 'faults' or 'run'" in (option_problem("log_volume", {"window": "all"}) or "")
    assert "errors_per_s must be a number" in (option_problem("log_volume", {"errors_per_s": "few"}) or "")
    assert "unknown option(s) lines" in (option_problem("log_volume", {"lines": 3}) or "")
    assert option_problem("log_volume", {"errors_per_s": 0, "bytes_per_s": 100}) is None


def test_an_external_target_has_no_log_to_judge() -> None:
    class Target:  # only its file is read
        spec = dataclasses.replace(bundled_monitor(), url="ws://127.0.0.1:9/ws", command=[])

    verdict = inapplicable(Target(), CheckContext(history=History()), "log_volume")  # type: ignore[arg-type]
    assert verdict is not None and verdict.unknown_reason == "not_applicable"
