"""A dyno's reaper, where no cgroup holds its processes (the server is not root).

    python3 -I -S reaper.py PARENT_PID [--user UID:GID] [--env-fd FD] -- PROGRAM [ARGS...]

Run by the server as the first process of a dyno, it runs PROGRAM as its child and keeps
every process the dyno starts, however it detaches (``setsid``, a double fork): as a *child
subreaper* (prctl PR_SET_CHILD_SUBREAPER) it becomes the parent of each orphan below it
instead of init, so the dyno's processes are exactly the reaper's descendants, and it ends
them all when the dyno ends:

- PROGRAM exits: every other process of the dyno is killed (SIGKILL), as when a one-off's
  command returns; then the reaper exits with PROGRAM's status (or dies by its signal).
- SIGTERM (the server stops the dyno): every process gets SIGTERM; the reaper waits for all
  of them, PROGRAM included, to exit.
- SIGUSR1 (the grace period is over, an R15 kill, or the server died: it is the reaper's
  parent-death signal): every process is killed (SIGKILL), and the reaper exits.

PROGRAM gets SIGKILL if the reaper itself dies. SIGINT, SIGQUIT, SIGHUP and the job-control
signals, which a terminal sends to the whole process group, are for PROGRAM, not the reaper.

PROGRAM's environment comes through FD (a memfd: :func:`environment_file`), not the reaper's
own, which is empty: as root the reaper is root until its child drops to UID, and the dynamic
loader reads ``LD_PRELOAD``, ``LD_LIBRARY_PATH``, ``GLIBC_TUNABLES``... from the environment
of every program it starts; with the dyno's config vars as its environment, a config var
``LD_PRELOAD=./evil.so`` ran the app's code as root (``-I`` stops Python's variables, not
the loader's).

This file runs on its own (``-I -S``: no site-packages, no environment variables, nothing of
dynos imported, and as few modules as will do: contextlib or enum alone would cost a
millisecond), so that a dyno start costs little more than an interpreter's start (about 10 ms
in all, docs/performance.md).
"""

from __future__ import annotations

import ctypes
import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy knows by name, without typing's import
if TYPE_CHECKING:
    import signal
else:  # the C module: ``signal`` would import enum, a millisecond or two
    import _signal as signal

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
KILL_ALL = signal.SIGUSR1
FOR_THE_PROGRAM = (
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
)
# What the reaper sets differently from a fresh process; PROGRAM gets the defaults back.
RESET_IN_CHILD = (*FOR_THE_PROGRAM, signal.SIGTERM, KILL_ALL, signal.SIGPIPE, signal.SIGXFSZ)

_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0) != 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))


def _kill(pid: int, sig: int) -> None:
    try:  # noqa: SIM105 (not contextlib: its import alone would slow each dyno start)
        os.kill(pid, sig)
    except ProcessLookupError:  # gone meanwhile
        pass


