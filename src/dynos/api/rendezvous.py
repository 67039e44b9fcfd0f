"""The rendezvous listener: where ``heroku run`` attaches to a one-off dyno over TLS.

The API's ``attach_url`` for an attached dyno is ``rendezvous://HOST:PORT/...`` (core/rendezvous.py
has the protocol); this listens on that port (``--rendezvous-port``), a port of its own rather
than a first-bytes sniff on the router's HTTPS port: after the handshake an attach line and an
HTTP request look alike only once read, and the router's hot path should not read for it.

One connection: the TLS handshake (the certificate signed by the platform CA, so a client
that trusts the CA, ``NODE_EXTRA_CA_CERTS`` for the heroku CLI, verifies it); the attach line
within :data:`~dynos.core.rendezvous.SECRET_TIMEOUT`; the dyno starts (``platform.dynos.attach``:
its token checked in constant time, usable once); then its terminal is relayed both ways until
it exits, when its exit status goes out as the CLI's marker and the connection closes. A
client that leaves first ends its dyno (SIGHUP, then SIGTERM), as the WebSocket's do. A line
that is not an attach line, or names no dyno waiting for this client, is told so in one line
and the connection closes; nothing starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from pathlib import Path

import psutil

from dynos.core.rendezvous import (
    END_OF_INPUT,
    GREETING,
    SECRET_TIMEOUT,
    AttachLine,
    BadAttachLine,
    exit_marker,
    read_attach_line,
    refusal,
    split_input,
)
from dynos.errors import DynosError, UserError
from dynos.platform import tls_files
from dynos.platform.dynos import Attached
from dynos.platform.platform import Platform

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
HANDSHAKE_TIMEOUT = 10.0  # seconds for a client's TLS handshake
CLOSE_TIMEOUT = 5.0  # seconds to wait for a client's close_notify before dropping it
# Seconds to wait, after the exit status, for the client's end of input or its close. A CLI
# either sends ^D (stdin not a terminal) or exits and closes on the status, so this bounds
# only a client that does neither; one second was too short for a Node CLI on a loaded
# machine (its ^D came later, our close made its write fail: EPIPE, exit 1 instead of 4).
INPUT_LINGER = 10.0
# One message for every attach line that names no dyno waiting for this client: whether the
# dyno exists, or was attached already, is nobody's business without its secret.
REFUSED = "This attach_url is wrong or was used already: run the command again for a new dyno."


def server_context(chain: Path, key: Path) -> ssl.SSLContext:
    """The listener's TLS: TLS 1.2 or later, the certificate chain and key in these files."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(chain, key)
    return context


def certificate_hosts(api_host: str, domain: str) -> list[str]:
    """The names the listener's certificate covers: wherever a client may have reached the
    API (the attach_url takes that host): loopback, the API's own address (every address of
    this machine when it listens on all), the platform's domain and this machine's name."""
    hosts = ["localhost", "127.0.0.1", "::1", domain, socket.gethostname()]
    if api_host in ("0.0.0.0", "::", ""):
        families = (socket.AF_INET, socket.AF_INET6)
        for addresses in psutil.net_if_addrs().values():
            hosts += [a.address for a in addresses if a.family in families and "%" not in a.address]
    else:
        hosts.append(api_host)
    return list(dict.fromkeys(h.lower() for h in hosts if h))


def rendezvous_context(tls_dir: Path, hosts: list[str]) -> ssl.SSLContext:
    """A certificate for ``hosts`` from the platform CA (made on first start), issued anew
    at each start (the hosts may have changed; a key costs a millisecond), written under the
    CA's directory (``rendezvous/``, 0700: ``cert.pem``, ``key.pem`` 0600), and the context
    that serves it."""
    authority = tls_files.ensure_ca(tls_dir)
    directory = tls_dir / "rendezvous"
    directory.mkdir(mode=0o700, exist_ok=True)
    directory.chmod(0o700)
    chain, key = tls_files.issue(authority, hosts)
    chain_path, key_path = directory / "cert.pem", directory / "key.pem"
    tls_files.write_private(key_path, key)
    tls_files.write_private(chain_path, chain, 0o644)
    return server_context(chain_path, key_path)


