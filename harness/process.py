"""Child processes the harness starts: each in a session of its own, signalled and stopped by pid.

A child runs in a new session, so its process group id is its pid: a Ctrl-C at the terminal reaches
only the harness (which then stops its children), and the child's own children can be stopped
together with it by signalling that group. Nothing here finds a process by name.

``die_with_parent`` (Linux only) asks the kernel to send the child a signal when the harness dies,
however it dies (even by SIGKILL), so a crashed harness leaves nothing running. It uses
``prctl(PR_SET_DEATHSIG)`` in ``preexec_fn``, with two limits: the signal reaches the child only
(not its own children: a child that forks should stop those when it gets SIGTERM), and it fires when
the *thread* that started the child ends, so it is only set up from the main thread; elsewhere the
child is started without it. It is optional because a ``preexec_fn`` makes ``subprocess`` fork and
run Python code in the child before ``exec``, instead of its faster ``vfork``/``posix_spawn`` path.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.01
KILL_WAIT = 5.0
PR_SET_DEATHSIG = 1  # from <linux/prctl.h>


class Child:
    """A started child process. Its process group id is its pid (it leads a session of its own)."""

    def __init__(self, popen: subprocess.Popen[bytes], name: str) -> None:
        self.popen = popen
        self.name = name

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def signal(self, sig: int, *, group: bool = False) -> None:
        """Send ``sig`` to the child, or to its whole process group, while the child is not reaped
        (until then its pid, and so its group id, cannot be reused)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if group:
                    os.killpg(self.pid, sig)
                else:
                    os.kill(self.pid, sig)

    def kill_group(self) -> None:
        """SIGKILL whatever is left of the child's process group (children it left behind), also after
        the child itself ended: while any member is alive, the group id cannot be reused."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the child to end (and reap it); True if it did."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.popen.poll() is None:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(POLL_INTERVAL)
        return True

    async def stop(self, grace: float, *, group: bool = False, resume: bool = False,
                   kill_wait: float = KILL_WAIT) -> bool:  # fmt: skip
        """SIGTERM, then SIGKILL if it still runs after ``grace`` s; True if it ended before SIGKILL.

        ``group`` signals the whole process group; ``resume`` also sends SIGCONT after SIGTERM (a
        stopped process acts on SIGTERM only once it runs). If the wait is cancelled, the child is
        killed and reaped (blocking, up to ``kill_wait`` s) before the cancellation goes on.
        """
        if self.popen.poll() is not None:
            return True
        self.signal(signal.SIGTERM, group=group)
        if resume:
            self.signal(signal.SIGCONT, group=group)
        try:
            if await self.wait(grace):
                return True
        except asyncio.CancelledError:  # no time left to be gentle: never leave it running
            self.signal(signal.SIGKILL, group=group)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(kill_wait)
            raise
        log.warning("%s (pid %d) ignored SIGTERM for %g s; killing it", self.name, self.pid, grace)
        self.signal(signal.SIGKILL, group=group)
        if not await self.wait(kill_wait):
            log.error("%s (pid %d) did not die after SIGKILL", self.name, self.pid)
        return False


def start_child(
    command: Sequence[str],
    *,
    name: str,
    output: IO[bytes] | int | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    die_with_parent: int | None = None,
) -> Child:
    """Start ``command`` in a new session, stdin from /dev/null, stdout and stderr to ``output``.

    ``die_with_parent``: the signal the child gets when the harness dies (see the module notes), or
    None. Raises OSError when the program cannot be run.
    """
    popen = subprocess.Popen(
        list(command), stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=cwd,
        start_new_session=True, preexec_fn=_death_signal_setter(die_with_parent),
    )  # fmt: skip
    return Child(popen, name)


def _death_signal_setter(sig: int | None) -> Callable[[], None] | None:
    if sig is None or not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not in the child
    parent = os.getpid()

    def set_death_signal() -> None:
        prctl(PR_SET_DEATHSIG, ctypes.c_ulong(sig), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
        if os.getppid() != parent:  # the parent died before the prctl took effect
            os.kill(os.getpid(), sig)

    return set_death_signal
