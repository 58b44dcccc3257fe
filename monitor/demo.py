"""Writes a realistic synthetic storagenode log per node, so the dashboard shows live data without Storj."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

from monitor.logparse import format_line

DEMO_NODES = ("alpha", "bravo", "charlie")
SATELLITES = (
    "12EayRS2V1kEsWESU9QMRseFhdxYxKicsiFmxrsLZHeLUtdps3S",
    "121RTSDpyNZVcEU84Ticf2L1ntiuUimbWgfATz21tuvgk3vzoA6",
    "1wFTAgs9DP5RSnCqKV1eLf6N9wtk4EAtmN5DpSxcs8EjT69tGE",
)
ACTIONS = (("GET", 0.55), ("PUT", 0.30), ("GET_AUDIT", 0.08), ("GET_REPAIR", 0.04), ("PUT_REPAIR", 0.03))


def _piece_id(rng: random.Random) -> str:
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(52))


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def demo_lines(rng: random.Random) -> list[str]:
    """One transfer: a 'started' line and how it ended."""
    action = rng.choices([a for a, _ in ACTIONS], weights=[w for _, w in ACTIONS])[0]
    upload = action.startswith("PUT")
    fields: dict[str, Any] = {
        "Piece ID": _piece_id(rng),
        "Satellite ID": rng.choice(SATELLITES),
        "Action": action,
        "Remote Address": f"203.0.113.{rng.randint(1, 254)}:{rng.randint(1024, 65535)}",
    }
    size = int(rng.lognormvariate(11, 1.6))
    verb = "upload" if upload else "download"
    lines = [format_line(_now(), "INFO", "piecestore", f"{verb} started", fields)]
    outcome = rng.random()
    if outcome < 0.9:
        done = "uploaded" if upload else "downloaded"
        lines.append(format_line(_now(), "INFO", "piecestore", done, {**fields, "Size": size}))
    elif outcome < 0.96:
        reason = "context canceled" if upload else "downloaded size (0 bytes) does not match received"
        lines.append(format_line(_now(), "INFO", "piecestore", f"{verb} canceled", {**fields, "reason": reason}))
    else:
        error = "pieces error: filestore error: file does not exist" if not upload else "unexpected EOF"
        lines.append(format_line(_now(), "ERROR", "piecestore", f"{verb} failed", {**fields, "error": error}))
    return lines


async def write_demo_logs(paths: dict[str, Path], rate: float, seed: int | None = None) -> None:
    """Append transfers to each node's log at about ``rate`` transfers a second per node, forever."""
    rng = random.Random(seed)
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    while True:
        await asyncio.sleep(rng.expovariate(rate * len(paths)))
        path = paths[rng.choice(list(paths))]
        with path.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(demo_lines(rng)) + "\n")
        if rng.random() < 0.01:
            with path.open("a", encoding="utf-8") as fh:
                fh.write(format_line(_now(), "INFO", "hashstore", "beginning compaction", None) + "\n")
