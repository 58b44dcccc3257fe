"""Views: a client that watches some nodes gets exactly their events, and still every batch.

A cohort with ``view:`` asks for its view on every connect (``Dialect.view_url``), and the server says
in its init which view it applied (the dialect's ``Ready.view``). Only clients whose init confirms a
view are judged: against a target that has no views, or does not say which it applied, the checker
has nothing to judge and says so.
"""

from __future__ import annotations

from typing import Any

from harness.checkers.base import (
    FAIL,
    NOT_APPLICABLE,
    PASS,
    CheckContext,
    Connection,
    Figures,
    Record,
    Verdict,
    cap_evidence,
    describe_item,
    parse_options,
    register,
)
from harness.checkers.delivery import ClientDelivery, _client_delivery

ALL = "all"
COUNTS = ("outside_view", "lost", "before_init", "duplicated", "reordered", "duplicated_ids", "missing_ids")


def view_nodes(view: Any) -> frozenset[str] | None:
    """The nodes a view names (a node or a list of nodes); None for the whole stream ("all")."""
    if view is None or view == ALL:
        return None
    return frozenset([view] if isinstance(view, str) else [str(v) for v in view])


@register("views", "Views")
def check_views(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """Every client of a cohort with a view receives every event fed to the view's nodes (after its first
    init) once and in order, and no event of another node; and every batch, so its seqs stay contiguous:
    a batch whose events are all outside the view still comes, empty. Seqs, duplicates, order and the
    events owed are judged as the delivery checker judges them, on the view's events only (a stream
    without seqs is judged by event ids alone); an event's node is the one the feed wrote it to. An init
    that confirms another view than the one asked for fails.

    Options:
      cohorts: the cohorts to check (default: every probe cohort with a view that no fault hit).
      settle_s: how long before a break an event may still be in flight and excused with it (default 1.0).
    """
    opts = parse_options("views", options, {"cohorts": None, "settle_s": 1.0})
    cohorts = opts["cohorts"] or sorted(
        n for n, c in ctx.cohorts.items() if c.kind == "probe" and c.view is not None and n not in ctx.faulted
    )
    viewless = [c for c in cohorts if c not in ctx.cohorts or ctx.cohorts[c].view is None]
    if not cohorts or viewless:
        why = f"cohort(s) {', '.join(viewless)} ask for no view" if viewless else "no healthy cohort asks for a view"
        return Verdict.unknown("views", NOT_APPLICABLE, f"not applicable: {why}")
    node_of = {i: f.get("node") for f in ctx.history.of("feed") for i in f.get("ids") or []}
    evidence: list[dict[str, Any]] = []
    results: list[ClientDelivery] = []
    figures: Figures = {"clients": 0, "unconfirmed": 0, "events_in_view": 0, **dict.fromkeys(COUNTS, 0)}
    for cohort in cohorts:
        nodes = view_nodes(ctx.cohorts[cohort].view)
        fed = [f for f in ctx.history.of("feed") if nodes is None or f.get("node") in nodes]
        figures["events_in_view"] += sum(len(f.get("ids") or []) for f in fed)
        for client in ctx.clients_of(cohort):
            conns = ctx.connections(client)
            if not any(_confirmed(c) for c in conns):
                figures["unconfirmed"] += 1
                continue
            result = _client_delivery(ctx, client, fed, float(opts["settle_s"]))
            outside = _outside(client, conns, nodes, node_of) + _other_view(client, conns, nodes)
            figures["outside_view"] += sum(int(e.get("events") or 0) for e in outside)
            evidence += outside + result.evidence
            results.append(result)
    figures["clients"] = len(results)
    for result in results:
        for name, count in result.counts().items():
            figures[name] += count
    return _verdict(cohorts, evidence, figures)


def _verdict(cohorts: list[str], evidence: list[dict[str, Any]], figures: Figures) -> Verdict:
    scope = f"{figures['clients']} client(s) of {', '.join(cohorts)}"
    if not figures["clients"]:
        why = (
            f"not applicable: no init of the {figures['unconfirmed']} client(s) of {', '.join(cohorts)} confirmed a "
            "view: the target's dialect has no views, or its init does not say which view it applied"
        )
        return Verdict.unknown("views", NOT_APPLICABLE, why, [], figures)
    if evidence:
        counts = ", ".join(f"{figures[k]} {k.replace('_', ' ')}" for k in COUNTS if figures[k])
        first = cap_evidence(evidence)[0]
        summary = f"{scope}: {counts or first['problem']}; first: {describe_item(first)}"
        return Verdict("views", FAIL, summary, cap_evidence(evidence), figures)
    if not figures["events_in_view"]:
        why = f"not applicable: no event was fed to the nodes of the views of {', '.join(cohorts)}"
        return Verdict.unknown("views", NOT_APPLICABLE, why, [], figures)
    return Verdict("views", PASS, f"{scope}: every event of the view delivered once and in order, none other, "
                   "no batch skipped", [], figures)  # fmt: skip


def _confirmed(conn: Connection) -> bool:
    return conn.init is not None and conn.init.get("view") is not None


def _outside(
    client: str, conns: list[Connection], nodes: frozenset[str] | None, node_of: dict[Any, Any]
) -> list[dict[str, Any]]:
    """Events of other nodes the client received on a connection whose init confirmed its view."""
    if nodes is None:
        return []
    foreign: list[tuple[Record, Any]] = [
        (b, i) for c in conns if _confirmed(c) for b in c.batches for i in b.get("ids") or []
        if i in node_of and node_of[i] not in nodes
    ]  # fmt: skip
    if not foreign:
        return []
    batch, event_id = foreign[0]
    return [{"client": client, "problem": "event outside the view", "id": event_id, "node": node_of[event_id],
             "view": ", ".join(sorted(nodes)), "seq": batch.get("seq"), "events": len(foreign),
             "t": batch["t"]}]  # fmt: skip


def _other_view(client: str, conns: list[Connection], nodes: frozenset[str] | None) -> list[dict[str, Any]]:
    """An init that confirms another view than the one asked for."""
    for conn in conns:
        if _confirmed(conn) and conn.init is not None and view_nodes(conn.init["view"]) != nodes:
            asked = ", ".join(sorted(nodes or [ALL]))
            return [{"client": client, "problem": "init confirms another view", "asked": asked,
                     "confirmed": str(conn.init["view"]), "t": conn.start_t}]  # fmt: skip
    return []
