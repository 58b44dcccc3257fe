"""The ``wschaos`` command: run, list and validate scenarios."""

from __future__ import annotations

import asyncio
import json
import random
import shlex
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import click

from harness import __version__
from harness import calibrate as calibration
from harness.capacity import resolve_feed_rate
from harness.capacity import store as store_capacity
from harness.errors import HarnessError
from harness.loadspec import MAX_PROCESSES, MAX_SPAWN_RATE, MAX_TIME_S, MAX_USERS, LoadSpec, parse_mix
from harness.loadtest import run_plain_load, summary_lines
from harness.runner import ScenarioResult, run_scenario
from harness.scenario import SCENARIO_DIR, Scenario, ScenarioError, check_target_params, discover, load
from harness.targetspec import TargetSpec, bundled_monitor, load_target
from harness.toxiproxy import running_toxiproxy
from harness.workdir import compress_file
from wschaos import mutants as matrix
from wschaos.analyze_cmd import analyze_command
from wschaos.explore_cmd import explore
from wschaos.rundir import new_run_dir, run_with_signals

STATUS_COLOURS = {"pass": "green", "fail": "red", "error": "magenta", "unknown": "yellow", "skipped": "cyan"}
BROKEN = ("fail", "error")  # the statuses that fail a run; "unknown" is reported, not failed


def scenario_seed(base: int, name: str) -> int:
    """Each scenario's seed depends only on the run's seed and its name, not on the order."""
    return (base ^ zlib.crc32(name.encode())) & 0x7FFFFFFF


def coloured(status: str) -> str:
    return click.style(status.upper(), fg=STATUS_COLOURS.get(status, "white"), bold=True)


def print_result(result: ScenarioResult) -> None:
    click.echo(f"  {coloured(result.status)} {result.name} ({result.duration_s:.1f}s)")
    if result.error:
        click.echo(f"      error: {result.error}")
    if result.reason:
        click.echo(f"      skipped: {result.reason}")
    for v in result.verdicts:
        if v.status != "pass":
            why = f" ({v.unknown_reason})" if v.unknown_reason else ""
            click.echo(f"      {v.checker}: {coloured(v.status)}{why} {v.summary}")


def print_summary(results: list[ScenarioResult], run_dir: Path, wall: float) -> None:
    click.echo("")
    checkers = sorted({v.checker for r in results for v in r.verdicts})
    width = max((len(r.name) for r in results), default=8) + 2
    click.echo("scenario".ljust(width) + " ".join(c[:12].ljust(12) for c in checkers) + " time")
    for r in results:
        by = {v.checker: v.status for v in r.verdicts}
        cells = [(by.get(c, "-") if not r.error else "error").ljust(12) for c in checkers]
        click.echo(r.name.ljust(width) + " ".join(cells) + f" {r.duration_s:.1f}s")
    passed = sum(r.status == "pass" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    unknown = sum(r.status == "unknown" for r in results)
    held = f"{passed} of {len(results) - skipped} scenarios held" + (f", {unknown} unknown" if unknown else "")
    held += f" ({skipped} skipped)" if skipped else ""
    click.echo(f"\n{held}, in {wall:.1f}s. Results in {run_dir}")


async def run_suite(
    scenarios: list[Scenario], target: TargetSpec, run_dir: Path, seed: int, capacity_file: Path, repeat: int = 1,
    jobs: int = 1,
) -> list[ScenarioResult]:  # fmt: skip
    """Each scenario, ``repeat`` times: the k-th run (k >= 2) is ``NAME#k``, with a seed of its own. Up
    to ``jobs`` runs at once, each with its own target, proxies and directory (one Toxiproxy serves
    them all); the results keep the order of a serial run, and so do the verdicts: seeds depend on the
    run's name only."""
    from reports.repeats import repeat_name  # here: the reports are slow to import

    runs = [(scenario, k) for scenario in scenarios for k in range(1, repeat + 1)]
    slots = asyncio.Semaphore(jobs)
    async with running_toxiproxy(run_dir) as toxiproxy:

        async def one(scenario: Scenario, k: int) -> ScenarioResult:
            name = repeat_name(scenario.name, k)
            async with slots:
                if k == 1:
                    click.echo(f"- {scenario.name}: {(scenario.description.strip().splitlines() or [''])[0][:90]}")
                tag = f"[{name}] " if jobs > 1 else ""
                result = await run_scenario(
                    scenario, target, toxiproxy, run_dir / name, scenario_seed(seed, name),
                    progress=lambda msg: click.echo(f"    {tag}{msg}"), capacity_file=capacity_file,
                )  # fmt: skip
            result.name = name
            print_result(result)
            return result

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(scenario, k)) for scenario, k in runs]
    compress_file(run_dir / "toxiproxy.log")
    return [task.result() for task in tasks]


