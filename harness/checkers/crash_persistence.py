"""Nothing lost at a crash: after each kill -9 of a ``crash_loop``, every id fed before it is stored
exactly once (as the fault found it, within its ``check_within``, while the loop went on)."""

from __future__ import annotations

from typing import Any

from harness.checkers.base import FAIL, NOT_APPLICABLE, PASS, CheckContext, Verdict, parse_options, register


@register("crash_persistence", "Nothing lost at a crash")
def check_crash_persistence(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """Every ``crash_check`` a crash_loop fault recorded found all ids fed before its kill stored
    once. Unlike ``persistence`` (judged once, at the end) it says which crash lost or doubled what."""
    parse_options("crash_persistence", options, {})
    checks = list(ctx.history.of("crash_check"))
    if not checks:
        why = "not applicable: no crash was checked (no crash_loop fault, or the target exposes no stored ids)"
        return Verdict.unknown("crash_persistence", NOT_APPLICABLE, why)
    bad = [c for c in checks if c["missing"] or c["duplicated"]]
    figures = {"crashes": len(checks), "bad_crashes": len(bad), "missing": sum(c["missing"] for c in checks),
               "duplicated": sum(c["duplicated"] for c in checks)}  # fmt: skip
    evidence = [{"crash": c["n"], "fed_before": c["fed"], "missing": c["missing"], "duplicated": c["duplicated"],
                 "first_missing": c["first_missing"][:3], "t": c["t"]} for c in bad]  # fmt: skip
    if bad:
        first = bad[0]
        return Verdict("crash_persistence", FAIL,
                       f"{len(bad)} of {len(checks)} crashes lost or doubled ids; first: crash {first['n']}: "
                       f"{first['missing']} of {first['fed']} ids fed before it not stored within "
                       f"{first['waited_s']:g} s, {first['duplicated']} stored twice", evidence, figures)  # fmt: skip
    return Verdict("crash_persistence", PASS, f"after each of {len(checks)} crashes every id fed before it was "
                   "stored exactly once", [], figures)  # fmt: skip
