"""Suite wall time, one scenario at a time against ``-j N``, in one run of this script (so both halves
see the same machine): `wschaos run` of the chosen scenarios (default: the core suite) with the same
seed, serial first, then with ``--jobs``; the ratio, and how many scenarios held in each.

Run it with `.venv/bin/python benchmarks/suite_time.py` (`--jobs`, `--all`, `--seed`, `--no-record`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import append_results, table

ROOT = Path(__file__).resolve().parent.parent


def run_suite(out: Path, jobs: int, seed: int, core: bool) -> tuple[float, int, int, int, float]:
    """Wall seconds, scenarios held, unknown and broken, and the run directory's MB, for one `wschaos run`."""
    command = [sys.executable, "-m", "wschaos", "run", "--seed", str(seed), "--out", str(out), "-j", str(jobs)]
    started = time.monotonic()
    subprocess.run(command + (["--core"] if core else []), cwd=ROOT, stdout=subprocess.DEVNULL, check=False)
    wall = time.monotonic() - started
    summary = json.loads((out / "latest" / "summary.json").read_text(encoding="utf-8"))
    statuses = [s["status"] for s in summary["scenarios"]]
    broken = sum(s in ("fail", "error") for s in statuses)
    for scenario in summary["scenarios"]:  # a benchmark's failure is worth a look: name it
        if scenario["status"] not in ("pass", "skipped"):
            print(f"  -j {jobs}: {scenario['name']} {scenario['status']}", file=sys.stderr)
    size = sum(p.stat().st_size for p in (out / "latest").resolve().rglob("*") if p.is_file() and not p.is_symlink())
    return wall, statuses.count("pass"), statuses.count("unknown"), broken, size / 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--all", action="store_true", help="every scenario, not only the core suite")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        serial = None
        for jobs in (1, args.jobs):
            wall, held, unknown, broken, mb = run_suite(Path(tmp) / f"j{jobs}", jobs, args.seed, not args.all)
            serial = serial or wall
            rows.append([jobs, f"{wall:.1f}", f"{wall / serial:.2f}", held, unknown, broken, f"{mb:.1f}"])
    text = table(["jobs", "wall s", "x serial", "held", "unknown", "failed or error", "run dir MB"], rows)
    print(text)
    if not args.no_record:
        append_results(f"suite_time ({'all' if args.all else 'core'} scenarios, seed {args.seed})", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
