"""One sandbox (:class:`Sandbox`): a child the server starts, confined with all it starts.

:class:`~dynos.backends.sandbox.Sandboxes` prepares it (a cgroup or the reaper, a user, a
private scratch); from then on it owns the child's whole life:

- starting: the command (the argv itself in a cgroup, else under the reaper) and what the
  child does between fork and exec (join the cgroup, enter the scratch, take the workloads'
  priority, drop to its user, every signal back at its default);
- ending: SIGTERM to every process, SIGKILL to what is left after the grace, and once the
  child exited, whatever it left behind killed (by cgroup, by the reaper, or by session);
- what it uses: memory (the cgroup's count, or the processes' resident sets) and scratch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

from dynos.backends import cgroups as cg
from dynos.backends import reaper
from dynos.backends.appdir import AppCopy, UnprivilegedOverlay
from dynos.backends.base import DynoUsage
from dynos.backends.forkexec import (
    SETUP_DEADLINE,
    SLOW_SETUP,
    ChildSetup,
    FailedChild,
    default_signals,
)
from dynos.backends.isolation import DynoUser
from dynos.backends.orphans import ProcessRegistry
from dynos.backends.scratch import Scratch, scratch_usage
from dynos.priority import as_workload

REAPER = Path(reaper.__file__).resolve()
GROUP_POLL = 0.05  # seconds between checks that a stopping sandbox's processes are gone
KILL_POLL = 0.01  # seconds between rounds of SIGKILL to a cgroup's processes
KILL_WAIT = 5.0  # seconds for SIGKILLed processes to be gone


log = logging.getLogger(__name__)


class Sandbox:
    """One child and all it starts, confined as :meth:`Sandboxes.prepare` made it."""

    def __init__(
        self,
        name: str,
        *,
        cgroups: cg.Cgroups | None,
        group: cg.DynoCgroup | None,
        user: DynoUser | None,
        scratch: Scratch | None,
        niceness: int,
        registry: ProcessRegistry | None,
        python: str,
        release: Path | None = None,
        app_copies: AppCopy | None = None,
        unprivileged_overlay: UnprivilegedOverlay | None = None,
    ) -> None:
        self.name = name
        self._unprivileged_overlay = unprivileged_overlay
        self._release_dir = release
        self._app_copies = app_copies
        self._app_copy: Path | None = None
        self._cgroups = cgroups
        self._group = group
        self._user = user
        self._scratch = scratch
        self._niceness = niceness
        self._registry = registry
        self._python = python
        self._process: asyncio.subprocess.Process | None = None

    # -- starting ----------------------------------------------------------------------------

    async def make_app_dir(self) -> Path | None:
        """Before :meth:`spawn`: the dyno's app directory, the path to run it in (None
        without a release). Its release's own path, which its overlay covers in its mount
        namespace; else a copy made now, removed by :meth:`finish`; else the release
        itself, shared (a server with neither). Raises OSError if the copy fails."""
        if self._release_dir is None:
            return None
        if self._app_copies is None:
            return self._release_dir
        self._app_copy = await self._app_copies.make(self._release_dir, self.name)
        return self._app_copy

    def command(self, argv: Sequence[str], env_fd: int | None = None) -> list[str]:
        """What to run for ``argv``: itself in a cgroup, else under the reaper, which gives
        it the environment in ``env_fd`` (:func:`reaper.environment_file`)."""
        if self._group is not None:
            return list(argv)
        wrapper = [self._python, "-I", "-S", str(REAPER), str(os.getpid())]
        if self._user is not None:
            wrapper += ["--user", f"{self._user.uid}:{self._user.gid}"]
        if env_fd is not None:
            wrapper += ["--env-fd", str(env_fd)]
        return [*wrapper, "--", *argv]

    @property
    def user(self) -> DynoUser | None:
        """Whom the child runs as (None: the server's user)."""
        return self._user

    def child_setup(self, workdir: Path | None = None) -> ChildSetup:
        """What the child does between fork and exec (``preexec_fn``), in this order: join
        the cgroup (so that all that follows, scratch pages included, is charged to it),
        enter its private scratch, take the workloads' priority, enter ``workdir``, and drop
        to its user (the reaper drops in its own child instead). ``workdir`` is entered
        while still root, for one below a directory only root may pass (an add-on's data):
        uvloop would change to a ``cwd`` given to the subprocess only after this runs."""
        procs = self._group.procs if self._group is not None else ()
        scratch, niceness = self._scratch, self._niceness
        unprivileged_overlay = self._unprivileged_overlay
        user = self._user if self._group is not None else None

        def setup() -> None:
            step = "setting its signals to their defaults"
            try:
                default_signals(alarm=SETUP_DEADLINE)
                step = "joining its cgroup"
                cg.join(procs)
                step = "entering its private scratch"
                if scratch is not None:
                    scratch.enter()
                step = "mounting its app directory"
                if unprivileged_overlay is not None:
                    unprivileged_overlay.enter()
                step = "taking the workloads' priority"
                as_workload(niceness)
                step = "entering its working directory"
                if workdir is not None:
                    os.chdir(workdir)
                step = "dropping to its user"
                if user is not None:
                    os.setgroups([])
                    os.setgid(user.gid)
                    os.setuid(user.uid)
                signal.alarm(0)  # an alarm outlives exec: the command must not inherit it
            except OSError as exc:
                # The event loop hands the parent only the class and the first argument
                # (an errno alone, for an OSError): say which step failed, and on what.
                raise OSError(f"{step}: {exc}") from None

        return setup

    def started(self, process: asyncio.subprocess.Process) -> None:
        """The child runs as ``process`` (spawned with :meth:`command` and
        :meth:`child_setup`, in a new session)."""
        self._process = process
        if self._registry is not None:
            self._registry.record(self.name, process.pid)

    async def spawn(
        self,
        argv: Sequence[str],
        *,
        wrap_setup: Callable[[ChildSetup], ChildSetup] | None = None,
        workdir: Path | None = None,
        **options: Any,
    ) -> asyncio.subprocess.Process:
        """Start ``argv`` in the sandbox, in a session of its own; ``options`` go to
        asyncio.create_subprocess_exec (cwd, env, stdin, stdout, stderr, limit).
        ``wrap_setup`` adds to the child's setup (an attached dyno's terminal); ``workdir``
        is entered as root (:meth:`child_setup`). On failure the sandbox is released and
        the error (OSError, SubprocessError) raised."""
        setup = self.child_setup(workdir)
        env_fd = None
        failed_child = None
        try:
            if self._group is None and options.get("env") is not None:
                # The reaper (root until its child drops) keeps an empty environment of its own.
                env_fd = reaper.environment_file(options["env"])
                options.update(env={}, pass_fds=(*options.get("pass_fds", ()), env_fd))
            failed_child = FailedChild(wrap_setup(setup) if wrap_setup else setup)
            began = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                *self.command(argv, env_fd),
                start_new_session=True,
                preexec_fn=failed_child.setup,
                **options,
            )
        except BaseException:
            if failed_child is not None:
                failed_child.reap()
            self._release()
            await self._remove_app_copy()
            raise
        finally:
            if failed_child is not None:
                failed_child.close()
            if env_fd is not None:
                os.close(env_fd)
        took = time.monotonic() - began
        if took > SLOW_SETUP:
            log.warning(
                "%s took %.1f s from fork to exec (its cgroup, scratch and mounts), the "
                "server blocked meanwhile: the kernel was slow to set it up",
                self.name,
                took,
            )
        self.started(process)
        return process

    # -- ending ------------------------------------------------------------------------------

    async def stop(self, grace: float) -> bool:
        """SIGTERM to every process, SIGKILL to every one left after ``grace`` seconds;
        returns once none is left, True if SIGKILL was needed."""
        if self._group is not None and self._cgroups is not None:
            self._cgroups.signal_all(self._group, signal.SIGTERM)
            if await self._wait_empty(grace):
                return False
            await self._kill_until_empty()
            return True
        process = self._process
        if process is None:
            return False
        _signal(process.pid, signal.SIGTERM)  # the reaper passes it to every process
        if await _wait_exit(process, grace):
            return False
        _signal(process.pid, reaper.KILL_ALL)
        await _wait_exit(process, KILL_WAIT)
        return True

    def kill(self) -> None:
        """SIGKILL every process now (an R15 or R10 kill)."""
        if self._group is not None and self._cgroups is not None:
            self._cgroups.kill_all(self._group)
        elif self._process is not None:
            _signal(self._process.pid, reaper.KILL_ALL)

    async def finish(self) -> bool:
        """Once the child has exited: kill whatever it left, release the sandbox. Returns
        whether the kernel killed a process of it for its memory limit."""
        oom_killed = False
        if self._group is not None and self._cgroups is not None:
            await self._kill_until_empty()
            oom_killed = self._cgroups.oom_killed(self._group)
        elif self._process is not None and (self._process.returncode or 0) < 0:
            # The reaper ends the tree before it exits, unless it was killed itself: then
            # what did not leave its session is found by the session.
            await asyncio.to_thread(_kill_session, self._process.pid)
        self._release()
        await self._remove_app_copy()
        return oom_killed

    async def _remove_app_copy(self) -> None:
        if self._app_copies is not None and self._app_copy is not None:
            copy, self._app_copy = self._app_copy, None
            await self._app_copies.remove(copy)

    def _release(self) -> None:
        if self._group is not None and self._cgroups is not None:
            self._cgroups.remove(self._group)
        if self._registry is not None:
            self._registry.forget(self.name)

    async def _wait_empty(self, timeout: float) -> bool:
        assert self._group is not None and self._cgroups is not None
        deadline = asyncio.get_running_loop().time() + timeout
        while self._cgroups.members(self._group):
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(GROUP_POLL)
        return True

    async def _kill_until_empty(self) -> None:
        assert self._group is not None and self._cgroups is not None
        deadline = asyncio.get_running_loop().time() + KILL_WAIT
        while self._cgroups.kill_all(self._group):
            if asyncio.get_running_loop().time() >= deadline:
                return
            await asyncio.sleep(KILL_POLL)

    # -- what it uses ------------------------------------------------------------------------

    def memory_used(self) -> int | None:
        """Its processes' memory in bytes (with cgroups: the cgroup's count, tmpfs pages
        included; else their resident sets). Without cgroups this also records them in the
        registry, for the next server should this one be killed."""
        if self._group is not None and self._cgroups is not None:
            return self._cgroups.memory_used(self._group)
        if self._process is None:
            return None
        try:
            processes = psutil.Process(self._process.pid).children(recursive=True)
        except psutil.Error:
            return None
        total = 0
        for process in processes:
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        if self._registry is not None:
            self._registry.record(self.name, self._process.pid, [p.pid for p in processes])
        return total

    def usage(self) -> DynoUsage | None:
        """Its processes' memory (the cgroup's figures where there is one, else their
        resident sets) and the CPU seconds its live processes used, their reaped children's
        included (a process that exited takes its own with it: the load is a rate over
        what is running)."""
        if self._process is None:
            return None
        cgroups, group = self._cgroups, self._group
        try:
            if group is not None and cgroups is not None:
                pids = cgroups.members(group)
                processes = [psutil.Process(pid) for pid in pids if _exists(pid)]
            else:
                processes = psutil.Process(self._process.pid).children(recursive=True)
        except psutil.Error:
            return None
        rss = 0
        cpu = 0.0
        for process in processes:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                cpu += times.user + times.system + times.children_user + times.children_system
                rss += process.memory_info().rss
        if group is not None and cgroups is not None:
            with contextlib.suppress(OSError, ValueError):
                rss, swap, cache, pgpgin, pgpgout = cgroups.memory_stat(group)
                return DynoUsage(rss, swap, cache, pgpgin, pgpgout, cpu)
        return DynoUsage(rss, cpu_seconds=cpu)

    def scratch_usage(self) -> tuple[int, int] | None:
        """(used, cap) of its private scratch in bytes; None without one, or once gone."""
        if self._scratch is None or self._process is None or not self._scratch.targets:
            return None
        return scratch_usage(self._process.pid, self._scratch.targets[0])


def _exists(pid: int) -> bool:
    return psutil.pid_exists(pid)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


async def _wait_exit(process: asyncio.subprocess.Process, timeout: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), timeout)
    return process.returncode is not None


def _kill_session(session: int) -> None:
    """SIGKILL what is left in the session of the dead leader ``session``. While any process
    is in it, no process can get its id as a pid; one that has it started a session anew."""
    if psutil.pid_exists(session):
        return
    for pid in psutil.pids():
        with contextlib.suppress(OSError):
            if os.getsid(pid) == session and pid != os.getpid():
                os.kill(pid, signal.SIGKILL)
