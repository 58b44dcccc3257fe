"""For each mutant of the monitor: `wschaos explore --target <mutant> --budget B --seed S` (no scenario
named), then its first failure's minimal.yaml re-run N times; prints the README's table (found or not,
time to the first failure, schedules tried, faults before and after shrinking, shrink time, re-runs failed).

Usage: .venv/bin/python scripts/explore_mutants.py [--budget 10m] [--seed 1] [--reruns 5] [MUTANT ...]
(default: every mutant in tests/mutants). Writes runs/explore-mutants-<time>/ and mutants-table.markdown there.
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


def explore(mutant: str, folder: Path, budget: str, seed: int) -> dict:
    target = mutant_target_file(mutant, folder)
    out = folder / mutant
    command = [*WSCHAOS, "explore", "--target", str(target), "--budget", budget, "--seed", str(seed), "--out", str(out)]
    with (folder / f"{mutant}.log").open("w", encoding="utf-8") as log:
        subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
    (explore_dir,) = out.glob("*-explore")
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


def row(mutant: str, summary: dict, rerun_failed: int | None, count: int) -> str:
    failures = summary["failures"]
    if not failures:
        return f"| {mutant} | no | - | {summary['schedules_tried']} | - | - | - | - |"
    first = min(failures, key=lambda f: f["found_after_s"])
    before = len(first["original"]["faults"])
    after = len(first["minimal"]["faults"]) if "minimal" in first else "-"
    checker = first["signature"]["checker"]
    rerun = "-" if rerun_failed is None else f"{rerun_failed}/{count}"
    return (f"| {mutant} | yes ({checker}) | {first['found_after_s']:.0f} s | {summary['schedules_tried']} | "
            f"{before} | {after} | {first['shrink_s']:.0f} s | {rerun} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mutants", nargs="*")
    p.add_argument("--budget", default="10m")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--reruns", type=int, default=5)
    args = p.parse_args()
    unknown = sorted(set(args.mutants) - set(CAUGHT_BY))
    if unknown:
        p.error(f"no such mutant: {', '.join(unknown)}")
    folder = ROOT / "runs" / f"explore-mutants-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    folder.mkdir(parents=True)
    lines = ["| mutant | found (checker) | first failure after | schedules tried | faults before | faults after "
             "| shrink time | minimal.yaml failed |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for mutant in args.mutants or sorted(CAUGHT_BY):
        summary = explore(mutant, folder, args.budget, args.seed)
        first = min(summary["failures"], key=lambda f: f["found_after_s"], default=None)
        failed = reruns(summary, first, args.reruns, args.seed) if first else None
        lines.append(row(mutant, summary, failed, args.reruns))
        print(lines[-1], flush=True)
        (folder / "mutants-table.markdown").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
