"""Log drain receivers on loopback, for tests and benches: an HTTP(S) receiver of logplex
POSTs and a syslog (TCP or TLS) receiver of octet-counted frames. Each runs its own event
loop in a thread, so that a synchronous test (or one whose loop the server shares) can use it.

The HTTP receiver answers as ``mode`` says: ``ok`` (204), ``fail`` (503) or ``hang`` (reads
the request, never answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dynos.core.drain_frames import read_frames


@dataclass
class Post:
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int  # what the receiver answered (0: nothing)

    @property
    def messages(self) -> list[bytes]:
        messages, rest = read_frames(self.body)
        assert rest == b"", f"a partial frame at the end of the body: {rest[:60]!r}"
        return messages


@dataclass
class _Receiver:
    tls: ssl.SSLContext | None = None
    port: int = 0
    host: str = "127.0.0.1"
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.Server | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            self._server = loop.run_until_complete(
                asyncio.start_server(self._accept, self.host, self.port, ssl=self.tls)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10), "the receiver did not start"

    def stop(self) -> None:
        """Close the listening socket and every connection (the drain sees it go away)."""
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def close() -> None:
            # Closing each connection ends its handler (a read sees the end, a hung answer
            # its closing event): nothing is cancelled in the middle of a stream call.
            server.close()
            self._closing.set()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for writer in list(self._writers):
                writer.transport.abort()  # at once, TLS too (no close_notify exchange)
            if tasks:
                await asyncio.wait(tasks, timeout=5)

        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop = self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def wait(self, condition: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what or 'the drain receiver'}")


@dataclass
class HttpReceiver(_Receiver):
    mode: str = "ok"
    posts: list[Post] = field(default_factory=list)
    keep: bool = True  # False: count the messages delivered, keep no post (a bench)
    received: int = 0  # messages in the posts answered 204

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ssl.SSLError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                mode = self.mode
                status = {"ok": 204, "fail": 503}.get(mode, 0)
                with self._lock:
                    if self.keep:
                        self.posts.append(Post(headers, body, status))
                    if status == 204 and self.keep:
                        self.received += len(read_frames(body)[0])
                    elif status == 204:  # a bench: the sender's count, not a parse of each
                        self.received += int(headers.get("logplex-msg-count", "0"))
                if mode == "hang":
                    await self._closing.wait()
                    return
                reason = "No Content" if status == 204 else "Service Unavailable"
                writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n".encode())
                await writer.drain()

    def delivered(self) -> list[Post]:
        with self._lock:
            return [p for p in self.posts if p.status == 204]

    def messages(self) -> list[bytes]:
        return [m for post in self.delivered() for m in post.messages]


@dataclass
class SyslogReceiver(_Receiver):
    data: bytearray = field(default_factory=bytearray)
    connections: int = 0
    keep: bool = True  # False: count the frames, keep no byte (a bench)
    received: int = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
        rest = b""
        with contextlib.suppress(OSError, ssl.SSLError):
            while chunk := await reader.read(65536):
                messages, rest = read_frames(rest + chunk)
                with self._lock:
                    self.received += len(messages)
                    if self.keep:
                        self.data += chunk

    def messages(self) -> list[bytes]:
        with self._lock:
            messages, _rest = read_frames(bytes(self.data))
        return messages
