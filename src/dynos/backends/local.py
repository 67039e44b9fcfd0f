"""The local backend: each dyno is a sandbox of processes on this machine (sandbox.py).

A dyno runs ``/bin/sh -c <command>`` in a new session, with its app directory (its own
writable view of its release, appdir.py; also its HOME) as cwd and only the environment the
manager built. A simple command that runs a program (no list, pipe,
compound or builtin) is run as ``exec <command>``, as bash does by itself and Heroku's dynos
therefore show: the app is the dyno's main process, gets its signals first hand and exits
with its own status, and no shell waits beside each dyno (dash, Debian's sh, would otherwise
fork it and wait). An app with a ``.profile`` or ``.profile.d`` gets bash instead, which sources
them first, as Heroku's dynos do (:func:`start_command`). Output is read line by line and
handed to the events sink. A web dyno is up once a TCP connect to its PORT succeeds.

A dyno is every process it starts, however detached: as root its cgroup holds them, without
root its reaper does. A stop signals them all; when the main process exits, whatever it left
is killed, as a one-off's children are on Heroku.

Limits per size: with cgroups (root), a memory limit at twice the quota, a CPU weight and a
pids limit per dyno, and a private scratch space (its own /tmp, /dev/shm ..., capped by size);
without, the manager's memory watch polls the process tree (psutil) and CPU shares become
nice values. As root each app's dynos also run as the app's own user, and a web dyno's port
is guarded (firewall.py): only the router and the app's own dynos reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from dynos.backends import cgroups as cg
from dynos.backends.base import HERE, DynoEvents, DynoSpec, DynoUsage, Placement
from dynos.backends.firewall import PortGuard
from dynos.backends.isolation import AppUsers, DynoUser, open_slug_to
from dynos.backends.ports import DynoPorts
from dynos.backends.sandbox import Sandbox, Sandboxes
from dynos.core.sizes import SIZES, DynoSize
from dynos.errors import PlatformError

PROBE_INTERVAL = 0.01  # seconds between connect attempts while a web dyno boots (a refused
# loopback connect costs microseconds; the interval is what a boot waits on top of its own)
LINE_LIMIT = 1 << 20  # a longer output line is cut in pieces rather than lost
HEALTH_TIMEOUT = 5.0  # seconds a health check may take to answer
DRAIN_TIMEOUT = 1.0  # seconds to read what an exited dyno left in its pipes
EXIT_POLL = 0.2  # seconds between looks at an exit status asyncio's loop has yet to report


@dataclass
class _Dyno:
    spec: DynoSpec
    process: asyncio.subprocess.Process
    sandbox: Sandbox
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)  # its output, drained at exit
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False  # a stop is under way: it, not the exit, ends the other processes
    all_gone: asyncio.Event = field(default_factory=asyncio.Event)
    guarded: tuple[int, int] | None = None  # (port, app uid) allowed in the firewall


class LocalBackend:
    def __init__(
        self,
        events: DynoEvents,
        *,
        boot_timeout: float = 60.0,
        cgroups: cg.Cgroups | None = None,
        users: AppUsers | None = None,
        sandboxes: Sandboxes | None = None,
        ports: PortGuard | None = None,
    ) -> None:
        """``sandboxes``: how dynos are confined (the server's); without, ``cgroups`` (or
        none) and no private scratch."""
        self._events = events
        self._boot_timeout = boot_timeout
        self._sandboxes = sandboxes if sandboxes is not None else Sandboxes(cgroups=cgroups)
        self._users = users  # None: dynos run as the server's user
        self._ports = ports  # None: dyno ports are open to every local process
        self._opened_slugs: set[Path] = set()
        self._dynos: dict[str, _Dyno] = {}
        self._dyno_ports = DynoPorts()

    @property
    def limits(self) -> str:
        """How sizes are enforced, as `dynos server` says at start."""
        return self._sandboxes.description

    def allocate_port(self) -> int:
        """A free port outside the kernel's ephemeral range (ports.py), the dyno's until it
        has ended."""
        return self._dyno_ports.allocate()

    def address(self, key: str) -> str | None:
        return "127.0.0.1" if key in self._dynos else None

    def placement(self, key: str) -> Placement:
        return HERE

    def _prepare(self, spec: DynoSpec) -> Sandbox:
        """The dyno's sandbox: its cgroup, user and scratch."""
        user: DynoUser | None = None
        if self._users is not None and spec.app_id:
            user = self._users.for_app(spec.app_id)
            if spec.cwd not in self._opened_slugs:
                open_slug_to(spec.cwd, user)
                self._opened_slugs.add(spec.cwd)
        held = self._sandboxes.cgroups is not None
        return self._sandboxes.prepare(
            spec.key,
            limits=cg.Limits.of(spec.size),
            user=user,
            scratch_bytes=self._sandboxes.scratch_for(spec.size),
            visible=(spec.cwd, *server_python(spec.cwd)),
            niceness=0 if held else nice_for(spec.size),
            release=spec.cwd,
            size=spec.size,
        )

    def _guard_port(self, spec: DynoSpec) -> tuple[int, int] | None:
        """Close the web dyno's port to all but the router and its app's dynos, before the
        dyno can listen on it. Raises PlatformError (FirewallError) if the rule fails."""
        if self._ports is None or self._users is None or spec.port is None or not spec.app_id:
            return None
        uid = self._users.for_app(spec.app_id).uid
        self._ports.allow(spec.port, uid)
        return spec.port, uid

    def _unguard_port(self, guarded: tuple[int, int] | None) -> None:
        if self._ports is not None and guarded is not None:
            self._ports.revoke(*guarded)

    async def start(self, spec: DynoSpec) -> None:
        try:
            await self._start(spec)
        except PlatformError:
            self._dyno_ports.release(spec.port)
            raise

    async def _start(self, spec: DynoSpec) -> None:
        guarded = self._guard_port(spec)
        try:
            sandbox = self._prepare(spec)
        except OSError as exc:
            self._unguard_port(guarded)
            raise PlatformError(f"Could not set up limits for {spec.name}: {exc}") from exc
        try:
            app_dir = await sandbox.make_app_dir() or spec.cwd
        except OSError as exc:
            await sandbox.finish()
            self._unguard_port(guarded)
            raise PlatformError(f"Could not make the app directory of {spec.name}: {exc}") from exc
        env = spec.env
        if env.get("HOME") == str(spec.cwd):  # HOME is the app directory, as on Heroku
            env = {**env, "HOME": str(app_dir)}
        terminal = spec.terminal  # an attached one-off dyno's stdio is its client's (attach.py)
        pipes = (asyncio.subprocess.DEVNULL, asyncio.subprocess.PIPE, asyncio.subprocess.PIPE)
        stdin, stdout, stderr = terminal.child_stdio() if terminal else pipes
        try:
            # Joining the cgroup, the private scratch and dropping to the app's user happen in
            # the child, before exec, so no instruction of the dyno's command runs unconfined.
            process = await sandbox.spawn(
                start_command(spec.command, spec.cwd),
                wrap_setup=terminal.child_setup if terminal else None,
                # Entered after its overlay is mounted: a cwd is entered before it by the
                # standard library's spawn, and would be the release below the overlay.
                workdir=app_dir,
                cwd=app_dir,
                env=env,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                limit=LINE_LIMIT,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            self._unguard_port(guarded)
            cause = f" ({exc.__cause__})" if exc.__cause__ else ""
            raise PlatformError(f"Could not start {spec.name}: {exc}{cause}") from exc
        dyno = _Dyno(spec, process, sandbox, guarded=guarded)
        self._dynos[spec.key] = dyno
        if terminal is not None:
            dyno.readers = terminal.connect(process.pid)
        else:
            assert process.stdout is not None and process.stderr is not None
            emit = partial(self._events.dyno_output, spec.key)
            dyno.readers = [
                asyncio.create_task(pump_lines(process.stdout, emit)),
                asyncio.create_task(pump_lines(process.stderr, emit)),
            ]
        dyno.tasks = [*dyno.readers, asyncio.create_task(self._watch(dyno))]
        if spec.port is None:
            self._events.dyno_up(spec.key)
        else:
            dyno.tasks.append(asyncio.create_task(self._probe(dyno, spec.port)))

    async def stop(self, key: str, grace: float, *, replaced: bool = False) -> bool:
        dyno = self._dynos.get(key)
        if dyno is None:
            return False
        # Every process of the dyno gets SIGTERM and the whole grace period to exit, as on
        # Heroku: a shell that exits at once must not cut short the server it started.
        dyno.stopping = True
        killed = await dyno.sandbox.stop(grace)
        dyno.all_gone.set()
        await dyno.exited.wait()
        return killed

    async def _watch(self, dyno: _Dyno) -> None:
        returncode = await _exit_of(dyno.process)
        if dyno.stopping:
            await dyno.all_gone.wait()
        # The dyno is all its processes: what its main process left goes too.
        oom_killed = await dyno.sandbox.finish()
        # Let the output readers drain what the processes wrote before they exited.
        await asyncio.wait(dyno.readers, timeout=DRAIN_TIMEOUT)
        for task in dyno.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._dynos.pop(dyno.spec.key, None)
        if oom_killed:
            self._events.dyno_oom_killed(dyno.spec.key)
        self._unguard_port(dyno.guarded)  # no process of it is left to listen there
        self._dyno_ports.release(dyno.spec.port)
        dyno.exited.set()
        status = 128 - returncode if returncode < 0 else returncode
        self._events.dyno_exited(dyno.spec.key, status)

    async def _probe(self, dyno: _Dyno, port: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._boot_timeout
        while dyno.process.returncode is None:
            if await answers("127.0.0.1", port, dyno.spec.health_path):
                if dyno.process.returncode is None:
                    self._events.dyno_up(dyno.spec.key)
                return
            if loop.time() > deadline:
                self._events.dyno_boot_timeout(dyno.spec.key)
                return
            await asyncio.sleep(PROBE_INTERVAL)

    def memory_used(self, key: str) -> int | None:
        dyno = self._dynos.get(key)
        return None if dyno is None else dyno.sandbox.memory_used()

    def usage(self, key: str) -> DynoUsage | None:
        dyno = self._dynos.get(key)
        return None if dyno is None else dyno.sandbox.usage()

    def scratch_usage(self, key: str) -> tuple[int, int] | None:
        dyno = self._dynos.get(key)
        return None if dyno is None else dyno.sandbox.scratch_usage()

    def kill(self, key: str) -> None:
        dyno = self._dynos.get(key)
        if dyno is not None:
            dyno.sandbox.kill()

    async def release_app(self, app_id: str) -> None:
        """The app is destroyed and none of its dynos runs: its user goes (with what it
        owned), so that its uid can serve another app."""
        self._opened_slugs = {p for p in self._opened_slugs if p.exists()}
        if self._users is not None:
            await asyncio.to_thread(self._users.remove_app, app_id)

    async def close(self, grace: float) -> None:
        """Stop every dyno still running (used at server shutdown)."""
        await asyncio.gather(*(self.stop(key, grace) for key in list(self._dynos)))


# First words that ``exec`` would change the meaning of: shell keywords, a subshell or group,
# and dash's builtins (``exec eval ...`` finds no program eval; ``exec echo`` runs another).
_NOT_A_PROGRAM = (
    frozenset({"!", "{", "}", "(", ")", "function", "if", "then", "else", "elif", "fi"})
    | {"case", "esac", "for", "while", "until", "do", "done", ".", ":", "[", "alias", "bg"}
    | {"break", "cd", "chdir", "command", "continue", "echo", "eval", "exec", "exit", "export"}
    | {"false", "fc", "fg", "getopts", "hash", "jobs", "kill", "local", "printf", "pwd"}
    | {"read", "readonly", "return", "set", "shift", "test", "times", "trap", "true", "type"}
    | {"ulimit", "umask", "unalias", "unset", "wait"}
)
# A command that starts with an assignment (FOO=1 cmd) or a redirection (2>/dev/null cmd).
_ASSIGNMENT_OR_REDIRECTION = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*=|\d*[<>])")


# Heroku's dynos source these before the command, with the config vars already set: the
# buildpacks' .profile.d scripts first, then the app's own .profile.
SOURCE_PROFILE = (
    'for f in .profile.d/*.sh; do if [ -r "$f" ]; then . "./$f"; fi; done; '
    "if [ -r .profile ]; then . ./.profile; fi; "
)


def start_command(command: str, app_dir: Path) -> list[str]:
    """The dyno's argv: its command through a shell, which first sources the app's
    ``.profile.d/*.sh`` and ``.profile`` when it has them (with bash, as Heroku's dynos do,
    where there is one); the command then replaces the shell all the same."""
    script = shell_command(command)
    if not (app_dir / ".profile").exists() and not (app_dir / ".profile.d").is_dir():
        return ["/bin/sh", "-c", script]
    shell = "/bin/bash" if Path("/bin/bash").exists() else "/bin/sh"
    return [shell, "-c", SOURCE_PROFILE + script]


def shell_command(command: str) -> str:
    """What ``sh -c`` runs for a Procfile or one-off ``command``: ``exec command`` when that
    means the same (one simple command, which the app process then replaces the shell for),
    else the command as written."""
    if "\n" in command or "`" in command or "$(" in command:
        return command  # several lines, or a command substitution that may hold anything
    if _ASSIGNMENT_OR_REDIRECTION.match(command):
        return command
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        lexer.commenters = ""  # "#" starts a comment only at a word's start: ${#X} is not one
        words = list(lexer)
    except ValueError:  # unbalanced quotes: let the shell say what is wrong
        return command
    if not words or words[0] in _NOT_A_PROGRAM:
        return command
    if any(set(word) <= set(";&|()") for word in words):
        return command
    return f"exec {command}"


def server_python(slug: Path) -> tuple[Path, ...]:
    """The interpreter a slug's ``.venv`` was made from, when it is one of the server's copies
    (``<home>/pythons/<name>``, next to ``<home>/slugs``): the dyno's scratch must not hide it
    (a home under /tmp, in tests). Anything else the file names is ignored: the build wrote
    it, and it must not make the dyno see more."""
    pythons = slug.parent.parent / "pythons"
    try:
        config = (slug / ".venv" / "pyvenv.cfg").read_text(errors="replace")
    except OSError:
        return ()
    for line in config.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            prefix = Path(value.strip()).parent
            if prefix.parent == pythons and prefix.is_dir() and not prefix.is_symlink():
                return (prefix,)
    return ()


def nice_for(size: DynoSize) -> int:
    """Without cgroups, a CPU share becomes a nice value: each step is about 1.25x weight,
    so a 2X dyno (share 2) sits three steps above a 1X; the largest size runs at nice 0."""
    largest = max(s.cpu_share for s in SIZES)
    return round(math.log(largest / size.cpu_share, 1.25))


async def _exit_of(process: asyncio.subprocess.Process) -> int:
    """The main process's exit status, as soon as it exits. asyncio's own loop (not uvloop)
    answers wait() only once the pipes are closed too, which processes the main one left
    may hold open until they are killed, on this very exit: so look at the status as well."""
    waiter = asyncio.ensure_future(process.wait())
    while process.returncode is None:
        await asyncio.wait({waiter}, timeout=EXIT_POLL)
    if not waiter.done():
        waiter.cancel()
    return process.returncode


async def answers(host: str, port: int, health_path: str | None) -> bool:
    """Whether the dyno accepts connections on ``host``:``port`` (and answers ``health_path``
    with a 2xx or 3xx status, when the app set one)."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    try:
        if health_path is None:
            return True
        writer.write(f"GET {health_path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        status_line = await asyncio.wait_for(reader.readline(), HEALTH_TIMEOUT)
        parts = status_line.split()
        return len(parts) >= 2 and parts[1][:1] in (b"2", b"3")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def pump_lines(stream: asyncio.StreamReader, emit: Callable[[str], None]) -> None:
    """Each line of a dyno's output to ``emit``, until its end (the docker backend's too)."""
    while True:
        try:
            raw = await stream.readline()
        except ValueError:  # a line longer than LINE_LIMIT: take what is buffered
            raw = await stream.read(LINE_LIMIT)
        if not raw:
            return
        emit(raw.decode("utf-8", "replace").rstrip("\r\n"))