def descendants(root: int) -> list[int]:
    """Every process below ``root``, from /proc (parents before their children)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as file:
                stat = file.read()
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found = []
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), ()):
            found.append(child)
            pending.append(child)
    return found


def environment_file(env: dict[str, str]) -> int:
    """In the server: ``env`` in a new memfd (read from its start), for ``--env-fd``. Raises
    ValueError for a NUL in a name or value or an ``=`` in a name, as exec itself would."""
    entries = []
    for name, value in env.items():
        entry = os.fsencode(name) + b"=" + os.fsencode(value)
        if b"\0" in entry or b"=" in os.fsencode(name) or not name:
            raise ValueError(f"illegal environment variable name or value: {name!r}")
        entries.append(entry)
    fd = os.memfd_create("dyno-environment", os.MFD_CLOEXEC)
    try:
        data = memoryview(b"\0".join(entries))
        while data:
            data = data[os.write(fd, data) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_environment(fd: int) -> dict[bytes, bytes]:
    """In the reaper: what :func:`environment_file` wrote, and the descriptor closed."""
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    env = {}
    for entry in b"".join(chunks).split(b"\0"):
        name, equals, value = entry.partition(b"=")
        if equals:
            env[name] = value
    return env


class Reaper:
    def __init__(
        self,
        argv: list[str],
        user: tuple[int, int] | None,
        env: dict[bytes, bytes] | None = None,
    ) -> None:
        self.argv = argv
        self.user = user
        self.env = env  # PROGRAM's (None: the reaper's own)
        self.program: int | None = None
        self.status: int | None = None  # PROGRAM's wait status, once it has exited
        self.stopping = False

    def run(self, parent: int) -> None:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        _prctl(PR_SET_PDEATHSIG, KILL_ALL)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(KILL_ALL, self._on_kill_all)
        for sig in FOR_THE_PROGRAM:
            signal.signal(sig, signal.SIG_IGN)
        if os.getppid() != parent:  # the server died before the parent-death signal was set
            sys.exit(1)
        reaper = os.getpid()
        self.program = os.fork()
        if self.program == 0:
            self._exec(reaper)
        while True:
            try:
                pid, status = os.wait()
            except ChildProcessError:  # nothing of the dyno is left
                break
            self._reaped(pid, status)
        self._exit_like_program()

    def _exec(self, reaper: int) -> None:
        """In the child: PROGRAM, with the signal dispositions of a fresh process."""
        try:
            for sig in RESET_IN_CHILD:
                signal.signal(sig, signal.SIG_DFL)
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != reaper:
                os._exit(137)
            if self.user is not None:
                os.setgroups([])
                os.setgid(self.user[1])
                os.setuid(self.user[0])
            if self.env is None:
                os.execvp(self.argv[0], self.argv)
            os.execvpe(self.argv[0], self.argv, self.env)  # PATH searched is PROGRAM's
        except OSError as exc:
            os.write(2, f"{self.argv[0]}: {exc.strerror}\n".encode())
        os._exit(127)

    def _reaped(self, pid: int, status: int) -> None:
        if pid != self.program:
            return
        self.status = status
        if not self.stopping:  # the dyno's command is done: so is everything it started
            self._kill_all()

    def _on_term(self, signum: int, frame: object) -> None:
        self.stopping = True
        for pid in descendants(os.getpid()):
            _kill(pid, signal.SIGTERM)

    def _on_kill_all(self, signum: int, frame: object) -> None:
        self.stopping = True
        self._kill_all()

    def _kill_all(self) -> None:
        """SIGKILL every descendant, until none is left (each one killed becomes this
        process's child when its parent dies first, and is reaped here)."""
        while True:
            pids = descendants(os.getpid())
            if not pids:
                return
            for pid in pids:
                _kill(pid, signal.SIGKILL)
            try:  # wait for one to die, then reap what else has, and look again
                pid, status = os.waitpid(-1, 0)
                while pid:
                    if pid == self.program:
                        self.status = status
                    pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return

    def _exit_like_program(self) -> None:
        status = self.status
        if status is None:
            sys.exit(1)
        if os.WIFSIGNALED(status):
            import resource  # only here: every import slows each dyno start

            sig = os.WTERMSIG(status)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # die by it, without a core
            try:  # noqa: SIM105 (as above)
                signal.signal(sig, signal.SIG_DFL)
            except OSError:  # SIGKILL has no disposition to set
                pass
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
            os.kill(os.getpid(), sig)
            os._exit(128 + sig)  # a signal whose default is not to terminate
        os._exit(os.waitstatus_to_exitcode(status))


def main(args: list[str]) -> None:
    parent = int(args[0])
    user = None
    rest = args[1:]
    env = None
    if rest[:1] == ["--user"]:
        uid, gid = rest[1].split(":")
        user = (int(uid), int(gid))
        rest = rest[2:]
    if rest[:1] == ["--env-fd"]:
        env = read_environment(int(rest[1]))
        rest = rest[2:]
    if rest[:1] != ["--"] or len(rest) < 2:
        sys.exit("usage: reaper.py PARENT_PID [--user UID:GID] [--env-fd FD] -- PROGRAM [ARGS...]")
    Reaper(rest[1:], user, env).run(parent)


if __name__ == "__main__":
    main(sys.argv[1:])
