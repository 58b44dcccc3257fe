"""The smaller schedules the shrinker tries, in the order it tries them: without a fault (and its heal),
without the Locust load, without a feed step, without an untouched cohort, with only the failing
checker's checks, with shorter waits, fewer clients and Locust users, a lower feed rate, lower
durations and counts in the faults' params, the other params back at their defaults, the target's
settings back at theirs, and a shorter steady state. Each pass gives its candidates from the current
schedule; none changes the one it is given."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from harness.checkers import checker_name
from harness.explore.ranges import fault_range
from harness.scenario import DEFAULT_STEADY_S

Schedule = dict[str, Any]
Candidate = tuple[str, Schedule]  # what changed, and the schedule with the change
Pass = Callable[[Schedule, "str | None"], list[Candidate]]

MIN_RATE = 20  # events a second: the feed never goes below this
RATE_STEP_SHARE = 0.1
MIN_STEADY = 0.2
MIN_STEP = 0.1  # seconds: waits and float params are not shortened by less


def drop_faults(s: Schedule, checker: str | None) -> list[Candidate]:
    out = []
    for i, step in enumerate(s["method"]):
        if "fault" in step:
            name = step["fault"]["name"]
            new = copy.deepcopy(s)
            new["method"] = [x for j, x in enumerate(s["method"]) if j != i and x.get("heal") != name]
            out.append((f"drop fault {name} ({step['fault']['type']}) and its heal", new))
    return out


def drop_load(s: Schedule, checker: str | None) -> list[Candidate]:
    """Without the Locust users (and their check, unless it is the failing one)."""
    if "load" not in s or checker == "load":
        return []
    new = copy.deepcopy(s)
    del new["load"]
    new["checks"].pop("load", None)
    return [(f"drop the load ({s['load']['users']} Locust users)", new)] if new["checks"] else []


def fewer_users(s: Schedule, checker: str | None) -> list[Candidate]:
    out = []
    users = s.get("load", {}).get("users")
    for value in lower(users, 1, integer=True) if users else []:
        new = copy.deepcopy(s)
        new["load"].update(users=value, spawn_rate=value)
        out.append((f"Locust users {users} -> {value}", new))
    return out


def drop_feed_steps(s: Schedule, checker: str | None) -> list[Candidate]:
    out = []
    for i, step in enumerate(s["method"]):
        if "feed_rate" in step:
            new = copy.deepcopy(s)
            del new["method"][i]
            out.append((f"drop step {i} (feed_rate {step['feed_rate']})", new))
    return out


def drop_cohorts(s: Schedule, checker: str | None) -> list[Candidate]:
    """Cohorts no fault acts on, with the checks that name them."""
    used = {step["fault"].get("cohort") for step in s["method"] if "fault" in step}
    out = []
    for cohort in s["cohorts"]:
        name = cohort["name"]
        if name in used or len(s["cohorts"]) == 1:
            continue
        new = copy.deepcopy(s)
        new["cohorts"] = [c for c in new["cohorts"] if c["name"] != name]
        new["checks"] = without_cohort(new["checks"], name)
        if new["checks"]:
            out.append((f"drop cohort {name} ({cohort['clients']} clients) and its checks", new))
    return out


def without_cohort(checks: dict[str, Any], cohort: str) -> dict[str, Any]:
    out = {}
    for key, opts in checks.items():
        opts = dict(opts or {})
        if opts.get("cohort") == cohort:
            continue
        if "cohorts" in opts:
            opts["cohorts"] = [c for c in opts["cohorts"] if c != cohort]
            if not opts["cohorts"]:
                continue
        out[key] = opts
    return out


def only_failing_checks(s: Schedule, checker: str | None) -> list[Candidate]:
    kept = {k: v for k, v in s["checks"].items() if checker_name(k) == checker}
    if not kept or len(kept) == len(s["checks"]):
        return []
    new = copy.deepcopy(s)
    new["checks"] = copy.deepcopy(kept)
    return [(f"keep only the {checker} checks", new)]


def shorten_waits(s: Schedule, checker: str | None) -> list[Candidate]:
    out = []
    for i, step in enumerate(s["method"]):
        if "wait" not in step:
            continue
        removed = copy.deepcopy(s)
        del removed["method"][i]
        out.append((f"drop step {i} (wait {step['wait']})", removed))
        for value in (v for v in lower(float(step["wait"]), 0.0, integer=False) if v > 0):
            new = copy.deepcopy(s)
            new["method"][i]["wait"] = value
            out.append((f"step {i}: wait {step['wait']} -> {value}", new))
    return out


def fewer_clients(s: Schedule, checker: str | None) -> list[Candidate]:
    out = []
    for i, cohort in enumerate(s["cohorts"]):
        for value in lower(cohort["clients"], 1, integer=True):
            new = copy.deepcopy(s)
            new["cohorts"][i]["clients"] = value
            out.append((f"cohort {cohort['name']}: {cohort['clients']} -> {value} clients", new))
    return out


def lower_rates(s: Schedule, checker: str | None) -> list[Candidate]:
    out = []
    rate = s.get("feed", {}).get("rate")
    if isinstance(rate, int | float):
        for value in lower(rate, MIN_RATE, integer=True, min_step=rate_step(rate)):
            new = copy.deepcopy(s)
            new["feed"]["rate"] = value
            out.append((f"feed rate {rate} -> {value}/s", new))
    for i, step in enumerate(s["method"]):
        if "feed_rate" in step:
            for value in lower(step["feed_rate"], MIN_RATE, integer=True, min_step=rate_step(step["feed_rate"])):
                new = copy.deepcopy(s)
                new["method"][i]["feed_rate"] = value
                out.append((f"step {i}: feed_rate {step['feed_rate']} -> {value}", new))
    return out


def lower_params(s: Schedule, checker: str | None) -> list[Candidate]:
    """Durations and counts (the params each fault's ranges mark) toward the low end of their range."""
    out = []
    for i, step in enumerate(s["method"]):
        fault = step.get("fault")
        ranges = fault_range(fault["type"]) if fault else None
        if fault is None or ranges is None:
            continue
        for name, value in fault.get("params", {}).items():
            spec = ranges.params.get(name)
            if name not in ranges.shrink_low or not isinstance(spec, tuple) or isinstance(value, bool):
                continue
            low = spec[0]
            for lowered in lower(value, low, integer=isinstance(value, int) and isinstance(low, int)):
                new = copy.deepcopy(s)
                new["method"][i]["fault"]["params"][name] = lowered
                out.append((f"fault {fault['name']}: {name} {value} -> {lowered}", new))
    return out


def default_params(s: Schedule, checker: str | None) -> list[Candidate]:
    """The other params back at their defaults (left out of the fault's params)."""
    out = []
    for i, step in enumerate(s["method"]):
        fault = step.get("fault")
        ranges = fault_range(fault["type"]) if fault else None
        if fault is None:
            continue
        for name in fault.get("params", {}):
            if ranges is not None and name in ranges.shrink_low:
                continue
            new = copy.deepcopy(s)
            params = new["method"][i]["fault"]["params"]
            del params[name]
            if not params:
                del new["method"][i]["fault"]["params"]
            out.append((f"fault {fault['name']}: {name} back to its default", new))
    return out


def default_target(s: Schedule, checker: str | None) -> list[Candidate]:
    """The target's settings back at its defaults, but for those a remaining fault relies on: its checks'
    bounds were chosen for them (an eviction bound for a 1 s heartbeat), and without them a failure
    could slip into another one that only looks the same."""
    relied_on = set()
    for step in s["method"]:
        ranges = fault_range(step["fault"]["type"]) if "fault" in step else None
        relied_on |= set(ranges.target) if ranges else set()
    out = []
    for name in s.get("target", {}):
        if name in relied_on:
            continue
        new = copy.deepcopy(s)
        del new["target"][name]
        if not new["target"]:
            del new["target"]
        out.append((f"target {name} back to its default", new))
    return out


def shorten_steady(s: Schedule, checker: str | None) -> list[Candidate]:
    out = []
    steady = float(s.get("steady_state", DEFAULT_STEADY_S))
    for value in lower(steady, MIN_STEADY, integer=False):
        new = copy.deepcopy(s)
        new["steady_state"] = value
        out.append((f"steady_state {steady} -> {value}", new))
    return out


def lower(value: float, low: float, integer: bool, min_step: float | None = None) -> list[Any]:
    """Values below ``value`` to try, smallest first: ``low``, halfway, and for integers one less; none
    closer to ``value`` than ``min_step`` (default: 1 for integers, MIN_STEP for floats)."""
    if value <= low:
        return []
    if integer:
        tries = [int(low), (int(low) + int(value)) // 2, int(value) - 1]
    else:
        tries = [low, round((low + value) / 2, 1)]
    step = min_step if min_step is not None else (1 if integer else MIN_STEP)
    return sorted({t for t in tries if value - t >= step - 1e-9})


def rate_step(rate: float) -> float:
    """A feed rate is lowered by a tenth of it at least: one event a second less is not a smaller
    schedule, and each such step costs as many runs as a real one."""
    return max(1.0, rate * RATE_STEP_SHARE)


PASSES: list[Pass] = [
    drop_faults,
    drop_load,
    drop_feed_steps,
    drop_cohorts,
    only_failing_checks,
    shorten_waits,
    fewer_clients,
    fewer_users,
    lower_rates,
    lower_params,
    default_params,
    default_target,
    shorten_steady,
]
