"""What the generator may draw for each fault type: its parameters' ranges, how long it lasts before
its heal, the cohort it wants, the target settings it relies on, and the standard checks that judge it.

The table is keyed by fault type, so the fault catalogue stays as it is. A fault family may instead
declare ``ranges`` on its class (a mapping of param name to range, as in ``params`` below): it is then
explored with a cohort of a few reconnecting clients, a heal after a second or three and the standard
checks only. A fault in neither place is not explored (``explore.json`` names it).

A range is ``(low, high)`` (integers when both ends are integers, else numbers rounded to 0.01) or a
list of choices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.external import external_cannot_judge
from harness.faults import FAULTS
from harness.targetspec import TargetSpec

Range = tuple[float, float] | list[Any]

# Cohort profiles: two faults may share a cohort only when they want the same profile.
RECONNECTING = "reconnecting"  # probe clients that reconnect
VANISHING = "vanishing"  # probe clients that do not reconnect (their eviction is judged)
SLOW = "slow"  # one client with a small receive buffer that does not reconnect
EMPTY = "empty"  # no clients of its own: the fault brings its own (stuck readers, churners)


@dataclass(frozen=True)
class CohortWant:
    profile: str
    clients: tuple[int, int] = (1, 4)


@dataclass(frozen=True)
class FaultRange:
    params: dict[str, Range]
    # seconds from start to heal; None: no heal step (only for a fault that ends the run: the liveness
    # check wants a probe after the last heal, and the runner heals what is left only at the very end)
    duration: tuple[float, float] | None = (1.0, 3.0)
    cohort: CohortWant | None = field(default_factory=lambda: CohortWant(RECONNECTING))
    target: dict[str, Any] = field(default_factory=dict)  # target params it relies on, set when the target has them
    checks: tuple[tuple[str, dict[str, Any]], ...] = ()  # checker and options; "{cohort}" stands for its cohort
    shrink_low: frozenset[str] = frozenset()  # params the shrinker lowers (durations, counts) instead of resetting
    terminal: bool = False  # ends the run (nothing may follow it)
    feed_at_least: float = 0.0  # the feed rate it needs to bite quickly
    feed: dict[str, Any] = field(default_factory=dict)  # feed settings it relies on
    # drawn only when --faults names it, and why: its needs would change every default schedule
    opt_in: str | None = None
    # seconds it adds to the run beyond its scheduled waits (cycles, a restart, filling buffers), from its
    # params with the defaults filled in: an estimate, for the budget
    seconds: Callable[[dict[str, Any]], float] = lambda params: 0.0


OPT_IN = "drawn only when --faults names it"
EVICTION = "eviction@{cohort}"
RECOVERY = "recovery@{cohort}"

TABLE: dict[str, FaultRange] = {
    "mass_drop": FaultRange(
        params={"share": (0.25, 1.0), "rst": [True, False]},
        duration=(0.0, 0.5),  # it acts at once; its heal marks the end, which the liveness check counts from
        cohort=CohortWant(VANISHING, (2, 12)),
        checks=((EVICTION, {"cohort": "{cohort}", "within": 2}),),
    ),
    "mid_send_disconnect": FaultRange(
        params={"bytes": (200, 4000), "rst": [True, False]},
        duration=(1.0, 2.5),
        cohort=CohortWant(VANISHING, (1, 4)),
        checks=((EVICTION, {"cohort": "{cohort}", "within": 3}),),
        feed_at_least=200,
    ),
    "network_cut": FaultRange(
        params={},
        duration=(2.5, 4.0),
        target={"heartbeat": 1},
        checks=((EVICTION, {"cohort": "{cohort}", "within": 2.5}), (RECOVERY, {"cohort": "{cohort}", "within": 5})),
    ),
    "flap": FaultRange(
        params={"cycles": (1, 3), "cut": (0.3, 1.0), "up": (0.3, 1.0)},
        duration=(0.0, 0.5),  # its heal waits for the cycles to end
        target={"heartbeat": 1},
        checks=((RECOVERY, {"cohort": "{cohort}", "within": 5}),),
        shrink_low=frozenset({"cycles", "cut", "up"}),
        seconds=lambda p: p["cycles"] * (p["cut"] + p["up"]),
    ),
    "slow_consumer": FaultRange(
        params={"rate": (1, 3), "ceiling": (6.0, 10.0), "hold": (1.0, 3.0)},
        duration=(0.0, 1.0),  # its heal waits until the send path is full, then for its hold
        cohort=CohortWant(SLOW, (1, 1)),
        target={"send_timeout": 1},
        checks=((EVICTION, {"cohort": "{cohort}", "within": 5}),),
        shrink_low=frozenset({"ceiling", "hold"}),
        feed_at_least=400,
        seconds=lambda p: p["hold"] + 2.0,
    ),
    "stuck_reader": FaultRange(
        # mostly readers that answer pings: a silent one is the heartbeat's to evict, and tells
        # little about the broadcast path, which only a pong-answering reader blocks
        params={"clients": (1, 3), "answer_heartbeats": [True, True, True, False], "ceiling": (6.0, 10.0),
                "hold": (1.0, 3.0)},
        duration=(0.0, 1.0),  # as slow_consumer
        cohort=CohortWant(EMPTY, (0, 0)),
        target={"heartbeat": 1, "send_timeout": 1},
        checks=((EVICTION, {"cohort": "{cohort}", "within": 3.5}),),
        shrink_low=frozenset({"clients", "ceiling", "hold"}),
        feed_at_least=600,
        seconds=lambda p: p["hold"] + 2.0,
    ),
    "latency": FaultRange(
        params={"latency": (20, 200), "jitter": (0, 100)},
        checks=(("delivery@{cohort}", {"cohorts": ["{cohort}"]}),),
    ),
    "slicer": FaultRange(
        params={"average_size": (32, 128), "size_variation": (0, 16), "delay": (0, 500)},
        checks=(("delivery@{cohort}", {"cohorts": ["{cohort}"]}),),
    ),
    "slow_close": FaultRange(params={"delay": (500, 3000)}),
    "churn": FaultRange(
        params={"rate": (5.0, 30.0), "lifetime": (0.1, 0.5), "max_clients": (20, 150)},
        cohort=CohortWant(EMPTY, (0, 0)),
        shrink_low=frozenset({"rate", "lifetime", "max_clients"}),
    ),
    "server_kill": FaultRange(
        params={"restart_after": (0.5, 2.0)},
        duration=(0.0, 0.5),  # its start returns once the target is back
        cohort=None,
        checks=(("recovery@steady", {"cohort": "steady", "within": 5}),),
        shrink_low=frozenset({"restart_after"}),
        seconds=lambda p: p["restart_after"] + 1.5,
    ),
    "server_pause": FaultRange(params={}, duration=(0.5, 2.0), cohort=None),
    "log_rotation": FaultRange(
        params={"mode": ["rename", "copytruncate"], "times": (1, 3), "interval": (0.3, 1.0), "down": [False, True]},
        duration=(0.0, 0.5),  # its start returns once the files are rotated (and the target is back)
        cohort=None,
        feed={"split_lines": True},  # a half-written last line at every rotation
        # recovery would be unknown whenever the target stays up: delivery judges a restart's resume
        checks=(("no_error_logs", {"allow": ["truncated while not followed"]}),),
        shrink_low=frozenset({"times", "interval"}),
        seconds=lambda p: p["times"] * (p["interval"] + (2.0 if p["down"] else 0.0)),
        opt_in="it writes the feed's lines in two pieces, a feed no other fault uses",
    ),
    "stuck_churn": FaultRange(
        params={"waves": (2, 4), "clients": (2, 6), "wait": (2.0, 4.0)},
        duration=(0.0, 0.5),  # its heal waits for the waves to end
        cohort=CohortWant(EMPTY, (0, 0)),
        target={"heartbeat": 2, "send_timeout": 0.5, "queue_size": 8},
        checks=(("leaks", {"cohort": "{cohort}"}),),
        shrink_low=frozenset({"waves", "clients", "wait"}),
        feed_at_least=1000,  # so that each wave falls behind and is evicted within its wait
        seconds=lambda p: p["waves"] * p["wait"],
        opt_in="it needs a feed of 1,000 events a second, which would change every default schedule",
    ),
    "malformed_input": FaultRange(
        params={"clients": (1, 4), "pause": (0.1, 0.5), "nesting": [0, 5000]},
        duration=(0.5, 2.0),
        cohort=None,
        shrink_low=frozenset({"clients"}),
        seconds=lambda p: p["clients"] * (p["pause"] + p["read_s"]),
        opt_in="it judges the server's handling of bad input, not its delivery under faults",
    ),
    "steady_requests": FaultRange(
        # legitimate clients, at 40-60% of the limit for long enough to spend the burst (two seconds of
        # the limit) several times over if the bucket refilled too slowly
        params={"rate": (20.0, 30.0), "duration": (4.0, 8.0)},
        duration=(0.0, 0.5),  # its heal waits for the requests to end
        target={"rate_limit": 50},
        checks=(("rate_limit@{cohort}", {"cohort": "{cohort}"}),),
        shrink_low=frozenset({"duration"}),
        seconds=lambda p: p["duration"],
        opt_in="it judges the target's request limiting (its rate is a share of a limit of 50 a second)",
    ),
    "server_stop": FaultRange(
        params={"timeout": (3.0, 10.0)},
        duration=None,
        cohort=None,
        checks=(("shutdown", {"within": 3}),),
        terminal=True,
        seconds=lambda p: 1.0,
    ),
}

# Every schedule has these; a terminal fault drops those that need the target running at the end.
STANDARD_CHECKS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("no_error_logs", {}),
    ("delivery", {"cohorts": ["steady"], "latency_p99_ms": 500, "e2e_p99_ms": 1000}),
    ("liveness", {}),
    ("persistence", {}),
)
# Checks that no fault brings and any schedule can judge: a schedule has them only when --checks names
# them, so the default schedules stay as they were. Some bring the cohorts they judge, made from the
# target's feed nodes.
@dataclass(frozen=True)
class OptInCheck:
    options: dict[str, Any]
    cohorts: Callable[[tuple[str, ...]], list[dict[str, Any]]] = lambda nodes: []
    tail: tuple[dict[str, Any], ...] = ()  # steps after the last heal


def view_cohorts(nodes: tuple[str, ...]) -> list[dict[str, Any]]:
    """Clients that watch the first node, and clients that watch the first two."""
    cohorts = [{"name": "view_one", "clients": 2, "view": nodes[0]}] if nodes else []
    if len(nodes) > 1:
        cohorts.append({"name": "view_two", "clients": 2, "view": list(nodes[:2])})
    return cohorts


OPT_IN_CHECKS: dict[str, OptInCheck] = {
    "stats": OptInCheck({}),
    # the churn scenario's budget, which the monitor keeps with forty connections a second
    "log_volume": OptInCheck({"errors_per_s": 0.0, "warnings_per_s": 1.0, "lines_per_s": 10.0, "bytes_per_s": 4096}),
    # The feed writes to the nodes in turn, so at 100-400 events a second every batch holds each node's
    # events; a quiet second and a half at the end makes batches of one node, empty to the other's view.
    "views": OptInCheck({}, view_cohorts, tail=({"feed_rate": 20}, {"wait": 1.5})),
    "resume": OptInCheck({"cohort": "resumers"}, lambda nodes: [{"name": "resumers", "clients": 3, "resume_after": 1}]),
}
# Checks a schedule that stops the target goes without: those that need it at the end, and log_volume,
# since a target that stops logs a line for each client it lets go, which is no attack on its log.
NOT_AFTER_TERMINAL = frozenset({"delivery", "liveness", "recovery", "stats", "views", "resume", "log_volume"})


def fault_range(fault_type: str) -> FaultRange | None:
    """The ranges of ``fault_type``: the table's entry, else one made from the class's ``ranges``."""
    if fault_type in TABLE:
        return TABLE[fault_type]
    declared = getattr(FAULTS.get(fault_type), "ranges", None)
    if not declared:
        return None
    needs_cohort = getattr(FAULTS[fault_type], "needs_cohort", True)
    return FaultRange(params=dict(declared), cohort=CohortWant(RECONNECTING) if needs_cohort else None)


def explorable(external: bool) -> tuple[list[str], dict[str, str]]:
    """The fault types the generator uses by default, and each left out with why (an opt-in one may
    still be named in ``--faults``: see ``nameable``)."""
    usable, left_out = [], {}
    for fault_type in sorted(FAULTS):
        why = _not_nameable(fault_type, external)
        ranges = fault_range(fault_type)
        if why is None and ranges is not None and ranges.opt_in:
            why = f"{OPT_IN}: {ranges.opt_in}"
        if why is None:
            usable.append(fault_type)
        else:
            left_out[fault_type] = why
    return usable, left_out


def unjudged_checks(target: TargetSpec) -> dict[str, str]:
    """The checkers the target file leaves nothing to judge with, each with why: drawn, they could only
    say unknown, and every schedule with them would end unknown however the target behaved."""
    out: dict[str, str] = {}
    if target.persistence is None:
        out["persistence"] = "the target file declares no persistence: no stored event ids to compare with the feed"
    if target.stats is None:
        out["stats"] = "the target file declares no stats: no message with the server's own counts"
    return out | external_cannot_judge(target)


def nameable(external: bool) -> list[str]:
    """The fault types ``--faults`` may name: the default ones and the opt-in ones."""
    return [fault_type for fault_type in sorted(FAULTS) if _not_nameable(fault_type, external) is None]


def _not_nameable(fault_type: str, external: bool) -> str | None:
    """Why ``fault_type`` cannot be explored at all, or None."""
    if fault_range(fault_type) is None:
        return "no ranges declared (harness/explore/ranges.py or the fault's `ranges`)"
    if external and FAULTS[fault_type].needs_process:
        return "needs the target's process: the target is external"
    return None
