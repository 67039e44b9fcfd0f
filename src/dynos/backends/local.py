"""The local backend: each dyno is a process group on this machine.

A dyno runs ``/bin/sh -c <command>`` in a new session (so its process group is the dyno: a
stop signals every process it started), with its release directory as cwd and only the
environment the manager built. A simple command that runs a program (no list, pipe,
compound or builtin) is run as ``exec <command>``, as bash does by itself and Heroku's dynos
therefore show: the app is the dyno's main process, gets its signals first hand and exits
with its own status, and no shell waits beside each dyno (dash, Debian's sh, would otherwise
fork it and wait). Output is read line by line and handed to the events sink. A web dyno is
up once a TCP connect to its PORT succeeds.

Limits per size: with cgroups (root), a memory limit at twice the quota, a CPU weight and a
pids limit per dyno; without, the manager's memory watch polls the process tree (psutil) and
CPU shares become nice values. As root each app's dynos also run as the app's own user, and
a web dyno's port is guarded (firewall.py): only the router and the app's own dynos reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import shlex
import signal
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from dynos.backends import cgroups as cg
from dynos.backends.base import DynoEvents, DynoSpec
from dynos.backends.firewall import PortGuard
from dynos.backends.isolation import AppUsers, DynoUser, open_slug_to
from dynos.core.sizes import SIZES, DynoSize
from dynos.errors import PlatformError
from dynos.priority import as_workload

PROBE_INTERVAL = 0.01  # seconds between connect attempts while a web dyno boots (a refused
# loopback connect costs microseconds; the interval is what a boot waits on top of its own)
LINE_LIMIT = 1 << 20  # a longer output line is cut in pieces rather than lost
HEALTH_TIMEOUT = 5.0  # seconds a health check may take to answer
KILL_WAIT = 5.0  # seconds for SIGKILLed processes to be gone
GROUP_POLL = 0.05  # seconds between checks that a stopping dyno's processes are gone
DRAIN_TIMEOUT = 1.0  # seconds to read what an exited dyno left in its pipes


@dataclass
class _Dyno:
    spec: DynoSpec
    process: asyncio.subprocess.Process
    cgroup: cg.DynoCgroup | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)  # its output, drained at exit
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False  # a stop is under way: it, not the exit, ends the process group
    group_gone: asyncio.Event = field(default_factory=asyncio.Event)
    guarded: tuple[int, int] | None = None  # (port, app uid) allowed in the firewall


class LocalBackend:
    def __init__(
        self,
        events: DynoEvents,
        *,
        boot_timeout: float = 60.0,
        cgroups: cg.Cgroups | None = None,
        users: AppUsers | None = None,
        ports: PortGuard | None = None,
    ) -> None:
        self._events = events
        self._boot_timeout = boot_timeout
        self._cgroups = cgroups
        self._users = users  # None: dynos run as the server's user
        self._ports = ports  # None: dyno ports are open to every local process
        self._opened_slugs: set[Path] = set()
        self._dynos: dict[str, _Dyno] = {}

    @property
    def limits(self) -> str:
        """How sizes are enforced, as `dynos server` says at start."""
        if self._cgroups is not None:
            return f"{self._cgroups.description} (memory, CPU weight and pids per dyno)"
        return "process polling (psutil memory watch, CPU share as nice values)"

    def allocate_port(self) -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            return port

    def _prepare(self, spec: DynoSpec) -> tuple[cg.DynoCgroup | None, Callable[[], None]]:
        """The dyno's cgroup and what its child process does between fork and exec."""
        group = self._cgroups.create(spec.key, spec.size) if self._cgroups else None
        user: DynoUser | None = None
        if self._users is not None and spec.app_id:
            user = self._users.for_app(spec.app_id)
            if spec.cwd not in self._opened_slugs:
                open_slug_to(spec.cwd, user)
                self._opened_slugs.add(spec.cwd)
        procs = group.procs if group else ()
        niceness = 0 if group else nice_for(spec.size)
        return group, _child_setup(procs, niceness, user)

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
        guarded = self._guard_port(spec)
        try:
            group, setup = self._prepare(spec)
        except OSError as exc:
            self._unguard_port(guarded)
            raise PlatformError(f"Could not set up limits for {spec.name}: {exc}") from exc
        terminal = spec.terminal  # an attached one-off dyno's stdio is its client's (attach.py)
        pipes = (asyncio.subprocess.DEVNULL, asyncio.subprocess.PIPE, asyncio.subprocess.PIPE)
        stdin, stdout, stderr = terminal.child_stdio() if terminal else pipes
        try:
            process = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                shell_command(spec.command),
                cwd=spec.cwd,
                env=spec.env,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                limit=LINE_LIMIT,
                # Joining cgroups and dropping to the app's user happen in the child, before
                # exec, so no instruction of the dyno's command runs unlimited or as root.
                preexec_fn=terminal.child_setup(setup) if terminal else setup,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            if group is not None and self._cgroups is not None:
                self._cgroups.remove(group)
            self._unguard_port(guarded)
            raise PlatformError(f"Could not start {spec.name}: {exc}") from exc
        dyno = _Dyno(spec, process, group, guarded=guarded)
        self._dynos[spec.key] = dyno
        if terminal is not None:
            dyno.readers = terminal.connect(process.pid)
        else:
            assert process.stdout is not None and process.stderr is not None
            dyno.readers = [
                asyncio.create_task(self._pump(spec.key, process.stdout)),
                asyncio.create_task(self._pump(spec.key, process.stderr)),
            ]
        dyno.tasks = [*dyno.readers, asyncio.create_task(self._watch(dyno))]
        if spec.port is None:
            self._events.dyno_up(spec.key)
        else:
            dyno.tasks.append(asyncio.create_task(self._probe(dyno, spec.port)))

    async def stop(self, key: str, grace: float) -> bool:
        dyno = self._dynos.get(key)
        if dyno is None:
            return False
        # Every process of the dyno gets SIGTERM and the whole grace period to exit, as on
        # Heroku: a shell that exits at once must not cut short the server it started.
        dyno.stopping = True
        pgid = dyno.process.pid
        _signal_group(pgid, signal.SIGTERM)
        killed = not await _wait_group_gone(pgid, grace)
        if killed:
            _signal_group(pgid, signal.SIGKILL)
            await _wait_group_gone(pgid, KILL_WAIT)
        dyno.group_gone.set()
        await dyno.exited.wait()
        return killed

    async def _pump(self, key: str, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than LINE_LIMIT: take what is buffered
                raw = await stream.read(LINE_LIMIT)
            if not raw:
                return
            self._events.dyno_output(key, raw.decode("utf-8", "replace").rstrip("\r\n"))

    async def _watch(self, dyno: _Dyno) -> None:
        returncode = await dyno.process.wait()
        if dyno.stopping:
            await dyno.group_gone.wait()
        else:  # the dyno is its whole process group: what its main process left goes too
            _signal_group(dyno.process.pid, signal.SIGKILL)
        # Let the output readers drain what the process wrote before it exited; a process that
        # left the group (setsid) may hold the pipes open, so the wait is bounded.
        await asyncio.wait(dyno.readers, timeout=DRAIN_TIMEOUT)
        for task in dyno.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._dynos.pop(dyno.spec.key, None)
        if dyno.cgroup is not None and self._cgroups is not None:
            if self._cgroups.oom_killed(dyno.cgroup):
                self._events.dyno_oom_killed(dyno.spec.key)
            self._cgroups.remove(dyno.cgroup)
        self._unguard_port(dyno.guarded)  # no process of it is left to listen there
        dyno.exited.set()
        status = 128 - returncode if returncode < 0 else returncode
        self._events.dyno_exited(dyno.spec.key, status)

    async def _probe(self, dyno: _Dyno, port: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._boot_timeout
        while dyno.process.returncode is None:
            if await _answers(port, dyno.spec.health_path):
                if dyno.process.returncode is None:
                    self._events.dyno_up(dyno.spec.key)
                return
            if loop.time() > deadline:
                self._events.dyno_boot_timeout(dyno.spec.key)
                return
            await asyncio.sleep(PROBE_INTERVAL)

    def memory_used(self, key: str) -> int | None:
        dyno = self._dynos.get(key)
        if dyno is None:
            return None
        if dyno.cgroup is not None and self._cgroups is not None:
            return self._cgroups.memory_used(dyno.cgroup)
        return _tree_rss(dyno.process.pid)

    def kill(self, key: str) -> None:
        dyno = self._dynos.get(key)
        if dyno is not None:
            _signal_group(dyno.process.pid, signal.SIGKILL)

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


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def nice_for(size: DynoSize) -> int:
    """Without cgroups, a CPU share becomes a nice value: each step is about 1.25x weight,
    so a 2X dyno (share 2) sits three steps above a 1X; the largest size runs at nice 0."""
    largest = max(s.cpu_share for s in SIZES)
    return round(math.log(largest / size.cpu_share, 1.25))


def _child_setup(
    procs: tuple[Path, ...], niceness: int, user: DynoUser | None
) -> Callable[[], None]:
    def setup() -> None:
        _default_signals()
        cg.join(procs)
        as_workload(niceness)  # not the server's own, higher priority
        if user is not None:
            os.setgroups([])
            os.setgid(user.gid)
            os.setuid(user.uid)

    return setup


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


def _tree_rss(pid: int) -> int | None:
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


async def _answers(port: int, health_path: str | None) -> bool:
    """Whether the dyno accepts connections on ``port`` (and answers ``health_path`` with a
    2xx or 3xx status, when the app set one)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
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


async def _wait_group_gone(pgid: int, timeout: float) -> bool:
    """Wait until no live process is left in the group; False if ``timeout`` passed first."""
    deadline = asyncio.get_running_loop().time() + timeout
    while _group_alive(pgid):
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(GROUP_POLL)
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Something answered, maybe only zombies that init has not reaped yet: look closer.
    for process in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) == pgid:
                return True
    return False
