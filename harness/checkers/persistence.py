"""Nothing lost: every fed event is persisted exactly once."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from harness.checkers.base import (
    FAIL,
    MAX_EVIDENCE,
    NOT_APPLICABLE,
    PASS,
    CheckContext,
    Figures,
    Verdict,
    describe_item,
    parse_options,
    register,
)


@register("persistence", "Nothing lost")
def check_persistence(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """Every fed event id is in the target's database exactly once, and nothing else is.

    Ids fed after the target went away for good (stopped or killed and never ready again), or within
    ``stop_margin_s`` before that, are not required: they sit in the target's input, unread, and a
    target that resumes from its read offset picks them up on its next start. They are counted as
    ``not_required_final_stop``. Ids fed while it was down and then restarted are required.

    Options:
      stop_margin_s: how long before a final stop a fed id may still be unread (default 0.5).
    """
    opts = parse_options("persistence", options, {"stop_margin_s": 0.5})
    if ctx.stored_ids is None:
        why = "not applicable: the target exposes no stored event ids (no persistence in its target file)"
        return Verdict.unknown("persistence", NOT_APPLICABLE, why)
    final = min((w.start for w in ctx.down_windows if w.end == math.inf), default=math.inf)
    gone_at = final - float(opts["stop_margin_s"])
    fed_at = {i: f["t"] for f in ctx.history.of("feed") for i in f.get("ids") or []}
    if not fed_at:
        return Verdict.unknown("persistence", NOT_APPLICABLE, "not applicable: no event was fed")
    stored = Counter(ctx.stored_ids)
    missing = [i for i, t in fed_at.items() if i not in stored and t < gone_at]
    extra = [i for i in stored if i not in fed_at]
    duplicated = [i for i, n in stored.items() if n > 1]
    figures: Figures = {
        "fed": len(fed_at),
        "not_required_final_stop": sum(t >= gone_at and i not in stored for i, t in fed_at.items()),
        "stored": len(ctx.stored_ids),
        "missing": len(missing),
        "extra": len(extra),
        "duplicated": len(duplicated),
    }
    evidence = (
        [{"problem": "fed but not stored", "id": i, "fed_t": fed_at[i]} for i in missing[:MAX_EVIDENCE]]
        + [{"problem": "stored more than once", "id": i, "times": stored[i]} for i in duplicated[:MAX_EVIDENCE]]
        + [{"problem": "stored but never fed", "id": i} for i in extra[:MAX_EVIDENCE]]
    )
    if evidence:
        return Verdict(
            "persistence",
            FAIL,
            f"{len(missing)} missing, {len(duplicated)} duplicated, {len(extra)} "
            f"extra of {len(fed_at)} fed ids; first: {describe_item(evidence[0])}",
            evidence,
            figures,
        )
    excused = figures["not_required_final_stop"]
    note = f" ({excused} fed at or just before the final stop not yet read, not required)" if excused else ""
    return Verdict("persistence", PASS, f"all {len(fed_at) - excused} fed ids stored exactly once{note}", [], figures)