def scenario_args(items: tuple[str, ...], chosen: list[Scenario]) -> dict[str, str]:
    """Each chosen scenario as the command line gave it: its bare name, or its file's path as written
    (a directory given stands for the paths of its files), so that the run can be reproduced exactly."""
    given: dict[Path, str] = {}
    for item in items:
        for path in discover([item]):
            given[path.resolve()] = item if path == SCENARIO_DIR / f"{item}.yaml" else str(path)
    return {s.name: given.get(s.path.resolve(), s.name) if s.path else s.name for s in chosen}


def write_summary(run_dir: Path, results: list[ScenarioResult], seed: int, target: TargetSpec, wall: float,
                  *, given: dict[str, str] | None = None, target_arg: Path | None = None) -> None:  # fmt: skip
    summary = {
        "schema": "wschaos.summary/1",
        "harness_version": __version__,
        "target": target.name,
        "target_file": str(target.path) if target.path else None,
        "seed": seed,
        "wall_s": round(wall, 3),
        "command": shlex.join(["wschaos", *sys.argv[1:]]),
        "scenario_args": given or {},
        "target_arg": str(target_arg) if target_arg is not None else None,
        "passed": all(r.status not in BROKEN for r in results),
        "scenarios": [r.to_json() for r in results],
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))


@click.group()
@click.version_option(__version__, prog_name="wschaos")
def cli() -> None:
    """Chaos and fault injection for WebSocket broadcast servers."""


cli.add_command(explore)


@cli.command()
@click.argument("scenarios", nargs=-1)
@click.option("--target", "target_file", type=click.Path(path_type=Path), help="target file (default: the monitor)")
@click.option("--seed", type=int, default=None, help="seed for every random choice (default: random, recorded)")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option("--core", is_flag=True, help="only the scenarios marked core")
@click.option("--capacity", "capacity_file", type=click.Path(path_type=Path), default=None,
              help="capacities measured by `wschaos calibrate`, for feed rates given as a share "
                   "(default: OUT/capacity.json)")  # fmt: skip
@click.option("--repeat", type=click.IntRange(1, 100), default=1, show_default=True,
              help="run each scenario N times, each with its own seed; flaky scenarios are named")  # fmt: skip
@click.option("-j", "--jobs", type=click.IntRange(1, 16), default=1, show_default=True,
              help="scenarios run at once, each with its own target instance, ports and proxies")
@click.option("--baseline", type=click.Path(path_type=Path), default=None,
              help="an earlier run to gate this one against (see --fail-on); exit 1 on a regression")  # fmt: skip
@click.option("--fail-on", "fail_on", default=None, metavar="RULES",
              help="with --baseline: e.g. 'eviction_s>+1,p99_ms>+20%,status' (default: status)")  # fmt: skip
def run(
    scenarios: tuple[str, ...], target_file: Path | None, seed: int | None, out: Path, core: bool,
    capacity_file: Path | None, repeat: int, jobs: int, baseline: Path | None, fail_on: str | None,
) -> None:  # fmt: skip
    """Run SCENARIOS (names or files; default: every file in scenarios/)."""
    rules = gate_rules(baseline, fail_on)
    chosen = [load(p) for p in discover(scenarios)]
    if core:
        chosen = [s for s in chosen if s.core]
        if not chosen:
            raise HarnessError("--core selects none of the scenarios given (each is marked core: false)")
    target = load_target(target_file) if target_file else bundled_monitor()
    capacity_file = capacity_file or out / "capacity.json"
    check_params(chosen, target)
    for scenario in chosen:  # a missing capacity is said before anything starts
        resolve_feed_rate(scenario.feed_rate, target, capacity_file, scenario.name)
    seed = seed if seed is not None else random.randrange(2**31)
    run_dir = new_run_dir(out.resolve(), "suite" if len(chosen) != 1 else chosen[0].name)
    click.echo(f"wschaos {__version__}: {len(chosen)} scenario(s) against {target.name}, seed {seed}, in {run_dir}")
    started = time.monotonic()
    try:
        results = run_with_signals(run_suite(chosen, target, run_dir, seed, capacity_file.resolve(), repeat, jobs))
    except (KeyboardInterrupt, asyncio.CancelledError):
        click.echo("interrupted: everything the run started has been stopped", err=True)
        sys.exit(130)
    wall = time.monotonic() - started
    write_summary(run_dir, results, seed, target, wall, given=scenario_args(scenarios, chosen), target_arg=target_file)
    print_summary(results, run_dir, wall)
    if repeat > 1:
        print_repeats(run_dir, results)
    write_run_reports(run_dir)
    regressed = baseline is not None and report_gate(baseline, run_dir, rules)
    sys.exit(0 if all(r.status not in BROKEN for r in results) and not regressed else 1)


