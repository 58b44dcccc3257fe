"""Eviction: dead and stuck clients leave the server's registry in time."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.checkers.base import (
    DID_NOT_BITE,
    FAIL,
    NOT_APPLICABLE,
    PASS,
    UNRELIABLE,
    CheckContext,
    Figures,
    Record,
    Verdict,
    Window,
    cap_evidence,
    did_not_bite,
    hits,
    parse_options,
    register,
    rounded,
    unbitten,
)
from harness.checkers.victim_closes import SERVER_SIDE, how_closed, seen_by_victims
from harness.optiontypes import NO_NUMBER

HELD_UNTIL_HEAL = "the target held the connection until the heal"


@register("eviction", "Eviction")
def check_eviction(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """After the first fault that hits ``cohort`` (time t0), the server's registry (the ``clients`` of
    ``metrics`` records) drops to at most the number of clients the harness has connected outside that
    cohort (counted at each sample) within ``within`` seconds.

    A fault that must bite (see harness.bite) and did not gives "unknown" (did_not_bite); one whose
    send path to its victims filled only later (``full_t`` of its ``fault_bite`` record) counts from
    then: the target cannot tell a stuck client from a slow one before its buffers are full.

    When victims connect after the fault starts (the stuck readers a stuck_reader fault opens), t0 is when
    the last of them connected, so that no sample taken before they arrived counts as their eviction.
    When the fault acted on chosen clients of the cohort (``client_fault`` records after t0, as a
    mass drop of a share of the cohort does), only those are victims: the cohort's other clients count
    as legitimately connected.

    Options:
      cohort (required): the cohort whose clients must be evicted. For a stuck or stuck_pong cohort that
        no fault hit, t0 is the first connect of its clients.
      within: the bound in seconds (default 5.0).
      expected: a fixed registry size to reach instead of the counted one (default None).
    """
    opts = parse_options("eviction", options, {"within": 5.0, "expected": NO_NUMBER}, required=("cohort",))
    cohort, within = opts["cohort"], float(opts["within"])
    samples = [r for r in ctx.history.of("metrics") if r.get("clients") is not None]
    if not samples:
        why = "not applicable: the target reported no registry size (no metrics records with clients)"
        return Verdict.unknown("eviction", NOT_APPLICABLE, why)
    t0, trigger = _eviction_start(ctx, cohort)
    if t0 is None:
        why = (f"the fault did not take effect: nothing to evict: no fault hit cohort {cohort!r} "
               "and it is not a stuck cohort")  # fmt: skip
        return Verdict.unknown("eviction", DID_NOT_BITE, why, [{"cohort": cohort, "problem": "no trigger"}])
    bite = unbitten(ctx, cohort)
    if bite is not None:
        return did_not_bite("eviction", bite)
    victims = _victims(ctx, cohort, t0)
    if not victims:
        why = f"the fault did not take effect: nothing to evict: cohort {cohort!r} has no client"
        return Verdict.unknown("eviction", DID_NOT_BITE, why, [{"cohort": cohort, "problem": "no victim"}])
    filled = _filled(ctx, cohort)
    t0 = max(_arrived(ctx, victims, t0), filled)
    away = _away_within(ctx.down_windows, t0, within)
    case = Eviction(cohort, t0, trigger, within + away, victims, _heal_after(ctx, cohort, t0), path_filled=filled > 0,
                    away=away)  # fmt: skip
    watched = _watched(ctx, victims)
    ends = {**_seen_ended(ctx, case, watched), **_server_ends(ctx, victims)}
    if len(ends) == len(victims):  # each victim's own socket says it: no registry count needed
        return _ended_by_server(case, ends)
    unfilled = _unfilled(ctx, cohort)
    held = watched - set(ends)
    if held and case.heal_t is not None:
        if case.healed_early():
            return _healed_early(case)
        return _held_until_heal(case, sorted(held)) if unfilled is None else _not_due(unfilled)
    kept = _kept_connections(ctx, case, samples)
    timeline = [_registry_point(ctx, case, s, opts["expected"], kept) for s in samples if s["t"] >= t0]
    figures: Figures = {**case.figures(), "samples": len(timeline)}
    done = next((p for p in timeline if _evicted(p)), None)
    if done is not None:
        return _eviction_done(ctx, case, done, timeline, figures)
    if unfilled is not None:
        return _not_due(unfilled)
    dropped = next((p for p in timeline if p["registry"] <= p["expected_at_most"]), None)
    if dropped is not None and dropped["t"] <= t0 + within:
        return _sockets_kept(case, dropped, timeline, figures)
    return _eviction_missing(ctx, case, timeline, figures)


@dataclass(frozen=True)
class Eviction:
    cohort: str
    t0: float
    trigger: str
    within: float
    victims: frozenset[str]
    heal_t: float | None = None  # when the harness healed the fault (closing what it still held)
    path_filled: bool = False  # t0 is when the fault's send path filled
    away: float = 0.0  # seconds of the bound while the target was away (paused, killed): ``within`` includes them

    def figures(self) -> Figures:
        out: Figures = {"t0": rounded(self.t0), "within_s": self.within, "victims": len(self.victims)}
        return {**out, "away_s": rounded(self.away)} if self.away else out

    def bound(self) -> str:
        if not self.away:
            return f"bound {self.within:g}s"
        return f"bound {self.within:.2f}s, {self.away:.2f}s of it while the target was away"

    def describe(self) -> str:
        return f"{len(self.victims)} client(s) of cohort {self.cohort!r} hit by {self.trigger} at t={self.t0:.2f}s"

    def healed_early(self) -> bool:
        """The harness healed (closing what it still held) before the bound was up. A fault that fills a
        send path (stuck_reader, slow_consumer) heals itself ``hold`` seconds after the path filled: the
        scenario chose that hold as the time the target has, so it is not early."""
        return not self.path_filled and self.heal_t is not None and self.heal_t < self.t0 + self.within


def _away_within(windows: list[Window], t0: float, within: float) -> float:
    """Seconds the target was away (paused, or killed until it was ready again) after ``t0`` within the
    bound, which grows by them: a target cannot evict while it is away. An absence it did not come back
    from (the stop at the end) adds nothing: what it did before then is what is judged."""
    away = 0.0
    for w in sorted(windows, key=lambda w: w.start):
        if w.start >= t0 + within + away:
            break
        if t0 < w.end < math.inf:
            away += w.end - max(w.start, t0)
    return away


def _eviction_start(ctx: CheckContext, cohort: str) -> tuple[float | None, str]:
    fault = next((r for r in ctx.history.of("fault_start") if hits(r, cohort)), None)
    if fault is not None:
        return fault["t"], f"fault {fault.get('fault')!r}"
    info = ctx.cohorts.get(cohort)
    if info is not None and info.kind in ("stuck", "stuck_pong"):
        connects = [r["t"] for c in ctx.clients_of(cohort) for r in ctx.by_client[c] if r["kind"] == "connect"]
        if connects:
            return min(connects), f"first connect of {info.kind} cohort"
    return None, ""


def _bites(ctx: CheckContext, cohort: str) -> list[Record]:
    """The bite records of the faults that hit ``cohort``."""
    faults = {r.get("fault") for r in ctx.history.of("fault_start") if hits(r, cohort)}
    return [r for r in ctx.history.of("fault_bite") if r.get("fault") in faults]


def _filled(ctx: CheckContext, cohort: str) -> float:
    """When the send paths to the cohort's victims were full, by the faults' bite records (else 0)."""
    return max((r["full_t"] for r in _bites(ctx, cohort) if r.get("bit") and r.get("full_t") is not None),
               default=0.0)  # fmt: skip


def _unfilled(ctx: CheckContext, cohort: str) -> Record | None:
    """The bite record of a fault on ``cohort`` whose send paths backed up but never filled: something
    between (a proxy's buffers) kept taking the data, so the target's sends never blocked."""
    return next((r for r in _bites(ctx, cohort) if (r.get("figures") or {}).get("filled") is False), None)


def _not_due(bite: Record) -> Verdict:
    why = (f"the fault did not take effect: {bite.get('how')}: the target's sends to the victims never "
           "blocked, so it had no reason yet to evict them")  # fmt: skip
    evidence = {"fault": bite.get("fault"), "cohort": bite.get("cohort"), "problem": "send path never full",
                "t": bite["t"], **(bite.get("figures") or {})}  # fmt: skip
    return Verdict.unknown("eviction", DID_NOT_BITE, why, [evidence])


def _seen_ended(ctx: CheckContext, case: Eviction, watched: set[str]) -> dict[str, Record]:
    """The watched victims (straight to the target: nothing in between could end them) that saw their
    connection end, by the target's close or reset, after ``t0`` and before the heal."""
    found = {}
    for client in watched:
        close = next((r for r in ctx.by_client.get(client, []) if r["kind"] == "close" and r["t"] >= case.t0), None)
        if close is not None and close.get("by") in SERVER_SIDE and (case.heal_t is None or close["t"] < case.heal_t):
            found[client] = {**close, "state": f"seen by the victim: {how_closed(close)}"}
    return found


def _server_ends(ctx: CheckContext, victims: frozenset[str]) -> dict[str, Record]:
    """The victims whose connection the target ended while the harness still held its side, as the
    target's own socket showed it (``server_close`` records of the faults that watch send paths)."""
    return {r["client"]: r for r in ctx.history.of("server_close") if r.get("client") in victims}


def _ended_by_server(case: Eviction, ends: dict[str, Record]) -> Verdict:
    last = max(ends.values(), key=lambda r: r["t"])
    took = max(0.0, last["t"] - case.t0)
    states = ", ".join(sorted({str(r.get("state")) for r in ends.values()}))
    how = (f"the target ended its side of every victim's connection by t={last['t']:.2f}s (its socket "
           f"{states}: seen in /proc/net/tcp or by the victim while the harness still held it)")  # fmt: skip
    figures: Figures = {**case.figures(), "evicted_after_s": rounded(took)}
    if took <= case.within:
        return Verdict("eviction", PASS, f"{case.describe()} evicted after {took:.2f}s ({case.bound()}): {how}",
                       [], figures)  # fmt: skip
    evidence = cap_evidence([{**r, "problem": "ended late"} for r in ends.values()])
    summary = f"{case.describe()} evicted only after {took:.2f}s ({case.bound()}): {how}"
    return Verdict("eviction", FAIL, summary, evidence, figures)


def _watched(ctx: CheckContext, victims: frozenset[str]) -> set[str]:
    """The victims whose connection a send-path watch followed in the target's socket table."""
    keys = {k for r in ctx.history.of("fault_bite") for k in (r.get("figures") or {}) if k.startswith("tx_max[")}
    return {c for c in victims if f"tx_max[{c}]" in keys}


def _healed_early(case: Eviction) -> Verdict:
    assert case.heal_t is not None
    why = (f"the fault did not take effect: it was healed {case.heal_t - case.t0:.2f}s after it hit, before the "
           f"{case.within:g}s bound, and the harness then closed the victims' sockets itself: whether the "
           "target would have evicted them is not known")  # fmt: skip
    evidence = [{"cohort": case.cohort, "problem": "healed before the eviction bound", "t": case.heal_t}]
    return Verdict.unknown("eviction", DID_NOT_BITE, why, evidence)


def _held_until_heal(case: Eviction, held: list[str]) -> Verdict:
    summary = (f"{case.describe()} never evicted: the target's socket to {len(held)} of them stayed open (watched "
               f"in /proc/net/tcp) until the harness closed it at heal (t={case.heal_t:.2f}s), whatever its "
               "registry count said")  # fmt: skip
    evidence = [{"client": c, "problem": HELD_UNTIL_HEAL, "t": case.heal_t}
                for c in held]  # fmt: skip
    return Verdict("eviction", FAIL, summary, cap_evidence(evidence), {"t0": rounded(case.t0), "victims": len(held)})


def _heal_after(ctx: CheckContext, cohort: str, t0: float) -> float | None:
    return next((r["t"] for r in ctx.history.of("fault_heal") if hits(r, cohort) and r["t"] >= t0), None)


def _victims(ctx: CheckContext, cohort: str, t0: float) -> frozenset[str]:
    """The cohort's clients the fault acted on by name (client_fault records), else all of them."""
    members = ctx.clients_of(cohort)
    acted = {c for c in members if any(r["kind"] == "client_fault" and r["t"] >= t0 for r in ctx.by_client[c])}
    return frozenset(acted or members)


def _arrived(ctx: CheckContext, victims: frozenset[str], t0: float) -> float:
    """When the last victim that was not yet connected at ``t0`` connected (or ``t0``)."""
    late = [c for c in victims if not ctx.connected_at(c, t0)]
    arrivals = [next((r["t"] for r in ctx.by_client[c] if r["kind"] == "connect" and r["t"] >= t0), t0) for c in late]
    return max([t0, *arrivals])


@dataclass(frozen=True)
class Kept:
    """The target's connections when the fault hit (by remote port), and how many of them were not
    clients in its registry (its own HTTP connections, the harness's metrics scrape)."""

    at_t0: frozenset[int]
    extra: int


def _kept_connections(ctx: CheckContext, case: Eviction, samples: list[Record]) -> Kept | None:
    before = [s for s in samples if s["t"] <= case.t0 and s.get("peers") is not None]
    if not before or any(r.get("cohort") == case.cohort for r in ctx.history.of("browser_state")):
        # A browser page also holds HTTP connections through its proxy (the page, its assets) that the
        # harness cannot tell from its WebSocket: the socket count cannot be judged for pages.
        return None
    first = before[-1]
    return Kept(frozenset(first["peers"]), max(0, len(first["peers"]) - first["clients"]))


def _registry_point(
    ctx: CheckContext, case: Eviction, sample: Record, fixed: int | None, kept: Kept | None
) -> dict[str, Any]:
    t = sample["t"]
    gone = {c for c in case.victims if not _reconnected(ctx, c, case.t0, t)} | _suspects(ctx, case.t0, t)
    if fixed is None:
        fixed = sum(ctx.connected_at(c, t) for c in ctx.by_client if c not in gone)
    point = {"t": t, "registry": sample["clients"], "expected_at_most": fixed}
    if kept is not None and sample.get("peers") is not None:
        # Of the connections open when the fault hit, only those of clients that rightly stay may remain.
        stay = sum(ctx.connected_at(c, case.t0) and ctx.connected_at(c, t) and not _reconnected(ctx, c, case.t0, t)
                   for c in ctx.by_client if c not in gone and c not in case.victims)  # fmt: skip
        point["old_connections"] = len(kept.at_t0 & set(sample["peers"]))
        point["old_expected_at_most"] = stay + kept.extra
    return point


def _evicted(point: dict[str, Any]) -> bool:
    """Out of the registry and, where the target's socket table shows, its connection ended too."""
    old = point.get("old_connections")
    return point["registry"] <= point["expected_at_most"] and (old is None or old <= point["old_expected_at_most"])


def _reconnected(ctx: CheckContext, client: str, since: float, t: float) -> bool:
    """Whether ``client`` opened a new connection after the one a fault at ``since`` hit (the one open
    then, or its first after it): that new connection is judged afresh, not as the fault's victim."""
    connects = [r["t"] for r in ctx.by_client.get(client, []) if r["kind"] == "connect" and since < r["t"] <= t]
    return len(connects) >= (1 if ctx.connected_at(client, since) else 2)


def _suspects(ctx: CheckContext, since: float, t: float) -> frozenset[str]:
    """Victims of every fault started by ``t`` and not healed before ``since`` (when the case's own
    fault hit), in any cohort, while the connection it hit lasts. Counts alone cannot tell whose entry
    the server dropped, so a client another fault hit is not counted as rightly connected: otherwise
    one cohort's eviction could pass for another's (except where the fault only delays the close by a
    known time: see ``CLOSE_LAG_MS``). A fault healed before the case began has settled:
    the clients it hit that are still connected are counted like any other (a healed latency fault
    never dropped them), and once a client has reconnected, its new connection counts too."""
    healed = {r.get("fault"): r["t"] for r in ctx.history.of("fault_heal")}
    found: set[str] = set()
    for fault in ctx.history.of("fault_start"):
        if fault["t"] <= t and fault.get("cohort") and healed.get(fault.get("fault"), t) >= since:
            hit = _victims(ctx, fault["cohort"], fault["t"])
            lag = _close_lag(fault)
            found |= {c for c in hit if not _reconnected(ctx, c, fault["t"], t)
                      and (lag is None or not _still_open(ctx, c, t, lag))}  # fmt: skip
    return frozenset(found)


# Faults that only delay what crosses the link, the target's close included, by a bounded time, and
# drop nothing. A client one of them hit that still held the same connection that long after a sample
# was not dropped by the target at the sample: it is counted as rightly connected, not as a suspect.
CLOSE_LAG_MS = {
    "latency": lambda p: float(p.get("latency") or 0) + float(p.get("jitter") or 0),
    "slow_close": lambda p: float(p.get("delay") or 0),
}
CLOSE_LAG_MARGIN_S = 0.5  # the proxy's and the client's own turn-around on a loaded machine


def _close_lag(fault: Record) -> float | None:
    lag_ms = CLOSE_LAG_MS.get(str(fault.get("type")))
    return None if lag_ms is None else lag_ms(fault.get("params") or {}) / 1000 + CLOSE_LAG_MARGIN_S


def _still_open(ctx: CheckContext, client: str, t: float, lag: float) -> bool:
    """Whether the connection ``client`` held at ``t`` was still open, as the client saw it, at ``t + lag``."""
    return any(t in w and t + lag in w for w in ctx.intervals.get(client, []))


def _sockets_kept(case: Eviction, dropped: dict[str, Any], timeline: list[dict[str, Any]], figures: Figures) -> Verdict:
    held = max(0, dropped.get("old_connections", 0) - dropped.get("old_expected_at_most", 0))
    summary = (f"{case.describe()} left the registry by t={dropped['t']:.2f}s but their connections stayed "
               f"open: the target still held {held} more connection(s) than the clients it should keep "
               "(ESTABLISHED in its socket table) through the bound")  # fmt: skip
    evidence = cap_evidence([{**p, "problem": "connection still open"} for p in timeline if p["t"] >= dropped["t"]])
    return Verdict("eviction", FAIL, summary, evidence, figures)


def _still_connected(ctx: CheckContext, case: Eviction, t: float) -> list[dict[str, Any]]:
    return [
        {"client": c, "problem": "harness still believes it connected", "t": t}
        for c in sorted(case.victims)
        if ctx.connected_at(c, t)
    ]


def _eviction_done(
    ctx: CheckContext, case: Eviction, done: dict[str, Any], timeline: list[dict[str, Any]], figures: Figures
) -> Verdict:
    took = done["t"] - case.t0
    figures["evicted_after_s"] = rounded(took)
    seen = seen_by_victims(ctx, case.victims, case.t0, case.heal_t)
    if case.heal_t is not None and done["t"] >= case.heal_t and not seen.before_heal:
        if case.healed_early():
            return _healed_early(case)
        evidence = [{"problem": HELD_UNTIL_HEAL, "t": case.heal_t, "registry_dropped_t": done["t"]}]
        evidence += cap_evidence([p for p in timeline if p["t"] <= done["t"]])
        evidence += _still_connected(ctx, case, case.heal_t)
        summary = (
            f"{case.describe()} never evicted: the server still held the connection until the harness closed "
            f"the socket at heal (t={case.heal_t:.2f}s); the registry dropped only at t={done['t']:.2f}s"
        )
        return Verdict("eviction", FAIL, summary, evidence, figures)
    how = f"evicted by the server by t={done['t']:.2f}s ({seen.describe()})"
    if took <= case.within:
        summary = f"{case.describe()} left the registry after {took:.2f}s ({case.bound()}): {how}"
        return Verdict("eviction", PASS, summary, [], figures)
    evidence = [{"problem": "left the registry after the bound", "t": done["t"], "after_s": rounded(took)}]
    evidence += cap_evidence([p for p in timeline if p["t"] <= done["t"]])
    evidence += _still_connected(ctx, case, case.t0 + case.within)
    summary = f"{case.describe()} left the registry only after {took:.2f}s ({case.bound()}): {how}"
    left = next((p for p in timeline if p["registry"] <= p["expected_at_most"]), None)
    if left is not None and left["t"] < done["t"] and left.get("old_connections") is not None:
        evidence[0] = {"problem": "connections held open after leaving the registry", "t": left["t"],
                       "until_t": done["t"]}  # fmt: skip
        summary = (f"{case.describe()} left the registry after {left['t'] - case.t0:.2f}s, but the target kept "
                   f"{left['old_connections'] - left['old_expected_at_most']} more connection(s) than the clients "
                   f"it should keep open (ESTABLISHED in its socket table) until t={done['t']:.2f}s, "
                   f"{took:.2f}s after the fault ({case.bound()}): {how}")  # fmt: skip
    return Verdict("eviction", FAIL, summary, evidence, figures)


def _eviction_missing(ctx: CheckContext, case: Eviction, timeline: list[dict[str, Any]], figures: Figures) -> Verdict:
    evidence = cap_evidence(timeline) + _still_connected(ctx, case, case.t0 + case.within)
    if not timeline or timeline[-1]["t"] < case.t0 + case.within:
        summary = f"{case.describe()}: metrics samples end before the {case.within:g}s bound without an eviction"
        return Verdict.unknown("eviction", UNRELIABLE, summary, evidence, figures)
    last = timeline[-1]
    summary = (
        f"{case.describe()} never left the registry: last sample {last['registry']} clients, "
        f"expected at most {last['expected_at_most']}"
    )
    return Verdict("eviction", FAIL, summary, evidence, figures)
