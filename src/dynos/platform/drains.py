"""Log drains: an app's list of them (``drains``, ``drains:add``, ``drains:remove``) and the
senders that deliver its lines to each (platform/drain_sender.py).

A drain's URL is checked by core/drains.py when it is added; its host's addresses again
before each connection (platform/drain_transports.py). :meth:`Drains.sync` makes the running
senders match the store: at start, after an add or remove, and when an app is renamed (the
log hub knows apps by name) or destroyed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from dynos.core.drain_queue import DeliveryRules
from dynos.core.drains import DrainTarget, check_target, parse_drain_url, pick_drain
from dynos.errors import UserError
from dynos.platform.context import Services, api_log
from dynos.platform.drain_sender import DrainSender, stop
from dynos.platform.drain_transports import (
    HttpTransport,
    SyslogTransport,
    Transport,
    drain_tls,
    own_addresses,
)
from dynos.store.database import Database
from dynos.store.drains import LogDrain
from dynos.store.models import App

log = logging.getLogger(__name__)


@dataclass
class _Running:
    app_name: str
    sender: DrainSender
    task: asyncio.Task[None]


class Drains:
    def __init__(self, services: Services) -> None:
        self._services = services
        # Set by server.py from its configuration before start().
        self.allow_loopback = False
        self.ca_file: Path | None = None  # the platform CA, trusted besides the system's
        self.rules = DeliveryRules()
        self._running: dict[str, _Running] = {}
        self._lock = asyncio.Lock()

    # -- use-cases -----------------------------------------------------------------------------

    async def list(self, app: App) -> list[LogDrain]:
        return await self._services.store.call(lambda db: db.log_drains(app.id))

    async def get(self, app: App, query: str) -> LogDrain:
        drains = await self.list(app)
        return pick_drain(drains, query, [(d.id, d.url, d.token) for d in drains])

    async def add(self, app: App, url: object) -> LogDrain:
        target = parse_drain_url(url)
        check_target(target, allow_loopback=self.allow_loopback, own=own_addresses())
        token = f"d.{uuid.uuid4()}"
        drain = await self._services.store.transaction(
            lambda db: db.add_log_drain(app.id, target.url, token)
        )
        api_log(self._services, app, f"Add drain {shown(target.url)}")
        await self.sync()
        return drain

    async def remove(self, app: App, query: str) -> LogDrain:
        drain = await self.get(app, query)
        await self._services.store.transaction(lambda db: db.delete_log_drain(drain.id))
        api_log(self._services, app, f"Remove drain {shown(drain.url)}")
        await self.sync()
        return drain

    # -- the senders ---------------------------------------------------------------------------

    def sender(self, drain_id: str) -> DrainSender | None:
        running = self._running.get(drain_id)
        return running.sender if running else None

    async def sync(self) -> None:
        """Run a sender for each drain in the store, on its app's current name; stop the
        others."""
        drains = await self._services.store.call(Database.log_drains)
        async with self._lock:
            wanted = {d.id: d for d in drains}
            hub = self._services.logs
            for drain_id in list(self._running):
                running = self._running[drain_id]
                drain = wanted.get(drain_id)
                if drain is None:
                    hub.remove_sink(running.app_name, running.sender.offer)
                    del self._running[drain_id]
                    await stop(running.task)
                elif drain.app_name != running.app_name:
                    hub.remove_sink(running.app_name, running.sender.offer)
                    hub.add_sink(drain.app_name, running.sender.offer)
                    running.app_name = drain.app_name
            for drain in drains:
                if drain.id not in self._running:
                    self._start(drain)

    def _start(self, drain: LogDrain) -> None:
        try:
            target = parse_drain_url(drain.url)
        except UserError:  # a URL stored before its rules changed
            log.warning("drain %s of app %s: its URL is no longer valid", drain.id, drain.app_name)
            return
        sender = DrainSender(
            drain.id, drain.token, target, self._transport(target, drain), self.rules
        )
        task = asyncio.create_task(sender.run(), name=f"drain {drain.id}")
        self._running[drain.id] = _Running(drain.app_name, sender, task)
        self._services.logs.add_sink(drain.app_name, sender.offer)

    def _transport(self, target: DrainTarget, drain: LogDrain) -> Transport:
        tls = drain_tls(self.ca_file)
        if target.http:
            return HttpTransport(target, drain.token, tls, allow_loopback=self.allow_loopback)
        return SyslogTransport(target, tls, allow_loopback=self.allow_loopback)

    async def close(self) -> None:
        """Stop every sender (what they hold is not sent: the server is stopping)."""
        async with self._lock:
            for running in self._running.values():
                self._services.logs.remove_sink(running.app_name, running.sender.offer)
                await stop(running.task)
            self._running.clear()


def shown(url: str) -> str:
    """The URL as logs show it: without a password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
