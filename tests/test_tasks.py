"""stop_tasks: a Ctrl-C that arrives while a background task winds down stops the caller too."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from harness.tasks import stop_tasks, within


async def slow_to_stop(started: asyncio.Event) -> None:
    started.set()
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        await asyncio.sleep(0.2)  # a teardown of its own: a file to flush, a socket to close
        raise


async def broken() -> None:
    raise ValueError("lost the sink")


async def stopper(use_stop_tasks: bool, started: asyncio.Event, reached: list[str]) -> None:
    task = asyncio.create_task(slow_to_stop(started))
    await started.wait()
    if use_stop_tasks:
        await stop_tasks(task)
    else:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    reached.append("went on")


@pytest.mark.parametrize("use_stop_tasks", [True, False])
async def test_a_cancellation_during_the_wind_down_reaches_the_caller(use_stop_tasks):
    started, reached = asyncio.Event(), []
    outer = asyncio.create_task(stopper(use_stop_tasks, started, reached))
    await started.wait()
    await asyncio.sleep(0.05)  # the inner task is winding down now
    outer.cancel()  # what Ctrl-C does to the run
    await asyncio.wait([outer])
    if use_stop_tasks:
        assert outer.cancelled() and reached == []
    else:  # the pattern stop_tasks replaces: the Ctrl-C is lost and the run goes on
        assert not outer.cancelled() and reached == ["went on"]


async def test_what_a_task_raised_is_returned_not_raised_and_a_cancelled_one_is_none():
    failing = asyncio.create_task(broken())
    await asyncio.sleep(0)
    started = asyncio.Event()
    sleeping = asyncio.create_task(slow_to_stop(started))
    await started.wait()
    failed = await stop_tasks(sleeping, failing)
    assert isinstance(failed, ValueError) and sleeping.cancelled() and failing.done()
    assert await stop_tasks() is None


async def bounded(fut: asyncio.Future[int]) -> int:
    return await within(10, fut)


async def test_within_raises_a_cancellation_that_arrives_as_the_call_completes():
    # Python 3.11's asyncio.wait_for returns the result here and the Ctrl-C is lost.
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    outer = asyncio.create_task(bounded(fut))
    await asyncio.sleep(0)  # outer awaits fut now
    fut.set_result(1)
    outer.cancel()  # in the same turn of the loop
    await asyncio.wait([outer])
    assert outer.cancelled()


async def test_within_gives_the_result_or_a_timeout():
    assert await within(1, asyncio.sleep(0, result=7)) == 7
    with pytest.raises(TimeoutError):
        await within(0.01, asyncio.sleep(10))
