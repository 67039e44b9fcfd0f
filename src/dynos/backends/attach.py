"""Attached one-off dynos: the plumbing between a dyno's stdio and its client.

``dynos run`` attaches the user's terminal to a one-off dyno: what they type (or pipe in) goes
to the process, its output comes back, and at the end its exit status. With a TTY the process
gets a pseudo-terminal as its controlling terminal, so ``bash`` and ``python`` are interactive
and ^C reaches it as SIGINT through the line discipline; without one it gets three pipes, and
stdout and stderr stay apart.

A :class:`Terminal` is made by the manager when the client connects and travels to the backend
in the :class:`~dynos.backends.base.DynoSpec`. The backend spawns the process with the
terminal's :meth:`~Terminal.child_stdio` and :meth:`~Terminal.child_setup`, then calls
:meth:`~Terminal.connect`; the manager calls :meth:`~Terminal.finish` with the exit status.
The client's side is the API's WebSocket bridge (api/one_off.py) or the rendezvous listener
(api/rendezvous.py): :meth:`~Terminal.output`, :meth:`~Terminal.write`,
:meth:`~Terminal.resize`, :meth:`~Terminal.close_input`, :meth:`~Terminal.exit_status`.
Everything runs on the event loop's thread; file descriptors are non-blocking and polled with
``add_reader``/``add_writer``, which both asyncio's loop and uvloop support for ptys and pipes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import pty
import signal
import struct
import termios
from collections.abc import AsyncIterator, Callable
from typing import Any

STDOUT = 1  # the channel byte of an output chunk, as the WebSocket bridge frames it
STDERR = 2
READ_SIZE = 64 * 1024
MAX_WINDOW = 9999  # columns or rows a client's terminal may have; more is taken as this
OUTPUT_BACKLOG = 64  # chunks held for a slow client before the process is made to wait


class Terminal:
    """The client's end of one attached dyno. Create it inside the running event loop."""

    def __init__(self, *, tty: bool, cols: int = 80, rows: int = 24) -> None:
        self.tty = tty
        self._size = window(cols, rows)
        self._queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue(OUTPUT_BACKLOG)
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._input: int | None = None  # where write() goes: the pty master or stdin's pipe
        self._outputs: list[tuple[int, int]] = []  # (fd, channel) read by connect()'s tasks
        self._child: list[int] = []  # the child's ends, closed here once it has them
        self._pid: int | None = None
        self._hung_up = False
        self._waits: dict[asyncio.Future[None], tuple[int, Callable[[int], object]]] = {}

    # -- the backend's side --------------------------------------------------------------

    def child_stdio(self) -> tuple[int, int, int]:
        """Open the pty (or the pipes) and return the child's stdin, stdout and stderr fds."""
        if self.tty:
            master, slave = pty.openpty()
            _set_window_size(slave, *self._size)
            os.set_blocking(master, False)
            self._input = master
            self._outputs = [(master, STDOUT)]
            self._child = [slave]
            return slave, slave, slave
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        for fd in (stdin_w, stdout_r, stderr_r):
            os.set_blocking(fd, False)
        self._input = stdin_w
        self._outputs = [(stdout_r, STDOUT), (stderr_r, STDERR)]
        self._child = [stdin_r, stdout_w, stderr_w]
        return stdin_r, stdout_w, stderr_w

    def child_setup(self, then: Callable[[], None]) -> Callable[[], None]:
        """The child's setup between fork and exec: ``then``, after (with a TTY) making the
        pty the controlling terminal of the dyno's new session."""
        if not self.tty:
            return then
        slave = self._child[0]

        def setup() -> None:
            # CPython's subprocess has already called setsid() here; uvloop calls it later
            # (and tolerates that it was done): either way the child leads its own session.
            if os.getsid(0) != os.getpid():
                os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            then()

        return setup

    def connect(self, pid: int) -> list[asyncio.Task[None]]:
        """The process ``pid`` runs: close the child's ends here and read its output.

        Returns the reader tasks; each ends when its stream does (the pty's when every
        process holding it has exited).
        """
        self._pid = pid
        self._close_child_ends()
        return [asyncio.create_task(self._read(fd, channel)) for fd, channel in self._outputs]

    def finish(self, status: int) -> None:
        """The process exited with ``status``: stop polling, close every fd, tell the client."""
        self._close_child_ends()
        # Unregister from the loop before closing, so that no callback outlives its fd.
        for future, (waited, remove) in self._waits.items():
            remove(waited)
            if not future.done():
                future.set_result(None)
        self._waits.clear()
        for fd in {self._input, *(fd for fd, _ in self._outputs)}:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._input = None
        self._outputs = []
        if not self._exit.done():
            self._exit.set_result(status)

    def _close_child_ends(self) -> None:
        for fd in set(self._child):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._child = []

    async def _read(self, fd: int, channel: int) -> None:
        loop = asyncio.get_running_loop()
        while not self._exit.done():
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                await self._ready(fd, loop.add_reader, loop.remove_reader)
                continue
            except OSError as exc:
                if exc.errno != errno.EIO:  # EIO: the last holder of the pty's slave is gone
                    raise
                data = b""
            if not data:
                return
            if not self._hung_up:
                await self._queue.put((channel, data))

    async def _ready(
        self,
        fd: int,
        add: Callable[[int, Callable[[], None]], object],
        remove: Callable[[int], object],
    ) -> None:
        """Wait until ``fd`` is readable (``add_reader``) or writable (``add_writer``), or the
        process is finished."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        add(fd, wake)
        self._waits[future] = (fd, remove)
        try:
            await future
        finally:
            if self._waits.pop(future, None) is not None:
                remove(fd)

    # -- the client's side --------------------------------------------------------------------

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """``(channel, bytes)`` chunks as the process writes them, until it has exited and
        everything it wrote has been handed out."""
        while not (self._exit.done() and self._queue.empty()):
            getter = asyncio.ensure_future(self._queue.get())
            either: set[asyncio.Future[Any]] = {getter, self._exit}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result()
            else:  # exited: what is still queued comes out on the next turns
                getter.cancel()

    @property
    def exited(self) -> bool:
        """Whether the process has exited (its status is known)."""
        return self._exit.done()

    async def exit_status(self) -> int:
        """The exit code, or 128 + the signal number that ended the process."""
        return await self._exit

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the process's stdin (keystrokes, with a TTY); dropped once the
        process has exited or closed its input."""
        loop = asyncio.get_running_loop()
        while data and self._input is not None:
            fd = self._input
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                await self._ready(fd, loop.add_writer, loop.remove_writer)
                continue
            except OSError:  # EPIPE or EIO: nobody reads its input any more
                return
            data = data[written:]

    def close_input(self) -> None:
        """The client's input ended: EOF on the pipe, or ^D on the terminal."""
        if self._input is None:
            return
        if self.tty:
            with contextlib.suppress(OSError):
                os.write(self._input, b"\x04")
            return
        with contextlib.suppress(OSError):
            os.close(self._input)
        self._input = None

    def resize(self, cols: int, rows: int) -> None:
        """The client's window changed: the process gets SIGWINCH (TTY only). Sizes out of
        1..MAX_WINDOW are taken as the nearest that is in it."""
        self._size = window(cols, rows)
        if self.tty and self._input is not None:
            with contextlib.suppress(OSError):
                _set_window_size(self._input, *self._size)

    def hang_up(self) -> None:
        """The client went away: drop further output and send SIGHUP to the dyno's group."""
        self._hung_up = True
        while not self._queue.empty():  # unblock a reader waiting for room
            self._queue.get_nowait()
        if self._pid is not None and not self._exit.done():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pid, signal.SIGHUP)


def _set_window_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def window(cols: int, rows: int) -> tuple[int, int]:
    """A client's window size within 1..MAX_WINDOW each way: the kernel's winsize holds
    16-bit numbers (struct.pack raises past them), and no real terminal is wider."""
    return min(max(1, cols), MAX_WINDOW), min(max(1, rows), MAX_WINDOW)
