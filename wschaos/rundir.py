"""What every command that runs something shares: a new run directory under ``--out`` (with
``latest`` pointing at it) and running a coroutine so that Ctrl-C and SIGTERM cancel it."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


def new_run_dir(out: Path, label: str) -> Path:
    """``OUT/<UTC time>-<label>`` (with a suffix when taken), and ``OUT/latest`` pointing at it."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    run_dir = out / f"{stamp}-{label}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = out / f"{stamp}-{label}-{suffix}"
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:
        raise HarnessError(f"cannot write the run directory in {out}: {exc.strerror}") from None
    latest = out / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(run_dir.name)
    return run_dir


def run_with_signals(coro: Any) -> Any:
    """Run ``coro``; Ctrl-C and SIGTERM cancel it, so every teardown runs. SIGINT gets a handler of
    its own too: a shell without job control starts background commands with SIGINT ignored."""

    async def main() -> Any:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        return await coro

    return asyncio.run(main())
