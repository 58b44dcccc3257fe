"""Honest figures: the server's own count of the events it took in matches what was fed."""

from __future__ import annotations

from typing import Any

from harness.checkers.base import FAIL, NOT_APPLICABLE, PASS, CheckContext, Figures, Verdict, parse_options, register


@register("stats", "Honest figures")
def check_stats(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """The total (and each node's count) the server reports, read once the feed stopped (the
    ``server_stats`` record, see ``harness.serverstats``), equals the events fed (in all and per node).

    A target file without a ``stats`` section is unknown, not applicable. A declared message that never
    came, or a count missing from it, fails: the target does not give the figures it declares.

    Options:
      tolerance: how far a count may differ from what was fed (default 0).
    """
    opts = parse_options("stats", options, {"tolerance": 0})
    records = list(ctx.history.of("server_stats"))
    if not records:
        return Verdict.unknown("stats", NOT_APPLICABLE, "not applicable: the run read no server statistics")
    reading = records[-1]
    if not reading.get("declared", True):
        why = "not applicable: the target file declares no stats (the message giving its own counts)"
        return Verdict.unknown("stats", NOT_APPLICABLE, why)
    fed_nodes: dict[str, int] = {}
    for record in ctx.history.of("feed"):
        node = str(record.get("node"))
        fed_nodes[node] = fed_nodes.get(node, 0) + len(record.get("ids") or [])
    fed = sum(fed_nodes.values())
    figures: Figures = {"events_fed": fed}
    if reading.get("error"):
        return Verdict("stats", FAIL, f"the server gave no counts: {reading['error']}", [_item(reading)], figures)
    if not fed:
        return Verdict.unknown("stats", NOT_APPLICABLE, "not applicable: no event was fed", [], figures)
    evidence = _mismatches(reading, fed, fed_nodes, opts["tolerance"])
    total = reading.get("total")
    if isinstance(total, int):
        figures["server_total"] = total
    for node, count in (reading.get("nodes") or {}).items():
        if isinstance(count, int):
            figures[f"server_count[{node}]"] = count
    if evidence:
        return Verdict("stats", FAIL, f"the server's counts do not match the feed: {evidence[0]['problem']}",
                       evidence, figures)  # fmt: skip
    nodes = f" and per node ({len(fed_nodes)})" if "nodes" in reading else ""
    return Verdict("stats", PASS, f"the server counts the {fed} events fed, in all{nodes}", [], figures)


def _mismatches(reading: dict[str, Any], fed: int, fed_nodes: dict[str, int], tolerance: int) -> list[dict]:
    evidence = []
    total = reading.get("total")
    if not isinstance(total, int):
        evidence.append({"problem": "the stats message has no total count", "t": reading["t"]})
    elif abs(total - fed) > tolerance:
        evidence.append({"problem": f"total {total}, fed {fed}", "server_total": total, "fed": fed, "t": reading["t"]})
    nodes = reading.get("nodes")
    if nodes is None:
        return evidence
    for node, count in sorted(fed_nodes.items()):
        said = nodes.get(node)
        if not isinstance(said, int) or abs(said - count) > tolerance:
            evidence.append({"problem": f"node {node}: count {said}, fed {count}", "node": node,
                             "server_count": said, "fed": count, "t": reading["t"]})  # fmt: skip
    return evidence


def _item(reading: dict[str, Any]) -> dict[str, Any]:
    return {"problem": "no counts", "error": reading.get("error"), "t": reading["t"]}
