"""For each mutant of the monitor: `wschaos explore --target <mutant> --budget B --seed S` (no scenario
named), then its first failure's minimal.yaml re-run N times; prints the README's table (found or not,
time to the first failure, schedules tried, faults before and after shrinking, shrink time, re-runs failed).

Usage: .venv/bin/python scripts/explore_mutants.py [--budget 10m] [--seed 1] [--reruns 5] [--until-shrunk]
[--faults TYPES] [--checks NAMES] [MUTANT ...] (default: every mutant in tests/mutants). Writes
runs/explore-mutants-<time>/ and mutants-table.markdown there. ``--until-shrunk`` ends each explore once a
failure is shrunk (every column but "schedules tried" is the same; that one then counts up to the shrunk
failure).
``--from FOLDER`` builds the table from the explores already in FOLDER (no new explore).

The row's failure is the first one that was shrunk; a flaky failure (not shrunk) counts as found, and
the row says so when no other failure of that explore was shrunk.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.mutants.matrix import CAUGHT_BY, mutant_target_file  # noqa: E402

WSCHAOS = [sys.executable, "-m", "wschaos"]


def explore(mutant: str, folder: Path, budget: str, seed: int, until_shrunk: bool, extra: list[str]) -> dict:
    target = mutant_target_file(mutant, folder)
    out = folder / mutant
    command = [*WSCHAOS, "explore", "--target", str(target), "--budget", budget, "--seed", str(seed), "--out", str(out)]
    command += ["--until-shrunk", "1"] if until_shrunk else []
    command += extra
    with (folder / f"{mutant}.log").open("w", encoding="utf-8") as log:
        subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
    return stored(mutant, folder)


def stored(mutant: str, folder: Path) -> dict:
    """The summary of the explore of ``mutant`` in ``folder``."""
    target = folder / f"monitor-{mutant}.yaml"
    (explore_dir,) = (folder / mutant).glob("*-explore")
    summary = json.loads((explore_dir / "explore.json").read_text(encoding="utf-8"))
    summary["explore_dir"] = str(explore_dir)
    summary["target_path"] = str(target)
    return summary


def reruns(summary: dict, failure: dict, count: int, seed: int) -> int | None:
    minimal = Path(summary["explore_dir"]) / failure["dir"] / "minimal.yaml"
    if not minimal.exists():
        return None
    failed = 0
    for k in range(count):
        out = minimal.parent / "reruns" / str(k)
        command = [*WSCHAOS, "run", str(minimal), "--target", summary["target_path"], "--seed", str(seed + k),
                   "--out", str(out)]  # fmt: skip
        done = subprocess.run(command, cwd=ROOT, capture_output=True, check=False)
        failed += done.returncode == 1
    return failed


def chosen(summary: dict) -> dict | None:
    """The first failure that was shrunk, else the first failure (None when there was none)."""
    failures = sorted(summary["failures"], key=lambda f: f["found_after_s"])
    return next((f for f in failures if "minimal" in f), failures[0] if failures else None)


def row(mutant: str, summary: dict, rerun_failed: int | None, count: int) -> str:
    failures = summary["failures"]
    pick = chosen(summary)
    if pick is None:
        return f"| {mutant} | no | - | {summary['schedules_tried']} | - | - | - | - |"
    first = min(f["found_after_s"] for f in failures)
    before = len(pick["original"]["faults"])
    after = len(pick["minimal"]["faults"]) if "minimal" in pick else "flaky, not shrunk"
    checker = pick["signature"]["checker"]
    rerun = "-" if rerun_failed is None else f"{rerun_failed}/{count}"
    return (f"| {mutant} | yes ({checker}) | {first:.0f} s | {summary['schedules_tried']} | "
            f"{before} | {after} | {pick['shrink_s']:.0f} s | {rerun} |")


def new_folder(parent: Path, name: str) -> Path:
    """``parent/name``, or ``name-2``, ``name-3``... when explores started in the same second."""
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 100):
        folder = parent / (name if n == 1 else f"{name}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise SystemExit(f"explore_mutants: {parent}/{name}-*: 99 folders already; remove some")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mutants", nargs="*")
    p.add_argument("--budget", default="10m")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--reruns", type=int, default=5)
    p.add_argument("--until-shrunk", action="store_true", help="end each explore once a failure is shrunk")
    p.add_argument("--faults", default=None, help="passed on to explore (to name opt-in fault types)")
    p.add_argument("--checks", default=None, help="passed on to explore (to name opt-in checks: stats, log_volume)")
    p.add_argument("--from", dest="done", type=Path, default=None, help="a folder of earlier explores to tabulate")
    args = p.parse_args()
    unknown = sorted(set(args.mutants) - set(CAUGHT_BY))
    if unknown:
        p.error(f"no such mutant: {', '.join(unknown)}")
    folder = args.done or new_folder(ROOT / "runs", f"explore-mutants-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    if not folder.is_dir():
        p.error(f"--from {folder}: no such folder")
    lines = ["| mutant | found (checker) | first failure after | schedules tried | faults before | faults after "
             "| shrink time | minimal.yaml failed |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for mutant in args.mutants or sorted(CAUGHT_BY):
        if args.done:
            summary = stored(mutant, folder)
        else:
            extra = ["--faults", args.faults] if args.faults else []
            extra += ["--checks", args.checks] if args.checks else []
            summary = explore(mutant, folder, args.budget, args.seed, args.until_shrunk, extra)
        pick = chosen(summary)
        failed = reruns(summary, pick, args.reruns, args.seed) if pick else None
        lines.append(row(mutant, summary, failed, args.reruns))
        print(lines[-1], flush=True)
        (folder / "mutants-table.markdown").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
