"""The child-process helper, with real child processes: sessions, group kills, timeouts, parent death."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness.process import Child, start_child

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parent.parent
# Says "ready" once its SIGTERM handling is in place, then sleeps.
SLEEPER = "import signal, sys, time\n{setup}\nprint('ready', flush=True)\ntime.sleep(60)\n"
IGNORES_TERM = "signal.signal(signal.SIGTERM, signal.SIG_IGN)"
# Starts a grandchild that sleeps, prints its pid, then sleeps too (or exits, leaving the grandchild behind).
FORKER = textwrap.dedent("""
    import subprocess, sys, time
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print(grandchild.pid, flush=True)
    if sys.argv[1] == "stay":
        time.sleep(60)
""")
# A parent that starts a sleeper through the helper (from the main thread or another one), prints
# its pid, and waits to be killed.
PARENT = textwrap.dedent("""
    import signal, sys, threading, time
    from harness.process import start_child

    def launch():
        child = start_child([sys.executable, "-c", "import time; time.sleep(60)"], name="sleeper",
                            die_with_parent=signal.SIGTERM if sys.argv[1] != "off" else None)
        print(child.pid, flush=True)

    if sys.argv[1] == "thread":
        worker = threading.Thread(target=launch)
        worker.start()
        worker.join()
    else:
        launch()
    time.sleep(60)
""")


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def children() -> Iterator[list[Child]]:
    """Children a test started; any left running is killed with its group."""
    started: list[Child] = []
    yield started
    for child in started:
        child.signal(signal.SIGKILL)
        child.kill_group()
        child.popen.wait(5)


def start(children: list[Child], code: str, *args: str) -> Child:
    child = start_child(python(code, *args), name="test child", output=subprocess.PIPE)
    children.append(child)
    return child


def first_line(child: Child) -> str:
    assert child.popen.stdout is not None
    return child.popen.stdout.readline().decode().strip()


async def test_a_child_leads_a_session_and_a_group_of_its_own(children: list[Child]) -> None:
    child = start(children, SLEEPER.format(setup=""))
    assert first_line(child) == "ready"
    assert os.getsid(child.pid) == child.pid != os.getsid(0)
    assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
    assert await child.stop(2.0)
    assert child.returncode == -signal.SIGTERM and not child.running


async def test_wait_times_out_while_the_child_runs_then_sees_it_end(children: list[Child]) -> None:
    child = start(children, SLEEPER.format(setup=""))
    started = time.monotonic()
    assert not await child.wait(0.3)
    assert 0.3 <= time.monotonic() - started < 2.0
    assert child.running
    child.signal(signal.SIGTERM)
    assert await child.wait(5.0)
    assert child.returncode == -signal.SIGTERM


async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(children: list[Child]) -> None:
    child = start(children, SLEEPER.format(setup=IGNORES_TERM))
    assert first_line(child) == "ready"
    started = time.monotonic()
    assert not await child.stop(0.5)
    assert time.monotonic() - started >= 0.5
    assert child.returncode == -signal.SIGKILL


async def test_resume_lets_a_stopped_child_act_on_sigterm(children: list[Child]) -> None:
    child = start(children, SLEEPER.format(setup=""))
    assert first_line(child) == "ready"
    child.signal(signal.SIGSTOP)
    assert await child.stop(2.0, resume=True)
    assert child.returncode == -signal.SIGTERM


async def test_cancelling_stop_kills_the_child(children: list[Child]) -> None:
    child = start(children, SLEEPER.format(setup=IGNORES_TERM))
    assert first_line(child) == "ready"
    stopping = asyncio.create_task(child.stop(30.0))
    await asyncio.sleep(0.2)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert child.returncode == -signal.SIGKILL


async def test_stopping_the_group_ends_the_childs_children_too(children: list[Child]) -> None:
    child = start(children, FORKER, "stay")
    grandchild = int(first_line(child))
    assert os.getpgid(grandchild) == child.pid
    assert await child.stop(2.0, group=True)
    assert wait_gone(grandchild)


async def test_kill_group_ends_what_a_child_left_behind(children: list[Child]) -> None:
    child = start(children, FORKER, "leave")
    grandchild = int(first_line(child))
    assert await child.wait(5.0) and child.returncode == 0
    assert not gone(grandchild)
    child.signal(signal.SIGKILL, group=True)  # the child is reaped: signal() no longer sends anything
    assert not gone(grandchild)
    child.kill_group()
    assert wait_gone(grandchild)


def test_a_program_that_does_not_exist_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        start_child([str(tmp_path / "no-such-program")], name="nothing")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_DEATHSIG is Linux only")
@pytest.mark.parametrize("mode, dies", [("main", True), ("off", False), ("thread", False)])
def test_die_with_parent(mode: str, dies: bool) -> None:
    """The child gets SIGTERM when its parent is killed, if asked and started from the main thread."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen(python(PARENT, mode), stdout=subprocess.PIPE, env=env, start_new_session=True)
    sleeper = None
    try:
        assert parent.stdout is not None
        sleeper = int(parent.stdout.readline())
        assert not gone(sleeper)
        parent.kill()
        parent.wait(5)
        assert wait_gone(sleeper, 3.0 if dies else 0.5) == dies
    finally:
        parent.kill()
        parent.wait(5)
        if sleeper is not None and not gone(sleeper):
            os.kill(sleeper, signal.SIGKILL)
