"""``wschaos explore``: run seeded random fault schedules against a target within a time budget, and
shrink each distinct failure to a small scenario that still fails (``harness.explore``)."""

from __future__ import annotations

import asyncio
import random
import re
import sys
from pathlib import Path
from typing import Any

import click

from harness import __version__
from harness.capacity import lookup
from harness.checkers import CHECKERS
from harness.errors import HarnessError
from harness.explore.ranges import explorable, nameable, unjudged_checks
from harness.explore.session import Explorer, Settings, clock_text, known_failures
from harness.targetspec import bundled_monitor, load_target
from harness.toxiproxy import running_toxiproxy
from wschaos.rundir import new_run_dir, run_with_signals

BUDGET_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h)?$")
UNITS = {"s": 1, "m": 60, "h": 3600, None: 1}
MAX_BUDGET_S = 24 * 3600


@click.command()
@click.option("--target", "target_file", type=click.Path(path_type=Path), help="target file (default: the monitor)")
@click.option("--budget", default="10m", show_default=True,
              help="how long it may take, a hard limit: 90s, 10m, 1h (a bare number is seconds)")  # fmt: skip
@click.option("--seed", type=int, default=None, help="seed of the schedules and of every run (default: random)")
@click.option("--faults", "faults_arg", default=None,
              help="fault types to use, comma-separated (default: every one with ranges)")  # fmt: skip
@click.option("--checks", "checks_arg", default=None,
              help="checkers to use, comma-separated (default: the standard checks of the faults used; "
                   "stats, log_volume, views and resume judge every schedule, but only when named here)")  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option("--repeats", type=click.IntRange(1, 20), default=3, show_default=True,
              help="runs in a row a failure, and each smaller schedule kept, must fail the same way")  # fmt: skip
@click.option("--capacity", "capacity_file", type=click.Path(path_type=Path), default=None,
              help="where the target's calibrated capacity is stored; feed rates are shares of it when "
                   "it has one (default: OUT/capacity.json)")  # fmt: skip
@click.option("--load", is_flag=True, help="Locust users, on a proxy of their own, in half the schedules")
@click.option("--until-shrunk", type=click.IntRange(1, 100), default=None,
              help="end once this many distinct failures are shrunk (default: run out the budget)")  # fmt: skip
@click.option("--known", "known_paths", multiple=True, type=click.Path(path_type=Path),
              help="explore.json (or folder) of an earlier exploration: its failures are counted but neither "
                   "confirmed nor shrunk again, and do not make the exit status 1 (repeatable)")  # fmt: skip
def explore(
    target_file: Path | None, budget: str, seed: int | None, faults_arg: str | None, checks_arg: str | None,
    out: Path, repeats: int, capacity_file: Path | None, load: bool, until_shrunk: int | None,
    known_paths: tuple[Path, ...],
) -> None:  # fmt: skip
    """Run random fault schedules until the budget ends; shrink each distinct failure.

    Writes OUT/STAMP-explore/: every schedule tried, failure-N/ with original.yaml, minimal.yaml (run it
    with `wschaos run`) and shrink.log, and explore.json (what failed, and what was exercised). Exits 1
    when a failure was found (one not --known), 130 when interrupted (after writing what it has)."""
    budget_s = parse_budget(budget)
    target = load_target(target_file) if target_file else bundled_monitor()
    usable, left_out = explorable(target.external)
    faults = choose_faults(faults_arg, usable, nameable(target.external), left_out)
    unjudged = unjudged_checks(target)
    checks = choose_checks(checks_arg, target.name, unjudged)
    known = {sig: where for path in known_paths for sig, where in known_failures(path).items()}
    seed = seed if seed is not None else random.randrange(2**31)
    capacity = lookup(capacity_file or out / "capacity.json", target)
    run_dir = new_run_dir(out.resolve(), "explore")
    settings = Settings(target, run_dir, budget_s, seed, faults, checks, repeats,
                        {f: why for f, why in left_out.items() if f not in faults},
                        str(target_file) if target_file else None, until_shrunk,
                        capacity.rate if capacity else None, load, unjudged, known)  # fmt: skip
    rates = f"shares of its capacity, {capacity.rate:g} events/s" if capacity else "100-400 events/s, not calibrated"
    rates += ", Locust load in half the schedules" if load else ""
    click.echo(f"wschaos {__version__}: exploring {target.name} for {clock_text(budget_s)}, seed {seed}, "
               f"faults {', '.join(faults)}, feed rates {rates}, in {run_dir}")  # fmt: skip
    explorer = Explorer(settings, progress=click.echo)
    for name, why in explorer.checks_left_out().items():
        click.echo(f"  not judged: {name}: {why}")
    try:
        run_with_signals(search(explorer))
    except (KeyboardInterrupt, asyncio.CancelledError):
        explorer.stopped_by = "interrupted"
        path = write_results(explorer)
        click.echo(f"interrupted: everything the exploration started has been stopped; what it found: {path}",
                   err=True)  # fmt: skip
        sys.exit(130)
    path = write_results(explorer)
    for line in summary_lines(explorer.summary()):
        click.echo(line)
    click.echo(f"Summary: {path}")
    click.echo(f"Report: {path.parent / 'index.html'}")
    sys.exit(1 if explorer.new_failures() else 0)


