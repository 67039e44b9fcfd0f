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

This module is the server's side (:class:`Sandboxes`, and :class:`SharedDirectories` found
once); one sandbox, from its child's start to its end, is :mod:`dynos.backends.confined`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from dynos.backends import cgroups as cg
from dynos.backends import watchdog
from dynos.backends.appdir import (
    AppCopy,
    AppOverlay,
    UnprivilegedOverlay,
    unprivileged_overlay_works,
)
from dynos.backends.confined import REAPER, Sandbox
from dynos.backends.isolation import DynoUser
from dynos.backends.mounts import shared_directories
from dynos.backends.orphans import ProcessRegistry
from dynos.backends.scratch import DEFAULT_SCRATCH_MB, Scratch
from dynos.backends.scratch import scratch_bytes as scratch_size
from dynos.core.sizes import DEFAULT_SIZE, DynoSize
from dynos.priority import as_workload

# Sandbox is imported from here by the backend, builds and add-ons.
__all__ = ["Sandbox", "Sandboxes", "SharedDirectories"]

WATCHDOG = Path(watchdog.__file__).resolve()


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


def _existing(*paths: Path) -> tuple[Path, ...]:
    found: list[Path] = []
    for path in paths:
        with contextlib.suppress(OSError):
            resolved = path.resolve(strict=True)
            if resolved not in found:
                found.append(resolved)
    return tuple(found)
