"""Stopping background tasks without swallowing the caller's own cancellation.

``task.cancel()`` then ``with suppress(CancelledError): await task`` loses a Ctrl-C or SIGTERM that
arrives while the task winds down: the caller's CancelledError is suppressed with the task's, and the
run goes on. ``asyncio.wait`` never raises what the task raised, and does raise the caller's own.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def stop_tasks(*tasks: asyncio.Task[Any]) -> BaseException | None:
    """Cancel ``tasks`` and wait until each has ended; the first exception one of them ended with
    (None when they were cancelled or ended well). A cancellation of the caller is raised."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)
    failed = [t.exception() for t in tasks if not t.cancelled() and t.exception() is not None]
    return failed[0] if failed else None