def write_results(explorer: Explorer) -> Path:
    """explore.json, and index.html from it; returns the path of explore.json."""
    from reports.explore_html import write_explore_html  # here: the reports are slow to import

    path = explorer.write_summary()
    write_explore_html(path.parent)
    return path


async def search(explorer: Explorer) -> None:
    async with running_toxiproxy(explorer.settings.out_dir) as toxiproxy:
        await explorer.explore(toxiproxy)


def parse_budget(text: str) -> float:
    match = BUDGET_RE.match(text.strip())
    if match is None:
        raise HarnessError(f"--budget: {text!r} is not a duration; give seconds, or 90s, 10m, 1h")
    seconds = float(match.group(1)) * UNITS[match.group(2)]
    if not 1 <= seconds <= MAX_BUDGET_S:
        raise HarnessError(f"--budget: {text!r} must be between 1 second and 24 hours")
    return seconds


def split_names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def choose_faults(text: str | None, usable: list[str], allowed: list[str], left_out: dict[str, str]) -> tuple[str, ...]:
    """The default fault types, or those ``text`` names: each of ``allowed`` (the default and opt-in ones)."""
    if text is None:
        return tuple(usable)
    names = split_names(text)
    if not names:
        raise HarnessError("--faults: give at least one fault type")
    for name in names:
        if name in allowed:
            continue
        if name in left_out:
            raise HarnessError(f"--faults: {name} cannot be explored: {left_out[name]}")
        raise HarnessError(f"--faults: unknown fault type {name!r}; known: {', '.join(allowed)}")
    return tuple(dict.fromkeys(names))


def choose_checks(text: str | None, target: str, unjudged: dict[str, str]) -> frozenset[str] | None:
    """The checkers ``text`` names, None for the standard ones; refuses one ``target`` cannot be judged by."""
    if text is None:
        return None
    names = split_names(text)
    if not names:
        raise HarnessError("--checks: give at least one checker")
    unknown = [n for n in names if n not in CHECKERS]
    if unknown:
        raise HarnessError(f"--checks: unknown checker(s) {', '.join(unknown)}; known: {', '.join(CHECKERS)}")
    for name in names:
        if name in unjudged:
            raise HarnessError(f"--checks: {name} cannot judge {target}: {unjudged[name]}")
    return frozenset(names)


def summary_lines(summary: dict[str, Any]) -> list[str]:
    runs = summary["runs"]
    lines = ["", f"explored for {clock_text(summary['wall_s'])}: {summary['schedules_tried']} schedule(s) tried "
                 f"({runs['explore']} runs, {runs['shrink']} more to shrink), "
                 f"{len(summary['failures'])} distinct failure(s)"]  # fmt: skip
    for f in summary["failures"]:
        sig = f["signature"]
        what = " / ".join([sig["status"], sig["checker"] or "harness", *([sig["reason"]] if sig["reason"] else [])])
        if f["state"] == "known":
            shape = f"known, found before in {f['known_from']}: not shrunk again"
        elif "minimal" in f:
            before, after = f["original"], f["minimal"]
            shape = (f"shrunk from {len(before['faults'])} fault(s), {before['clients']} clients to "
                     f"{', '.join(after['faults']) or 'no fault'}, {after['clients']} clients "
                     f"({f['kept']} of {f['steps']} steps kept, {f['state']})")  # fmt: skip
        else:
            shape = f"{f['state']}: failed the same way in {f['original_failed']} runs"
        lines.append(f"  {f['dir']}: {what} (seen {f['hits']}x): {shape}")
    coverage = summary["coverage"]
    lines.append("faults used: " + ", ".join(f"{n} {c['schedules']}" for n, c in coverage["faults"].items()))
    if summary["load"]:
        lines.append(f"schedules with Locust load: {coverage['schedules_with_load']}")
    for checker, outcomes in coverage["outcomes"].items():
        lines.append(f"  {checker}: " + (", ".join(f"{o} {n}" for o, n in outcomes.items()) or "never run"))
    for checker, why in summary.get("checks_left_out", {}).items():
        lines.append(f"  {checker}: not judged: {why}")
    return lines
