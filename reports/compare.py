"""What changed between two runs: verdicts that changed status, and the delivery and eviction figures
(latency p50/p99, lost, duplicated, reordered, eviction time) side by side, as a terminal table and as
``compare.html``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports.html_report import environment
from reports.json_report import SCHEMA_ID, build_report
from reports.run import load_run

# Figures compared per scenario: (name, where it comes from). Every one of them is better lower.
FIGURES = (
    ("latency_p50_ms", "delivery"),
    ("latency_p99_ms", "delivery"),
    ("e2e_p99_ms", "delivery"),
    ("lost", "delivery"),
    ("duplicated", "delivery"),
    ("reordered", "delivery"),
    ("missing_ids", "delivery"),
    ("duration_s", "scenario"),
)
COUNTS = frozenset({"lost", "duplicated", "reordered", "missing_ids"})  # any change in these matters
NOISE = 0.10  # a timing that moved less than this share of its value is "same"
RANK = {"pass": 0, "skipped": 1, "unknown": 2, "fail": 3, "error": 4, None: -1}


@dataclass
class VerdictChange:
    scenario: str
    checker: str
    before: str | None  # None: not in that run
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after

    @property
    def direction(self) -> str:
        if not self.changed:
            return "same"
        if self.before is None or self.after is None:
            return "only in B" if self.before is None else "only in A"
        return "worse" if RANK[self.after] > RANK[self.before] else "better"


@dataclass
class FigureChange:
    scenario: str
    figure: str
    before: float | None
    after: float | None

    @property
    def delta(self) -> float | None:
        return None if self.before is None or self.after is None else self.after - self.before

    @property
    def percent(self) -> float | None:
        if self.delta is None or not self.before:
            return None
        return 100.0 * self.delta / self.before

    @property
    def direction(self) -> str:
        """worse, better, same (within the noise of a timing), or "only in A" / "only in B"."""
        if self.before is None or self.after is None:
            return "only in A" if self.after is None else "only in B"
        delta = self.after - self.before
        if delta == 0 or (self.figure not in COUNTS and abs(delta) < NOISE * max(abs(self.before), 1e-9)):
            return "same"
        return "worse" if delta > 0 else "better"


@dataclass
class Comparison:
    a: dict[str, Any]  # report.json of each run
    b: dict[str, Any]
    verdicts: list[VerdictChange] = field(default_factory=list)
    figures: list[FigureChange] = field(default_factory=list)

    @property
    def changed(self) -> list[VerdictChange]:
        return [v for v in self.verdicts if v.changed]


def compare_runs(run_a: Path, run_b: Path) -> Comparison:
    a, b = load_report(run_a), load_report(run_b)
    return Comparison(a, b, verdict_changes(a, b), figure_changes(a, b))


def load_report(run_dir: Path) -> dict[str, Any]:
    """The run's report.json when it is of this schema, else a report built from the run folder."""
    path = Path(run_dir) / "report.json"
    if path.is_file():
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            report = None
        if isinstance(report, dict) and report.get("schema") == SCHEMA_ID:
            return report
    return build_report(load_run(Path(run_dir)))


def verdict_changes(a: dict[str, Any], b: dict[str, Any]) -> list[VerdictChange]:
    before, after = _statuses(a), _statuses(b)
    keys = list(dict.fromkeys([*before, *after]))
    return [VerdictChange(s, c, before.get((s, c)), after.get((s, c))) for s, c in keys]


def _statuses(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    out = {}
    for scenario in report["scenarios"]:
        out[(scenario["name"], "(scenario)")] = scenario["status"]
        out.update({(scenario["name"], v["checker"]): v["status"] for v in scenario["verdicts"]})
    return out


def figure_changes(a: dict[str, Any], b: dict[str, Any]) -> list[FigureChange]:
    fa, fb = _figures(a), _figures(b)
    keys = list(dict.fromkeys([*fa, *fb]))
    return [FigureChange(s, f, fa.get((s, f)), fb.get((s, f))) for s, f in keys]


def _figures(report: dict[str, Any]) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for scenario in report["scenarios"]:
        sources = {"delivery": scenario.get("delivery") or {}, "scenario": scenario}
        for name, source in FIGURES:
            value = sources[source].get(name)
            if isinstance(value, int | float):
                out[(scenario["name"], name)] = float(value)
        for eviction in scenario.get("evictions") or []:
            if isinstance(eviction.get("evicted_after_s"), int | float):
                out[(scenario["name"], f"{eviction['checker']} evicted_after_s")] = float(eviction["evicted_after_s"])
    return out


# ---------------------------------------------------------------------------------------------
# Output


def comparison_text(comparison: Comparison) -> str:
    """The terminal table: changed verdicts, then every figure with its change."""
    a, b = comparison.a["run"]["label"], comparison.b["run"]["label"]
    lines = [f"A: {a}", f"B: {b}", ""]
    changed = comparison.changed
    lines.append(f"Verdicts: {len(changed)} changed, {len(comparison.verdicts) - len(changed)} the same")
    lines += _table(
        ["scenario", "checker", "A", "B", ""],
        [[v.scenario, v.checker, v.before or "-", v.after or "-", v.direction] for v in changed],
    )
    lines += ["", "Figures (lower is better)"]
    lines += _table(
        ["scenario", "figure", "A", "B", "change", ""],
        [[f.scenario, f.figure, _fmt(f.before), _fmt(f.after), _change(f), f.direction] for f in comparison.figures],
    )
    return "\n".join(lines)


def write_compare_html(comparison: Comparison, path: Path) -> Path:
    template = environment().get_template("compare.html.j2")
    rows = [{"change": _change(f), "f": f} for f in comparison.figures]
    path.write_text(template.render(c=comparison, figure_rows=rows), encoding="utf-8")
    return path


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return ["  (none)"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return ["  " + "  ".join(str(cell).ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *rows]]  # fmt: skip


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if float(value).is_integer() else f"{value:.3f}"


def _change(f: FigureChange) -> str:
    if not f.delta:
        return ""
    pct = f" ({f.percent:+.0f}%)" if f.percent is not None else ""
    return f"{f.delta:+.3g}{pct}"
