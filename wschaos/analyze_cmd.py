"""``wschaos analyze RUN_DIR``: judge a stored run again with today's checkers, from its histories alone
(no target, no network), and say which verdicts changed.

The new verdicts and reports go beside the old ones, in ``RUN_DIR/analyzed-<time>/``: a ``summary.json``
of the same schema, each scenario's new ``result.json`` next to a link to its stored history, and
``report.json``, ``index.html`` and ``junit.xml`` written from them. ``--check CHECK.OPTION=VALUE``
judges with a changed option (``delivery.latency_p99_ms=5``; the value is read as YAML).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import yaml

from harness.checkers import CheckContext, CohortInfo, Verdict, option_problem, run_checks, scenario_status
from harness.errors import HarnessError
from harness.external import inapplicable_checks, make_target
from harness.faults import make_fault
from harness.history import History, find_history
from harness.scenario import SCENARIO_DIR, Scenario, load
from harness.targetspec import TargetSpec, bundled_monitor, load_target


class AnalyzeError(HarnessError):
    """A run folder or a ``--check`` that cannot be judged again."""


@dataclass
class Override:
    check: str  # the check's name in the scenario (``delivery``, ``eviction@stuck``)
    option: str
    value: Any

    @classmethod
    def parse(cls, text: str) -> Override:
        name, eq, raw = text.partition("=")
        check, dot, option = name.rpartition(".")
        if not eq or not dot or not check or not option:
            raise AnalyzeError(f"--check {text!r}: expected CHECK.OPTION=VALUE, e.g. delivery.latency_p99_ms=5")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        return cls(check, option, value)


@dataclass
class Change:
    scenario: str
    checker: str
    before: str | None
    after: str | None

    def line(self) -> str:
        return f"  {self.scenario} {self.checker}: {self.before or '-'} -> {self.after or '-'}"


def judge(scenario_dir: Path, old: dict[str, Any], target: TargetSpec, scenario: Scenario | None,
          overrides: list[Override]) -> dict[str, Any]:  # fmt: skip
    """The scenario's result judged again from its stored history (``old`` is its stored result)."""
    path = find_history(scenario_dir)
    if old.get("status") == "skipped" or old.get("error") or not path.is_file():
        return old  # it never reached its checks: nothing to judge again
    history = History.load(path)
    stored = next((r for r in history.of("step") if r.get("name") == "checks"), {})
    checks = with_overrides(stored.get("checks") or _scenario_part(scenario, "checks", old), overrides, old["name"])
    cohorts = stored.get("cohorts") or [[c.name, c.clients, c.kind] for c in _scenario_part(scenario, "cohorts", old)]
    faulted = set(stored["faulted"]) if "faulted" in stored else faulted_from(history, scenario, cohorts)
    params = scenario.target_params if scenario is not None else None
    running = make_target(target, scenario_dir / "target", History(), params=params)
    dialect = running.spec.make_dialect()
    ctx = CheckContext(
        history=history,
        cohorts={name: CohortInfo(name, clients, kind) for name, clients, kind in cohorts},
        faulted=faulted,
        stored_ids=_stored_ids(history, running),
        semantics=dict(running.spec.semantics),
        event_id_setting=dialect.id_setting[0],
        event_id_field=dialect.id_setting[1],
        shutdown_code=dialect.shutdown_code,
    )
    inapplicable = inapplicable_checks(running, ctx, checks)
    ran = iter(run_checks(ctx, {n: o for n, o in checks.items() if n not in inapplicable}))
    verdicts: list[Verdict] = [inapplicable[n] if n in inapplicable else next(ran) for n in checks]
    result = dict(old)
    result["verdicts"] = [v.to_json() for v in verdicts]
    result["status"] = scenario_status(verdicts, old.get("error"))
    return result


def with_overrides(checks: dict[str, Any], overrides: list[Override], scenario: str) -> dict[str, Any]:
    out = {name: dict(options or {}) for name, options in checks.items()}
    for o in overrides:
        if o.check in out:
            out[o.check][o.option] = o.value
            problem = option_problem(o.check, out[o.check])
            if problem is not None:
                raise AnalyzeError(f"--check {o.check}.{o.option}={o.value!r} in {scenario}: {problem}")
    return out


def faulted_from(history: History, scenario: Scenario | None, cohorts: list[list[Any]]) -> set[str]:
    """For runs that did not record it: the cohorts the faults that started disturb."""
    started = {r.get("fault") for r in history.of("fault_start")}
    ctx = SimpleNamespace(cohorts={c[0]: None for c in cohorts})
    return {hit for spec in (scenario.faults() if scenario else []) if spec.name in started
            for hit in make_fault(spec).hits(ctx)}  # type: ignore[arg-type]  # fmt: skip


def _stored_ids(history: History, target: Any) -> list[str] | None:
    """As the run recorded them; a run from before they were recorded: from its database, if still plain."""
    recorded = next(history.of("stored_ids"), None)
    if recorded is not None:
        return [str(i) for i in recorded["ids"]]
    try:
        return target.stored_ids()  # type: ignore[no-any-return]
    except HarnessError:
        return None  # the database is gone: persistence says what it cannot judge