class RendezvousListener:
    """Accepts ``heroku run`` clients on a bound socket and relays each to its dyno."""

    def __init__(self, platform: Platform, context: ssl.SSLContext) -> None:
        self._platform = platform
        self._context = context
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    async def start(self, sock: socket.socket) -> int:
        """Listen on ``sock`` (bound, listening); return its port."""
        self._server = await asyncio.start_server(
            self._accept, sock=sock, ssl=self._context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT
        )
        return int(sock.getsockname()[1])

    def stop_accepting(self) -> None:
        """No new client (the server is stopping); the sessions go on until their dynos stop."""
        if self._server is not None:
            self._server.close()

    async def close(self, grace: float = 0.0) -> None:
        """Stop accepting; give the sessions ``grace`` seconds to end (once the manager has
        stopped their dynos, each sends its exit status: the CLI exits with 143, not 0, when
        the server stops under it), then cut the rest."""
        self.stop_accepting()
        if self._sessions and grace > 0:
            await asyncio.wait(set(self._sessions), timeout=grace)
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await self._session(reader, writer)
        except Exception:  # a bug of ours: said once, and this client cut, the server serves on
            log.exception("rendezvous session failed")
        finally:
            self._sessions.discard(task)
            await _close(writer)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line, early = await asyncio.wait_for(_attach_line(reader), SECRET_TIMEOUT)
        except BadAttachLine as exc:
            await _refuse(writer, str(exc))
            return
        except (TimeoutError, OSError, ssl.SSLError, asyncio.IncompleteReadError):
            return  # silent, slow or gone before it said anything: nothing to answer
        try:
            attached = await self._attach(line)
        except DynosError as exc:
            log.info("rendezvous: refused %s of app %s: %s", line.dyno, line.app_id, exc.message)
            # The client's mistake, whichever: REFUSED; the platform's failure says what it was.
            await _refuse(writer, REFUSED if isinstance(exc, UserError) else exc.message)
            return
        await _relay(reader, writer, attached, early)

    async def _attach(self, line: AttachLine) -> Attached:
        app = await self._platform.get_app(line.app_id)
        return await self._platform.dynos.attach(app, line.dyno, line.token)


async def _attach_line(reader: asyncio.StreamReader) -> tuple[AttachLine, bytes]:
    """The attach line, and what the client sent after it; BadAttachLine, or
    IncompleteReadError when the client closed first."""
    buffer = b""
    while True:
        line, rest = read_attach_line(buffer)
        if line is not None:
            return line, rest
        data = await reader.read(READ_SIZE)
        if not data:
            raise asyncio.IncompleteReadError(buffer, None)
        buffer += data


async def _refuse(writer: asyncio.StreamWriter, message: str) -> None:
    """Say why, as the CLI shows it: the greeting it drops, the line, exit status 1."""
    with contextlib.suppress(OSError, ssl.SSLError):
        for part in (GREETING, refusal(message), exit_marker(1)):
            writer.write(part)  # each its own TLS record: the CLI drops its first chunk whole
            await writer.drain()


async def _relay(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, attached: Attached, early: bytes
) -> None:
    """The dyno's output to the client, the client's input to the dyno, until the dyno
    exits (its status then goes out) or the client leaves (the dyno is hung up)."""
    terminal = attached.terminal
    input_ended = asyncio.Event()
    incoming = asyncio.create_task(_client_to_dyno(reader, attached, early, input_ended))
    try:
        # Alone and first: the CLI drops the whole first chunk it reads, and starts sending
        # the user's input only once it has.
        writer.write(GREETING)
        await writer.drain()
        async for _channel, data in terminal.output():  # a pty's, or stdout and stderr merged
            writer.write(data)
            await writer.drain()
        writer.write(exit_marker(await terminal.exit_status()))
        await writer.drain()
        # A CLI whose stdin is not a terminal sends ^D when its stdin ends, which may come
        # after a quick command has exited: closed before that, its write fails (EPIPE) and
        # it dies with a stack trace instead of exiting with the status. So the close waits
        # for the client's ^D or its own close, briefly (an interactive one sends neither).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(input_ended.wait(), INPUT_LINGER)
    except (OSError, ssl.SSLError):  # the client left while output was going out
        attached.hang_up()
    finally:
        incoming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await incoming


async def _client_to_dyno(
    reader: asyncio.StreamReader, attached: Attached, data: bytes, input_ended: asyncio.Event
) -> None:
    """Write what the client sends to the dyno, until its input ends (a pipe's ^D: what
    follows is dropped); set ``input_ended`` at a ^D (with a tty it may be the CLI's last
    byte, or a keystroke: later ones still go) or when the client closes."""
    terminal = attached.terminal
    pipe_closed = False
    while True:
        if data and not pipe_closed:
            chunk, pipe_closed = split_input(data, terminal.tty)
            await terminal.write(chunk)
            if pipe_closed:
                terminal.close_input()
        if END_OF_INPUT in data:
            input_ended.set()
        try:
            data = await reader.read(READ_SIZE)
        except (OSError, ssl.SSLError):
            data = b""
        if not data:  # the client closed (or its connection broke): end its dyno
            input_ended.set()
            attached.hang_up()
            return


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
