"""How fast the run's History writes records: plain JSON lines against the buffered gzip writer, and
how large each file ends up. The records are shaped like a busy run's (mostly ``batch`` records of a
few ids each, with some ``feed`` and ``probe`` records); the figure is records written a second,
``record()`` to ``close()`` included, in CPU time of this process (steadier than wall time on a shared
machine), the best of ``--repeat`` tries.

Run it with `.venv/bin/python benchmarks/history_write.py` (`--records`, `--repeat`, `--no-record`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import append_results, table
from harness.history import HISTORY_FILE, History


def write(path: Path, n: int) -> float:
    """Seconds to record ``n`` records into ``path`` and close it."""
    started = time.process_time()
    history = History(path)
    for i in range(n):
        if i % 50 == 0:
            history.record("feed", ids=[f"F1-{i}-{k}" for k in range(4)], node="n1")
        elif i % 97 == 0:
            history.record("probe", check="ws", ok=True, latency_s=0.0012)
        else:
            history.record("batch", client=f"steady-{i % 20}", seq=i // 20, ids=[f"F1-{i}-{k}" for k in range(3)],
                           sent_at=1764660000.0 + i / 1000, recv_at=1764660000.0 + i / 1000 + 0.002)  # fmt: skip
    history.close()
    return time.process_time() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, name in (("plain", "history.jsonl"), ("gzip", HISTORY_FILE)):
            path = Path(tmp) / name
            best = min(write(path, args.records) for _ in range(args.repeat))
            size = path.stat().st_size
            rows.append([label, args.records, f"{args.records / best:,.0f}", f"{size / 1e6:.2f}",
                         f"{size / args.records:.1f}"])  # fmt: skip
    text = table(["writer", "records", "records/s", "file MB", "bytes/record"], rows)
    print(text)
    if not args.no_record:
        append_results("history_write", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
