"""How a drain's batches reach its receiver: an HTTP(S) POST in Heroku's logplex format, or
octet-counted frames written on a syslog TCP (or TLS) connection.

Both connect only to an address :func:`dynos.core.drains.refused_address` lets through: the
drain's host is resolved before each new connection and every address it has is checked, and
the connection goes to the checked address (TLS still checks the certificate against the
host's name), so a name cannot be switched to a loopback address, or one of this machine's
own, between the check and the connection. TLS trusts the system's CAs and the platform's
own CA (an app of this platform can be a drain, where --drains-allow-loopback lets a drain
reach this machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from pathlib import Path
from typing import Protocol

import psutil

from dynos import __version__
from dynos.core.drains import Address, DrainTarget, refused_address

USER_AGENT = f"dynos-logplex/{__version__}"


class DeliveryFailed(Exception):
    """A batch did not reach the drain; the message says why, for the server's log."""


class Transport(Protocol):
    async def send(self, frame_id: str, count: int, body: bytes) -> None:
        """Deliver one batch (``count`` frames in ``body``) or raise DeliveryFailed."""

    async def close(self) -> None: ...


def drain_tls(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None and ca_file.exists():
        context.load_verify_locations(cafile=str(ca_file))
    return context


def own_addresses() -> frozenset[Address]:
    """This machine's interface addresses now (an interface may come up or change after the
    drain was added): a drain may not reach them (core/drains.py)."""
    found: set[Address] = set()
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(ValueError):  # fe80::1%eth0: the zone is not needed
                    found.add(ipaddress.ip_address(entry.address.split("%")[0]))
    return frozenset(found)


async def checked_address(target: DrainTarget, *, allow_loopback: bool) -> Address:
    """The first address of the drain's host, once every one of them is allowed."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise DeliveryFailed(f"cannot resolve {target.host}: {exc}") from exc
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise DeliveryFailed(f"{target.host} has no address")
    own = own_addresses()
    for address in addresses:
        reason = refused_address(address, allow_loopback=allow_loopback, own=own)
        if reason is not None:
            raise DeliveryFailed(f"{target.host} resolves to {reason}")
    return addresses[0]


class HttpTransport:
    """POSTs to an ``http(s)://`` drain, on a kept-alive connection."""

    def __init__(
        self, target: DrainTarget, token: str, tls: ssl.SSLContext, *, allow_loopback: bool
    ) -> None:
        self._target = target
        self._token = token
        self._allow_loopback = allow_loopback
        # httpx (0.05-0.1 s of imports) is loaded by the first HTTP drain, not at every start.
        import httpx

        auth = None
        if target.username is not None:
            auth = httpx.BasicAuth(target.username, target.password or "")
        # No redirects: a drain's receiver answers its POSTs, it does not send them elsewhere
        # (where the address check would not have been).
        self._client = httpx.AsyncClient(
            verify=tls, auth=auth, follow_redirects=False, trust_env=False
        )
        self._address: Address | None = None

    async def send(self, frame_id: str, count: int, body: bytes) -> None:
        target = self._target
        if self._address is None:
            self._address = await checked_address(target, allow_loopback=self._allow_loopback)
        literal = str(self._address)
        netloc = f"[{literal}]" if self._address.version == 6 else literal
        default = 443 if target.scheme == "https" else 80
        host = f"[{target.host}]" if ":" in target.host else target.host
        headers = {
            "Host": host if target.port == default else f"{host}:{target.port}",
            "Content-Type": "application/logplex-1",
            "Logplex-Msg-Count": str(count),
            "Logplex-Frame-Id": frame_id,
            "Logplex-Drain-Token": self._token,
            "User-Agent": USER_AGENT,
        }
        url = f"{target.scheme}://{netloc}:{target.port}{target.target}"
        import httpx

        try:
            response = await self._client.post(
                url, content=body, headers=headers, extensions={"sni_hostname": target.host}
            )
        except httpx.HTTPError as exc:
            self._address = None  # resolve again: the receiver may have moved
            raise DeliveryFailed(f"POST to {target.host}:{target.port}: {exc!r}") from exc
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(f"the drain answered {response.status_code}")

    async def close(self) -> None:
        await self._client.aclose()


class SyslogTransport:
    """Frames on one ``syslog://`` or ``syslog+tls://`` connection, opened again when lost.

    Syslog over TCP has no acknowledgement: a batch counts as delivered once written, and what
    the kernel had taken when the receiver went away is lost with the connection.
    """

    def __init__(self, target: DrainTarget, tls: ssl.SSLContext, *, allow_loopback: bool) -> None:
        self._target = target
        self._tls = tls if target.tls else None
        self._allow_loopback = allow_loopback
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> asyncio.StreamWriter:
        target = self._target
        address = await checked_address(target, allow_loopback=self._allow_loopback)
        try:
            reader, writer = await asyncio.open_connection(
                str(address),
                target.port,
                ssl=self._tls,
                server_hostname=target.host if self._tls else None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryFailed(f"connect to {target.host}:{target.port}: {exc!r}") from exc
        self._reader, self._writer = reader, writer
        return writer

    async def send(self, frame_id: str, count: int, body: bytes) -> None:
        writer = self._writer
        # A receiver that went away has sent its FIN by now: a new connection, rather than a
        # write into a socket that is closing.
        if writer is None or writer.is_closing() or (self._reader and self._reader.at_eof()):
            await self.close()
            writer = await self._connect()
        try:
            writer.write(body)
            await writer.drain()
        except (OSError, ssl.SSLError) as exc:
            await self.close()
            raise DeliveryFailed(f"write to {self._target.host}: {exc!r}") from exc

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 2)