def print_repeats(run_dir: Path, results: list[ScenarioResult]) -> None:
    """Each scenario's pass rate over its repeats, flaky ones first; also into summary.json."""
    from reports.repeats import repeat_stats

    stats = sorted(repeat_stats([r.to_json() for r in results]), key=lambda s: not s.flaky)
    click.echo("")
    for entry in stats:
        click.echo(click.style(entry.line(), fg="yellow") if entry.flaky else entry.line())
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["repeats"] = [entry.to_json() for entry in stats]
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))


def gate_rules(baseline: Path | None, fail_on: str | None) -> list[Any]:
    """The --fail-on rules, read (and the baseline found) before anything runs."""
    from reports.gates import baseline_rules  # here: the reports are slow to import

    return baseline_rules(baseline, fail_on)


def report_gate(base: Path, new: Path, rules: list[Any]) -> bool:
    """Prints the gate's lines; True when the new run regressed."""
    from reports.gates import gate

    lines, regressed = gate(base, new, rules)
    for line in lines:
        click.echo(line, err=regressed)
    return regressed


def check_params(chosen: list[Scenario], target: TargetSpec) -> None:
    """Scenarios that set ``target:`` keys the target lacks. Alone, or all of them, they stop the run
    before it starts; among others they are said first and each ends as an error (the runner refuses
    it), while the rest run: a suite against another server still judges what it can."""
    problems = []
    for scenario in chosen:
        try:
            check_target_params(scenario, target)
        except ScenarioError as exc:
            problems.append(exc)
    if problems and len(problems) == len(chosen):
        raise problems[0]
    for exc in problems:
        click.echo(f"cannot run as written against {target.name}: {exc.message}", err=True)


def write_run_reports(run_dir: Path) -> None:
    """report.json, index.html and junit.xml of a finished run; a report that cannot be written is said
    plainly and never hides the run's own result."""
    try:
        from reports import write_reports  # here, not at the top: matplotlib is slow to import for `wschaos list`
        from reports.terminal import failure_lines, paths_line

        paths = write_reports(run_dir)
    except Exception as exc:
        click.echo(f"reports not written: {type(exc).__name__}: {exc} (retry with: wschaos report {run_dir})", err=True)
        return
    for line in failure_lines(json.loads(paths["json"].read_text(encoding="utf-8"))):
        click.echo(line)
    click.echo(paths_line(paths))


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--full", is_flag=True, help="every scenario against every mutant, not only the one expected to catch it")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option("--mutants-module", default=matrix.DEFAULT_MODULE, show_default=True,
              help="module whose `python -m` prints the mutant catalogue, run in the project's root")  # fmt: skip
@click.option("--list", "list_only", is_flag=True, help="print the catalogue (what each mutant breaks) and stop")
def mutants(names: tuple[str, ...], full: bool, seed: int, out: Path, mutants_module: str, list_only: bool) -> None:
    """Run scenarios against broken monitors (default: tests/mutants) and print which checker caught which."""
    catalogue = matrix.read_catalogue(mutants_module)
    chosen = list(names) or list(catalogue.mutants)
    catalogue.check_names(chosen)
    if list_only:
        for m in (catalogue.mutants[name] for name in chosen):
            click.echo(f"{m.name:24} {m.scenario}/{m.checker}: {m.breaks}")
        return
    run_dir = new_run_dir(out.resolve(), "mutants")
    click.echo(f"{len(chosen)} mutant(s), {'every scenario' if full else 'the scenario expected to catch each'}")
    cells = run_with_signals(matrix.run_matrix(catalogue, chosen, run_dir, seed, full=full, progress=click.echo))
    table = matrix.matrix_table(cells)
    (run_dir / "mutants.json").write_text(json.dumps([c.to_json() for c in cells], indent=2))
    (run_dir / "mutants.md").write_text(table + "\n")
    from reports.mutants_html import write_mutants_html  # here: matplotlib and jinja2 are slow to import

    click.echo(f"matrix: {write_mutants_html(run_dir, cells, seed)}")
    click.echo("\n" + table)
    missed = [m for m in chosen if not any(c.mutant == m and (c.caught_by or c.status == "skipped") for c in cells)]
    wrong = [c for c in cells if not matrix.caught_for_the_right_reason(catalogue, c)]
    for m in missed:
        click.echo(f"SURVIVED: {m}", err=True)
    for c in wrong:
        click.echo(f"caught for another reason: {c.mutant} in {c.scenario} by {c.caught_by}", err=True)
    sys.exit(1 if missed or wrong else 0)


