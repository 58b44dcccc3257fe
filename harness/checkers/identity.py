"""Can the run follow events at all? Before any checker judges delivery by event id, the ids the
clients received must be the ids the feed wrote. When batches arrived but (almost) none of them
carries a fed id, the target file maps the wrong field: every checker that follows ids would report
thousands of "missing" events instead of that one mistake, so those checkers are not run and each
says what to fix (see ``run_checks``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.history import History

# The checkers that judge by fed event ids.
BY_ID = frozenset({"delivery", "recovery"})  # persistence compares the store with the feed, not messages
# Below this share of fed ids found in the clients' batches, the ids are not the same ids.
MIN_MATCHED_SHARE = 0.05
SAMPLE = 3


@dataclass(frozen=True)
class IdentityProblem:
    summary: str
    evidence: dict[str, Any]


def identity_problem(
    history: History, event_id_field: str, setting: str = "messages.event_id"
) -> IdentityProblem | None:
    """None when the clients' batches carry the fed ids (or there is nothing to compare)."""
    fed = {i for f in history.of("feed") for i in f.get("ids") or []}
    batches = list(history.of("batch"))
    if not fed or not batches:
        return None
    received = [i for b in batches for i in b.get("ids") or []]
    matched = fed.intersection(received)
    if len(matched) >= MIN_MATCHED_SHARE * len(fed):
        return None
    carried = "none carried a fed id" if not matched else f"only {len(matched)} of {len(fed)} fed ids were in them"
    summary = (
        f"clients received {len(batches)} batches but {carried}: check the target file's {setting} "
        f"(now {event_id_field!r}) and the feed's id field"
    )
    found = [repr(i) for i in received if i is not None and i not in fed][:SAMPLE]
    evidence = {
        "problem": "the batches carry no fed id",
        "batches": len(batches),
        "fed_ids": len(fed),
        "matched": len(matched),
        "event_id_field": event_id_field,
        "fed_sample": ", ".join(sorted(fed)[:SAMPLE]),
        "received_sample": ", ".join(found) or f"no event had a field {event_id_field!r}",
        "t": 0.0,
    }
    return IdentityProblem(summary, evidence)
