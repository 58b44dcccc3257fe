"""A failure's signature: the scenario's status, the checker that failed and the class of its reason, so
that two runs that fail the same way compare equal whatever the numbers, names and times in them."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from harness.checkers import CHECKERS, ERROR, FAIL, Verdict, checker_name
from harness.runner import ScenarioResult

FAILED = (FAIL, ERROR)
REASON_CHARS = 80
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Signature:
    status: str  # fail or error
    checker: str | None  # the checker (without its @suffix); None for a run the harness could not finish
    reason: str  # the reason's class: its words without numbers and quoted names ("" when it names none)

    def __str__(self) -> str:
        return " / ".join([self.status, self.checker or "harness", *([self.reason] if self.reason else [])])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def signature(result: ScenarioResult) -> Signature | None:
    """The signature of a failed or errored run; None for a run that passed, was unknown or skipped."""
    if result.status not in FAILED:
        return None
    if result.error:
        return Signature(result.status, None, normalise(result.error))
    verdict = first_failure(result.verdicts)
    if verdict is None:
        return Signature(result.status, None, "no failing verdict")
    return Signature(result.status, checker_name(verdict.checker), reason_class(verdict))


def first_failure(verdicts: list[Verdict]) -> Verdict | None:
    """The failing verdict that names the failure: fail before error, then in the checkers' order (the
    order of the guarantees), so that the choice does not depend on the order of a schedule's checks."""
    order = list(CHECKERS)
    failing = [v for v in verdicts if v.status in FAILED]
    rank = {name: i for i, name in enumerate(order)}
    failing.sort(key=lambda v: (FAILED.index(v.status), rank.get(checker_name(v.checker), len(order))))
    return failing[0] if failing else None


def reason_class(verdict: Verdict) -> str:
    """The first problem its evidence names (with its error, if any), else the message of the first log
    line it shows, else nothing: the wording of a summary changes with what the run happened to see
    (a late eviction and one never seen are one failure), so it is not a class."""
    for item in verdict.evidence:
        if "problem" in item:
            extra = f": {item['error']}" if "error" in item else ""
            return normalise(f"{item['problem']}{extra}")
    first = verdict.evidence[0] if verdict.evidence else {}
    if "line" in first:
        return normalise(log_message(str(first["line"])))
    return ""


def log_message(line: str) -> str:
    """A JSON log record's message, else the line as it is."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if isinstance(record, dict):
        for key in ("msg", "message", "event"):
            if isinstance(record.get(key), str):
                return f"{record.get('level', '')} {record[key]}".strip()
    return line


def normalise(text: str) -> str:
    """Lower case, quoted names as …, numbers as #, at most REASON_CHARS ending at a whole word."""
    words = _NUMBER.sub("#", _QUOTED.sub("…", text.lower())).split()
    out = ""
    for word in words:
        if len(out) + len(word) + 1 > REASON_CHARS:
            break
        out = f"{out} {word}" if out else word
    return out or " ".join(words)[:REASON_CHARS]