@cli.command()
@click.argument("run_dir", required=False, type=click.Path(path_type=Path))
@click.option("--compare", "compare_dirs", nargs=2, type=click.Path(path_type=Path), metavar="RUN_A RUN_B",
              help="say what changed from RUN_A to RUN_B instead")  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path), help="where compare.html goes (default: RUN_B/compare.html)")
@click.option("--fail-on", "fail_on", default=None, metavar="RULES",
              help="with --compare: exit 1 when RUN_B regressed from RUN_A, "
                   "e.g. 'eviction_s>+1,p99_ms>+20%,status'")  # fmt: skip
def report(run_dir: Path | None, compare_dirs: tuple[Path, Path] | None, out: Path | None, fail_on: str | None) -> None:
    """Write the reports of RUN_DIR again (default: runs/latest), or compare two runs."""
    from reports import write_reports  # here, not at the top: matplotlib is slow to import for `wschaos list`
    from reports.compare import compare_runs, comparison_text, write_compare_html
    from reports.terminal import paths_line, summary_lines

    if compare_dirs:
        rules = gate_rules(compare_dirs[0], fail_on) if fail_on is not None else []
        comparison = compare_runs(*compare_dirs)
        click.echo(comparison_text(comparison))
        path = write_compare_html(comparison, out or Path(compare_dirs[1]) / "compare.html")
        click.echo(f"\nComparison: {path}")
        sys.exit(1 if rules and report_gate(*compare_dirs, rules) else 0)
    if fail_on is not None:
        raise HarnessError("--fail-on needs --compare RUN_A RUN_B")
    paths = write_reports(run_dir or Path("runs") / "latest")
    for line in summary_lines(json.loads(paths["json"].read_text(encoding="utf-8"))):
        click.echo(line)
    click.echo(paths_line(paths))


@cli.command("calibrate")
@click.option("--target", "target_file", type=click.Path(path_type=Path), help="target file (default: the monitor)")
@click.option("--clients", type=click.IntRange(1, 2000), default=None,
              help="probe clients (default: the most a core scenario starts with)")  # fmt: skip
@click.option("--p99-ms", type=click.FloatRange(1, 60000), default=calibration.DEFAULT_P99_MS, show_default=True,
              help="bound on the end-to-end delivery p99")  # fmt: skip
@click.option("--budget", "budget_s", type=click.FloatRange(1, 3600), default=calibration.DEFAULT_BUDGET_S,
              show_default=True, help="seconds the search may take")  # fmt: skip
@click.option("--step-s", type=click.FloatRange(0.5, 60), default=calibration.DEFAULT_STEP_S, show_default=True,
              help="seconds of feed in each step")  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option("--capacity", "capacity_file", type=click.Path(path_type=Path), default=None,
              help="where the result is stored (default: OUT/capacity.json)")  # fmt: skip
def calibrate_command(
    target_file: Path | None, clients: int | None, p99_ms: float, budget_s: float, step_s: float, out: Path,
    capacity_file: Path | None,
) -> None:  # fmt: skip
    """Find the highest feed rate the target delivers in full, without faults, and store it.

    Scenarios can then give their feed rate as a share of it: feed: {rate: "50%"}."""
    target = load_target(target_file) if target_file else bundled_monitor()
    clients = clients or calibration.default_clients(load(p) for p in discover())
    capacity_file = capacity_file or out / "capacity.json"
    run_dir = new_run_dir(out.resolve(), "calibrate")
    click.echo(f"wschaos {__version__}: calibrating {target.name} with {clients} clients, e2e p99 under "
               f"{p99_ms:g} ms, {step_s:g} s a step, budget {budget_s:g} s, in {run_dir}")  # fmt: skip

    async def search() -> calibration.Calibration:
        async with running_toxiproxy(run_dir) as toxiproxy:
            return await calibration.calibrate(target, toxiproxy, run_dir, clients=clients, p99_ms=p99_ms,
                                               budget_s=budget_s, step_s=step_s, progress=print_step)  # fmt: skip

    try:
        result = run_with_signals(search())
    except (KeyboardInterrupt, asyncio.CancelledError):
        click.echo("interrupted: everything the calibration started has been stopped; nothing stored", err=True)
        sys.exit(130)
    (run_dir / "calibration.json").write_text(json.dumps(result.capacity.to_json(), indent=2))
    click.echo("")
    for line in calibration.summary_lines(result):
        click.echo(line)
    if not result.held:
        sys.exit(1)
    key = store_capacity(capacity_file, target, result.capacity)
    click.echo(f"  stored in {capacity_file} as {key}")


