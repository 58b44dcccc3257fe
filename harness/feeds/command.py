"""The ``command`` feed: ``argv`` is run once per batch, the batch's events on its stdin as JSON
lines (``{"id": ..., "n": ..., "t": ..., "node": ...}``); exit status 0 means delivered. Each run
is bounded by ``timeout``, after which its process group is killed by pid."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from typing import Any

from harness.feeds.base import Event, FeedError, FeedRejected, Sink
from harness.targetspec import FeedSpec, expand
from harness.tasks import within

DEFAULT_BATCH = 100
STDERR_TAIL = 300


class CommandSink(Sink):
    kind = "command"

    def __init__(self, spec: FeedSpec, placeholders: Mapping[str, Any]) -> None:
        self.argv = [expand(part, placeholders) for part in spec.argv]
        self.batch = spec.batch or DEFAULT_BATCH
        self.nodes = list(spec.nodes)
        self.timeout = spec.timeout
        self.cwd = placeholders.get("workdir")

    async def send(self, node: str, events: list[Event]) -> None:
        data = "".join(event.json_line() + "\n" for event in events).encode()
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, start_new_session=True, cwd=self.cwd,
            )  # fmt: skip
        except OSError as exc:
            raise FeedError(f"feed.argv: cannot run {self.argv[0]!r}: {exc.strerror or exc}") from exc
        try:
            _, stderr = await within(self.timeout, process.communicate(data))
        except TimeoutError:
            raise FeedRejected(f"{self.argv[0]}: still running after {self.timeout:g} s, killed") from None
        finally:
            await _reap(process)
        if process.returncode != 0:
            tail = stderr.decode(errors="replace").strip()[-STDERR_TAIL:]
            raise FeedRejected(f"{self.argv[0]}: exit status {process.returncode}" + (f": {tail}" if tail else ""))


async def _reap(process: asyncio.subprocess.Process) -> None:
    """Kill the run's process group if it is still there (a timeout, a cancelled feed) and wait for it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
