"""What a verdict says in a line: the guarantee a checker judges, and its first evidence in words.

Every report (HTML, JUnit, terminal) leads a failure with the same two things, written here once.
"""

from __future__ import annotations

from typing import Any

from harness.checkers import GUARANTEES, checker_name, guarantee_of

MAX_TEXT = 240
# Keys an evidence item uses for where and when, shown after what happened.
TRAILING_KEYS = ("t", "fed_t", "first_t", "connection_t", "closed_t", "heal_t")
# Checkers' words for a problem, as a reader of a report needs them.
REPHRASE = {"harness still believes it connected": "not evicted, still connected when the bound ran out"}
LONG_KEYS = frozenset({"traceback"})  # shown in full in the reports' evidence, never in a one-line summary


def checker_order(checker: str) -> tuple[int, str]:
    """Sort key: checkers in the order the harness registers them, unknown ones last, variants after their base."""
    order = list(GUARANTEES)
    base = checker_name(checker)
    return (order.index(base) if base in order else len(order), checker)


def guarantee(checker: str) -> str:
    """The guarantee a checker (``eviction@rst`` included) judges, as the checker registered it."""
    return guarantee_of(checker)


def lead_evidence(verdict: dict[str, Any]) -> dict[str, Any] | None:
    """The evidence item a reader should see first. Items come smallest first; for eviction the first
    item that names a client (the client that was not evicted) is worth more than a registry count."""
    evidence = verdict.get("evidence") or []
    if not evidence:
        return None
    if checker_name(verdict["checker"]) == "eviction":
        named = next((e for e in evidence if e.get("client")), None)
        if named is not None:
            return named
    return evidence[0]


def first_evidence(verdict: dict[str, Any]) -> str | None:
    item = lead_evidence(verdict)
    return None if item is None else describe(item)


def describe(item: dict[str, Any]) -> str:
    """One evidence item as a sentence: a log line, a registry sample, or a client's problem."""
    if "line" in item:
        level = f" ({item['level']})" if item.get("level") else ""
        return _clip(f"log line {item.get('lineno')}{level}: {item['line']}")
    if "registry" in item:
        return (
            f"at t={_num(item.get('t'))}s the server still had {item['registry']} client(s) registered, "
            f"expected at most {item.get('expected_at_most')}"
        )
    return _clip(_problem(item))


def _problem(item: dict[str, Any]) -> str:
    who = item.get("client") or item.get("cohort")
    keys = [k for k, v in item.items() if k not in ("client", "cohort", "problem", *LONG_KEYS) and _scalar(v)]
    keys.sort(key=lambda k: k in TRAILING_KEYS)  # stable: what happened first, when and where last
    details = ", ".join(_detail(k, item[k]) for k in keys)
    problem = item.get("problem")
    text = ": ".join(str(p) for p in (who, REPHRASE.get(str(problem), problem)) if p)
    return f"{text} ({details})" if text and details else text or details


def _detail(key: str, value: Any) -> str:
    """``t`` 5.245 as "t=5.245s", ``fed_t`` as "fed at t=...", ``closed_after_s`` as "closed after 1.2s"."""
    if key == "t":
        return f"t={_num(value)}s"
    if key.endswith("_t"):
        return f"{key[:-2].replace('_', ' ')} at t={_num(value)}s"
    for unit in ("s", "ms"):
        if key.endswith(f"_{unit}"):
            return f"{key[: -len(unit) - 1].replace('_', ' ')} {_num(value)} {unit}"
    return f"{key.replace('_', ' ')} {_num(value)}"


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failure_headline(scenario: str, verdict: dict[str, Any]) -> str:
    """``Safe send broken in mass_drop (no_error_logs)``."""
    return f"{guarantee(verdict['checker'])} broken in {scenario} ({verdict['checker']})"