def print_step(step: calibration.CalibrationStep) -> None:
    status = click.style("held", fg="green") if step.held else click.style("did not hold", fg="red")
    click.echo(f"  {step.rate:>8g}/s {status} ({step.duration_s:.1f}s): {step.summary[:160]}")


@cli.command("list")
def list_scenarios() -> None:
    """List the scenarios in scenarios/."""
    for path in discover():
        scenario = load(path)
        first = scenario.description.strip().splitlines()[0] if scenario.description else ""
        click.echo(f"{scenario.name:22} {first}")


@cli.command()
@click.argument("paths", nargs=-1)
@click.option("--target", "target_file", type=click.Path(path_type=Path),
              help="also check each scenario's target section against this target file's params")  # fmt: skip
def validate(paths: tuple[str, ...], target_file: Path | None) -> None:
    """Check scenario files against the schema; every problem names the file and the field."""
    failed = 0
    target = load_target(target_file) if target_file else None
    for path in discover(paths):
        try:
            scenario = load(path)
            if target is not None:
                check_target_params(scenario, target)
            click.echo(f"ok      {path}")
        except HarnessError as exc:
            failed += 1
            click.echo(f"invalid {exc.message}", err=True)
    sys.exit(1 if failed else 0)


@cli.command("load")
@click.option("--target", "target_file", type=click.Path(path_type=Path), help="target file (default: the monitor)")
@click.option("--users", type=click.IntRange(1, MAX_USERS), default=100, show_default=True)
@click.option("--spawn-rate", type=click.FloatRange(0.1, MAX_SPAWN_RATE), default=20.0, show_default=True,
              help="users started a second")  # fmt: skip
@click.option("--time", "time_s", type=click.FloatRange(1, MAX_TIME_S), default=30.0, show_default=True,
              help="seconds Locust runs, ramp-up included; it stops by itself then")  # fmt: skip
@click.option("--processes", type=click.IntRange(1, MAX_PROCESSES), default=1, show_default=True,
              help="Locust processes on this machine (--processes)")  # fmt: skip
@click.option("--mix", default=None, help="behaviour weights (default steady=6,switcher=2,reconnector=1,churner=1)")
@click.option("--feed-rate", type=click.FloatRange(0, 20000), default=200.0, show_default=True, help="events a second")
@click.option("--p99-ms", type=float, default=None, help="fail if the delivery p99 is above this")
@click.option("--seed", type=int, default=None)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
def load_command(
    target_file: Path | None, users: int, spawn_rate: float, time_s: float, processes: int, mix: str | None,
    feed_rate: float, p99_ms: float | None, seed: int | None, out: Path,
) -> None:
    """A plain load test: Locust's WebSocket users against the target behind Toxiproxy, the feed on.

    Locust's own reports (locust.html, locust.json, locust_*.csv) go into the run directory."""
    weights = parse_mix(mix) if mix else None
    spec = LoadSpec(users, spawn_rate, time_s, processes=processes, **({"mix": weights} if weights else {}))
    target = load_target(target_file) if target_file else bundled_monitor()
    seed = seed if seed is not None else random.randrange(2**31)
    run_dir = new_run_dir(out.resolve(), "load")
    click.echo(f"wschaos {__version__}: load against {target.name}, seed {seed}, in {run_dir}")
    checks = {} if p99_ms is None else {"p99_ms": p99_ms}
    coro = run_plain_load(target, spec, run_dir, feed_rate=feed_rate, seed=seed, checks=checks,
                          progress=lambda msg: click.echo(f"  {msg}"))  # fmt: skip
    try:
        result = run_with_signals(coro)
    except (KeyboardInterrupt, asyncio.CancelledError):
        click.echo("interrupted: everything the load test started has been stopped", err=True)
        sys.exit(130)
    click.echo("\n".join(["", *summary_lines(result.summary), ""]))
    click.echo(f"{coloured(result.verdict.status)} {result.verdict.summary}")
    click.echo(f"Locust's reports: {run_dir}/locust.html, locust.json, locust_stats.csv")
    sys.exit(0 if result.verdict.status == "pass" else 1)


cli.add_command(analyze_command)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except HarnessError as exc:
        click.echo(f"wschaos: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"  hint: {exc.hint}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
