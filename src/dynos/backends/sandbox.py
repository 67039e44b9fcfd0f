"""The sandbox of a child process the server starts: a dyno, and a build or an add-on's server.

A :class:`Sandbox` confines one child and everything it starts, and ends them all together:

- as root: a cgroup of its own (:class:`~dynos.backends.cgroups.Limits`: memory, CPU weight,
  pids), a private, capped scratch space (scratch.py: its own /tmp, /dev/shm and every other
  directory open to all users, gone when it ends), and an unprivileged user; it is stopped by
  its cgroup, every process in it, however detached (``setsid``, double forks), and the
  server's watchdog (watchdog.py) kills it should the server die;
- without root (or without cgroups): a reaper process (reaper.py) above the child, whose
  process tree is the child's and which dies with the server, recorded in the server's home
  (orphans.py) so that the next server ends whatever a killed one left;
- either way at the workloads' priority, never the server's (dynos.priority).

:class:`Sandboxes` is made once per server and prepares each one. For a build, say::

    sandbox = sandboxes.prepare(
        f"build-{slug_id}", limits=Limits.of(size), user=users.for_app(app_id),
        scratch_bytes=sandboxes.scratch_for(size), visible=(build_dir,),
    )
    process = await sandbox.spawn(argv, cwd=build_dir, env=env, stdout=PIPE, stderr=STDOUT)
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        await sandbox.stop(grace=10)  # SIGTERM to all, SIGKILL to all after the grace
    finally:
        await sandbox.finish()  # once it exited: kill what it left, remove its cgroup
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

from dynos.backends import cgroups as cg
from dynos.backends import reaper, watchdog
from dynos.backends.appdir import (
    AppCopy,
    AppOverlay,
    UnprivilegedOverlay,
    unprivileged_overlay_works,
)
from dynos.backends.isolation import DynoUser
from dynos.backends.mounts import shared_directories
from dynos.backends.orphans import ProcessRegistry
from dynos.backends.scratch import DEFAULT_SCRATCH_MB, Scratch, scratch_usage
from dynos.backends.scratch import scratch_bytes as scratch_size
from dynos.core.sizes import DEFAULT_SIZE, DynoSize
from dynos.priority import as_workload

REAPER = Path(reaper.__file__).resolve()
WATCHDOG = Path(watchdog.__file__).resolve()
GROUP_POLL = 0.05  # seconds between checks that a stopping sandbox's processes are gone
KILL_POLL = 0.01  # seconds between rounds of SIGKILL to a cgroup's processes
KILL_WAIT = 5.0  # seconds for SIGKILLed processes to be gone

ChildSetup = Callable[[], None]


class SharedDirectories:
    """The directories open to all users (mounts.shared_directories), found once in a
    thread of their own: the walk of every filesystem takes a second or so, and the server
    need not wait for it before its first child."""

    def __init__(self, found: tuple[Path, ...] | None = None) -> None:
        self._found = found
        self._ready = threading.Event()
        if found is None:
            threading.Thread(target=self._find, name="dynos-shared-dirs", daemon=True).start()
        else:
            self._ready.set()

    def _find(self) -> None:
        try:
            self._found = shared_directories()
        finally:
            self._ready.set()

    def get(self) -> tuple[Path, ...]:
        self._ready.wait()
        return self._found or ()


class Sandboxes:
    """How this server confines what it starts (one per server)."""

    def __init__(
        self,
        *,
        cgroups: cg.Cgroups | None = None,
        registry: ProcessRegistry | None = None,
        shared: SharedDirectories | None = None,
        scratch_mb: int = DEFAULT_SCRATCH_MB,
        python: str = sys.executable,
        app_copies: AppCopy | None = None,
        app_overlays: bool = True,
        unprivileged_overlays: bool = False,
    ) -> None:
        """``shared``: give each child a private scratch over these (needs root); None for
        none. ``python`` runs the reaper. A dyno's app directory (appdir.py) is an overlay
        of its release where it has a private scratch, else one in a user namespace of its
        own with ``unprivileged_overlays`` (unless not ``app_overlays``: the benchmark's
        comparison), else a copy under ``app_copies``, else (None) its release itself."""
        self.cgroups = cgroups
        self._app_copies = app_copies
        self._app_overlays = app_overlays
        self._unprivileged_overlays = unprivileged_overlays and app_overlays
        self._registry = registry
        self._shared = shared
        self._scratch_mb = scratch_mb
        self._python = python
        self._watchdog: subprocess.Popen[bytes] | None = None
        # What every child must still reach should a scratch cover it (a checkout or a
        # virtualenv under /tmp): this Python, and the reaper.
        self._visible = _existing(Path(sys.prefix), Path(sys.base_prefix), REAPER.parent)

    @classmethod
    def for_server(cls, home: Path, *, scratch_mb: int = DEFAULT_SCRATCH_MB) -> Sandboxes:
        """What this process may use: cgroups and private scratch as root, the reaper and
        its registry (``<home>/processes.json``) always. ``home`` must be locked by it."""
        root = os.geteuid() == 0
        return cls(
            cgroups=cg.Cgroups.detect(home=home),
            registry=ProcessRegistry(home / "processes.json"),
            shared=SharedDirectories() if root else None,
            scratch_mb=scratch_mb,
            app_copies=AppCopy(home / "app-dirs"),
            unprivileged_overlays=not root and unprivileged_overlay_works(home),
        )

    @property
    def description(self) -> str:
        """How children are held, as `dynos server` says at start."""
        held = (
            f"{self.cgroups.description} (memory, CPU weight and pids per dyno; stopped by cgroup)"
            if self.cgroups is not None
            else "process polling (psutil memory watch, CPU share as nice values; a reaper "
            "per dyno keeps its processes)"
        )
        if self._shared is not None:
            held += f", private scratch per dyno ({self._scratch_mb} MB for a Standard-1X)"
            if self._app_overlays:
                held += ", an overlay of its release as each dyno's app directory"
        elif self._unprivileged_overlays:
            held += ", an overlay of its release (in a user namespace) as each dyno's app directory"
        elif self._app_copies is not None:
            held += ", a copy of its release as each dyno's app directory"
        return held

    def scratch_for(self, size: DynoSize) -> int | None:
        """The scratch cap of a child of ``size``, None where there is no private scratch."""
        return scratch_size(size, self._scratch_mb) if self._shared is not None else None

    def start_watchdog(self) -> None:
        """With cgroups: a process that kills every process of this server's groups should
        the server die without stopping them (watchdog.py). Call it from the thread that
        lives as long as the server (its parent-death signal follows the thread)."""
        if self.cgroups is None or self._watchdog is not None:
            return
        parents = [str(p) for p in self.cgroups.parent_dirs]
        self._watchdog = subprocess.Popen(
            [self._python, "-I", "-S", str(WATCHDOG), str(os.getpid()), *parents],
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C at the server's terminal is for the server
            preexec_fn=as_workload,  # nothing but the server itself has the router's priority
        )

    def reap_leftovers(self) -> int:
        """At start, before any child: kill what a server that died on this home left
        running. Returns how many processes were killed."""
        killed = self.cgroups.reap_leftovers() if self.cgroups is not None else 0
        if self._registry is not None:
            killed += self._registry.reap()
        if self._app_copies is not None:
            self._app_copies.remove_all()
        return killed

    def prepare(
        self,
        name: str,
        *,
        limits: cg.Limits | None = None,
        user: DynoUser | None = None,
        scratch_bytes: int | None = None,
        visible: Sequence[Path] = (),
        niceness: int = 0,
        release: Path | None = None,
        size: DynoSize = DEFAULT_SIZE,
    ) -> Sandbox:
        """The sandbox ``name`` (unique among this server's live ones): a cgroup with
        ``limits`` where there are cgroups, else the reaper; the child runs as ``user``
        (None: as the server's); ``scratch_bytes`` of private scratch where available
        (None: none), with ``visible`` paths (its working directory) still reachable.
        ``release``: a dyno's, of which it gets a writable view of its own
        (:meth:`Sandbox.make_app_dir`), whose writes ``size``'s scratch cap bounds where
        there is no scratch. Raises OSError when the cgroup cannot be made."""
        group = None
        if self.cgroups is not None and limits is not None:
            group = self.cgroups.create(name, limits)
        scratch = None
        if scratch_bytes is not None and self._shared is not None:
            overlay = None
            if release is not None and self._app_overlays:
                uid, gid = (user.uid, user.gid) if user else (os.geteuid(), os.getegid())
                overlay = AppOverlay(release, uid, gid)
            visible = (*visible, *self._visible)
            scratch = Scratch(self._shared.get(), scratch_bytes, visible, overlay)
        unprivileged = None
        if scratch is None and release is not None and self._unprivileged_overlays:
            unprivileged = UnprivilegedOverlay(release, scratch_size(size, self._scratch_mb))
        return Sandbox(
            name,
            cgroups=self.cgroups if group is not None else None,
            group=group,
            user=user,
            scratch=scratch,
            niceness=niceness,
            registry=self._registry if group is None else None,
            python=self._python,
            release=release,
            app_copies=self._app_copies if scratch is None and unprivileged is None else None,
            unprivileged_overlay=unprivileged,
        )

    def close(self) -> None:
        """At stop, once every child has: stand the watchdog down, remove this server's
        parent cgroups."""
        if self._watchdog is not None:
            self._watchdog.send_signal(watchdog.STAND_DOWN)
            try:
                self._watchdog.wait(5)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
                self._watchdog.wait()
            self._watchdog = None
        if self.cgroups is not None:
            self.cgroups.close()


class Sandbox:
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

    def command(self, argv: Sequence[str]) -> list[str]:
        """What to run for ``argv``: itself in a cgroup, else under the reaper."""
        if self._group is not None:
            return list(argv)
        wrapper = [self._python, "-I", "-S", str(REAPER), str(os.getpid())]
        if self._user is not None:
            wrapper += ["--user", f"{self._user.uid}:{self._user.gid}"]
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
            _default_signals()
            cg.join(procs)
            if scratch is not None:
                scratch.enter()
            if unprivileged_overlay is not None:
                unprivileged_overlay.enter()
            as_workload(niceness)
            if workdir is not None:
                os.chdir(workdir)
            if user is not None:
                os.setgroups([])
                os.setgid(user.gid)
                os.setuid(user.uid)

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
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command(argv),
                start_new_session=True,
                preexec_fn=wrap_setup(setup) if wrap_setup else setup,
                **options,
            )
        except BaseException:
            self._release()
            await self._remove_app_copy()
            raise
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

    def scratch_usage(self) -> tuple[int, int] | None:
        """(used, cap) of its private scratch in bytes; None without one, or once gone."""
        if self._scratch is None or self._process is None or not self._scratch.targets:
            return None
        return scratch_usage(self._process.pid, self._scratch.targets[0])


def _existing(*paths: Path) -> tuple[Path, ...]:
    found: list[Path] = []
    for path in paths:
        with contextlib.suppress(OSError):
            resolved = path.resolve(strict=True)
            if resolved not in found:
                found.append(resolved)
    return tuple(found)


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


# What a signal's action can be set to: not SIGKILL and SIGSTOP.
_RESETTABLE = tuple(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP})


def _default_signals() -> None:
    """In the child, before exec: every signal at its default action and none blocked.

    ``exec`` keeps what the server ignores (SIGHUP under nohup; SIGINT and SIGQUIT as a
    script's background job) and its blocked mask; CPython's spawn resets only SIGPIPE and
    SIGXFSZ (uvloop's resets all). A dyno that ignored SIGHUP outlived its client's hang-up.
    """
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    for sig in _RESETTABLE:
        signal.signal(sig, signal.SIG_DFL)
