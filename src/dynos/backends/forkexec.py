"""The window between fork and exec of a sandboxed child (:mod:`dynos.backends.confined`).

The server's event loop is blocked for all of it: libuv's ``uv_spawn`` waits until the child
has exec'd or died, so a child stuck in its setup (a kernel lock held elsewhere: the cgroup
join, the scratch's mounts) would freeze the whole server, router and API included. The setup
takes milliseconds; past :data:`SETUP_DEADLINE` seconds an alarm ends the child, which the
server then sees as a crash (and starts the dyno again).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

ChildSetup = Callable[[], None]

SETUP_DEADLINE = 10  # seconds: the child's alarm, cancelled as its setup's last step
SLOW_SETUP = 1.0  # seconds from fork to exec past which the server's log says so
REAP_TRIES = 1000  # of a millisecond each, for a failed child to end

# What a signal's action can be set to: not SIGKILL and SIGSTOP.
_RESETTABLE = tuple(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP})


def default_signals(alarm: int = 0) -> None:
    """In the child, before exec: every signal at its default action and none blocked, and an
    ``alarm`` (seconds) set if given, which ends the child unless cancelled.

    ``exec`` keeps what the server ignores (SIGHUP under nohup; SIGINT and SIGQUIT as a
    script's background job) and its blocked mask; CPython's spawn resets only SIGPIPE and
    SIGXFSZ (uvloop's resets all). A dyno that ignored SIGHUP outlived its client's hang-up.
    The actions are reset before the mask is cleared: a signal that reached the child still
    blocked (uvloop forks with all blocked: a stop of the dyno's cgroup, say) must not run
    the server's handlers in it, which write to the server's own descriptors.
    """
    for sig in _RESETTABLE:
        signal.signal(sig, signal.SIG_DFL)
    if alarm:
        signal.alarm(alarm)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


class FailedChild:
    """Reaps a child whose setup failed. uvloop reports the setup's exception and closes the
    process handle, so nothing would wait for that child: a zombie for the server's life. The
    child tells its pid through a pipe before the exception leaves it."""

    def __init__(self, setup: ChildSetup) -> None:
        self._setup = setup
        self._read, self._write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)

    def setup(self) -> None:
        try:
            self._setup()
        except BaseException:
            with contextlib.suppress(OSError):
                os.write(self._write, os.getpid().to_bytes(4, "little"))
            raise

    def reap(self) -> None:
        """After a failed spawn: reap the child if its setup failed. It has closed its
        descriptors, so it is at most a moment from its end; one that asyncio's own loop
        reaped already (ChildProcessError) is let be, and the wait is bounded all the same."""
        with contextlib.suppress(OSError):
            told = os.read(self._read, 4)
            if len(told) != 4:
                return
            pid = int.from_bytes(told, "little")
            for _ in range(REAP_TRIES):
                if os.waitpid(pid, os.WNOHANG) != (0, 0):
                    return
                time.sleep(0.001)

    def close(self) -> None:
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)