def _scenario_part(scenario: Scenario | None, part: str, old: dict[str, Any]) -> Any:
    if scenario is None:
        raise AnalyzeError(f"{old['name']}: its history does not record its {part} and its scenario file is gone")
    return scenario.checks if part == "checks" else scenario.cohorts


def scenario_file(summary: dict[str, Any], name: str, run_dir: Path) -> Scenario | None:
    """The scenario as the run was given it (its path or bare name), when it can still be read."""
    given = (summary.get("scenario_args") or {}).get(name, name)
    for path in (Path(given), SCENARIO_DIR / f"{given}.yaml", SCENARIO_DIR / f"{name}.yaml"):
        if path.is_file():
            try:
                return load(path)
            except HarnessError:
                return None
    return None


def run_target(summary: dict[str, Any]) -> TargetSpec:
    target_file = summary.get("target_arg") or summary.get("target_file")
    if target_file and summary.get("target") != bundled_monitor().name:
        return load_target(Path(target_file))
    return bundled_monitor()


def analyze(run_dir: Path, overrides: list[Override]) -> tuple[Path, list[Change]]:
    """Judge every scenario of ``run_dir`` again; returns the new folder and the verdicts that changed."""
    run_dir = Path(run_dir).resolve()
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        hint = "give the folder `wschaos run` wrote (runs/<time>-<label>, or runs/latest)"
        raise AnalyzeError(f"{run_dir / 'summary.json'}: cannot read it ({exc})", hint) from None
    names = {name for s in summary.get("scenarios") or [] for name in _check_names(run_dir / s["name"])}
    for o in overrides:
        if o.check not in names:
            raise AnalyzeError(f"--check {o.check}.{o.option}: no scenario of {run_dir.name} has the check {o.check}")
    target = run_target(summary)
    results, changes = [], []
    for old in summary.get("scenarios") or []:
        scenario = scenario_file(summary, old["name"], run_dir)
        new = judge(run_dir / old["name"], old, target, scenario, overrides)
        changes += changed(old, new)
        results.append(new)
    out = new_dir(run_dir)  # made once every scenario is judged: a bad --check leaves nothing behind
    for result in results:
        link_scenario(run_dir / result["name"], out / result["name"], result)
    new_summary = {**summary, "scenarios": results, "analyzed_from": str(run_dir),
                   "overrides": [f"{o.check}.{o.option}={o.value!r}" for o in overrides],
                   "passed": all(r["status"] not in ("fail", "error") for r in results)}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(new_summary, indent=2))
    return out, changes


def _check_names(scenario_dir: Path) -> list[str]:
    path = find_history(scenario_dir)
    if not path.is_file():
        return []
    step = next((r for r in History.load(path).of("step") if r.get("name") == "checks"), {})
    return list(step.get("checks") or step.get("detail") or [])


def new_dir(run_dir: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out, n = run_dir / f"analyzed-{stamp}", 1
    while out.exists():
        n += 1
        out = run_dir / f"analyzed-{stamp}-{n}"
    out.mkdir()
    return out


def link_scenario(stored: Path, out: Path, result: dict[str, Any]) -> None:
    """The new result.json, beside links to the stored history and target folder (nothing is copied)."""
    out.mkdir(parents=True)
    (out / "result.json").write_text(json.dumps({**result, "run_dir": str(out)}, indent=2))
    history = find_history(stored)
    if history.is_file():
        (out / history.name).symlink_to(os.path.relpath(history, out))
    if (stored / "target").is_dir():
        (out / "target").symlink_to(os.path.relpath(stored / "target", out))


def changed(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    before = {v["checker"]: v["status"] for v in old.get("verdicts") or []}
    after = {v["checker"]: v["status"] for v in new.get("verdicts") or []}
    out = [Change(old["name"], c, before.get(c), after.get(c)) for c in dict.fromkeys([*before, *after])
           if before.get(c) != after.get(c)]  # fmt: skip
    if old.get("status") != new.get("status"):
        out.append(Change(old["name"], "(scenario)", old.get("status"), new.get("status")))
    return out


@click.command("analyze")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--check", "checks", multiple=True, metavar="CHECK.OPTION=VALUE",
              help="judge with this option changed, e.g. delivery.latency_p99_ms=5 (repeatable)")  # fmt: skip
def analyze_command(run_dir: Path, checks: tuple[str, ...]) -> None:
    """Judge a stored run again with today's checkers, from its histories alone; say what changed."""
    overrides = [Override.parse(text) for text in checks]
    out, changes = analyze(run_dir, overrides)
    click.echo(f"{len(changes)} verdict(s) changed" + (":" if changes else ""))
    for change in changes:
        click.echo(change.line())
    from reports import write_reports  # here: matplotlib is slow to import
    from reports.terminal import paths_line

    paths = write_reports(out)
    click.echo(f"Verdicts: {out / 'summary.json'}")
    click.echo(paths_line(paths))
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    sys.exit(0 if summary["passed"] else 1)
