"""Stopping and bounding tasks without swallowing the caller's own cancellation.

``task.cancel()`` then ``with suppress(CancelledError): await task`` loses a Ctrl-C or SIGTERM that
arrives while the task winds down: the caller's CancelledError is suppressed with the task's, and the
run goes on. ``asyncio.wait`` never raises what the task raised, and does raise the caller's own.
Python 3.11's ``asyncio.wait_for`` loses it too, when it arrives as the awaited call completes (it
returns the result instead); ``within`` bounds a call with ``asyncio.timeout``, which does not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """``awaitable``'s result, or TimeoutError after ``seconds``; a cancellation of the caller is raised."""
    async with asyncio.timeout(seconds):
        return await awaitable


async def stop_tasks(*tasks: asyncio.Task[Any]) -> BaseException | None:
    """Cancel ``tasks`` and wait until each has ended; the first exception one of them ended with
    (None when they were cancelled or ended well). A cancellation of the caller is raised."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)
    failed = [t.exception() for t in tasks if not t.cancelled() and t.exception() is not None]
    return failed[0] if failed else None
