"""The swarm backend's tenant isolation, its engine calls: each app's overlay network, and
the guard, a global service whose task on every node keeps the firewall rules of
``core/swarm_guard.py`` in place; the node labels that admit dynos where it runs; its
teardown at close (blocking calls run in the backend's threads)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import docker
from docker import DockerClient

from dynos.backends import container_cgroups, registry
from dynos.backends.swarm_engine import Nodes, guard_service_body, router_address
from dynos.backends.swarm_networks import ensure_network, remove_networks
from dynos.core.guard_labels import (
    LAYOUT_LABEL,
    TEARDOWN,
    admits,
    first_generation,
    left_with_rules,
    overdue,
    unguarded,
    update_order,
)
from dynos.core.swarm import TEMPLATE_LABEL, TaskView, task_view
from dynos.core.swarm_guard import (
    chain_names,
    guard_health,
    guard_label,
    guard_script,
    guard_service_name,
    rules_layout,
    teardown_health,
    teardown_script,
)
from dynos.errors import PlatformError

log = logging.getLogger("dynos")
SETTLE_TIMEOUT = 60.0  # seconds the first start waits for the guard on every ready node
TEARDOWN_TIMEOUT = 30.0  # seconds the close waits for every node's rules to be removed
UNGUARDED_GRACE = 30.0  # seconds a labelled node may be without a running guard task


def _stopping() -> PlatformError:
    return PlatformError(
        "The swarm guard is being removed (the server is stopping): start the dyno again "
        "once the server runs."
    )


def _settled(task: asyncio.Task[None]) -> bool:
    """Whether a settling ended well (its failure read, so never reported as unread)."""
    return not task.cancelled() and task.exception() is None


class SwarmGuard:
    """The guard's service (one per server, labelled with it) and the apps' networks."""

    def __init__(
        self,
        client: DockerClient,
        server: str,
        stack_image: str,
        registry: str,
        call: Callable[..., Awaitable[Any]],  # runs a blocking call in the backend's threads
    ) -> None:
        self._call = call
        self._lock = asyncio.Lock()
        self._marking = asyncio.Lock()  # a node's label: its check and its change at once
        self._covered: frozenset[str] | None = None  # the node addresses the guard knows
        self._service: str | None = None  # the guard service's id
        self._labelled: set[str] = set()  # nodes known to carry guard_label
        # Nodes found down, unlabelled: each gets its label back from a guard task of the
        # generation (the tasks' template label) made after it came back (None: not yet).
        self._returning: dict[str, int | None] = {}
        self._generation = first_generation()  # unique across the server's restarts
        self._closing = False  # the teardown began: no label is put on any more
        self._unguarded: dict[str, float] = {}  # labelled nodes without a guard task, since
        self._client = client
        self._api: Any = client.api
        self._server = server
        self._stack_image = stack_image
        self._registry = registry
        self._image: str | None = None  # the stack image, pushed: every node pulls it
        self._applied: tuple[str, int] | None = None  # the script and generation it runs
        self._settling: asyncio.Task[None] | None = None  # the wait for the nodes' labels
        self.router = router_address(client)
        # Told the nodes' addresses whenever they change (the add-on servers let them in).
        self.on_nodes: Callable[[list[str]], None] = lambda nodes: None

    async def cover(self, nodes: Nodes, wait: bool = True) -> None:
        """The guard on every node, knowing every node's address (a node joined or changed
        its address: the guard's service is updated, its tasks replaced). With ``wait`` (a
        start, whose service needs the labels), until the ready nodes are labelled: outside
        the lock, so that the wait (up to SETTLE_TIMEOUT) holds up no node's relabelling and
        no close; every start waits for the same settling, as it waited for the lock."""
        addresses = frozenset(address for _, address, _ in nodes.values())
        async with self._lock:
            if self._closing:
                raise _stopping()
            settling = self._settling
            failed = settling is not None and settling.done() and not _settled(settling)
            if addresses != self._covered or failed:
                # The firewall first: it does not depend on the guard's update, which may fail.
                self.on_nodes(sorted(a for a in addresses if a))
                await self._call(self.ensure, sorted(addresses))
                self._covered = addresses
                ready = [node for node, (_, _, down) in nodes.items() if not down]
                if settling is not None:
                    settling.cancel()  # the waits move on to the new one (_wait_settled)
                self._settling = asyncio.create_task(self._settle(ready))
                self._settling.add_done_callback(_settled)
        if wait:
            await self._wait_settled()

    async def _wait_settled(self) -> None:
        """Until the current settling ends: a settling replaced meanwhile (a node joined)
        was cancelled, and the wait goes on with its successor."""
        while (settling := self._settling) is not None:
            try:
                await asyncio.shield(settling)
                return
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not settling.cancelled() or (current is not None and current.cancelling()):
                    raise
                if self._closing or self._settling is settling:
                    raise _stopping() from None

    async def _settle(self, node_ids: Sequence[str]) -> None:
        """Swarm leaves a task pending for good when no node met its constraint as it was
        made (a label added later does not place it; seen with 20.10): the dynos' services
        are made once the guard runs on the ready nodes and they carry its label. After
        SETTLE_TIMEOUT the nodes still without it take no dynos, and the server says so."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_TIMEOUT
        while True:
            found = await self._call(
                self._api.tasks, filters={"service": self._service, "desired-state": "running"}
            )
            await self._label_running([task_view(task) for task in found])
            missing = set(node_ids) - self._labelled
            if not missing:
                return
            if loop.time() > deadline:
                log.warning("swarm guard: not running on node(s) %s: no dynos there", missing)
                return
            await asyncio.sleep(0.5)

    async def observe(self, tasks: Mapping[str, Sequence[TaskView]], nodes: Nodes) -> None:
        """After each read of the cluster: the guard learns a node that joined, a node found
        down loses its label, and a node its task runs on is labelled, so that dynos may be
        placed there."""
        with contextlib.suppress(docker.errors.DockerException, PlatformError):
            await self.cover(nodes, wait=False)
            await self._watch(nodes)
            guards = tasks.get(self._service or "", [])
            now = asyncio.get_running_loop().time()
            missing = unguarded(self._labelled & set(nodes), guards)
            self._unguarded, late = overdue(self._unguarded, missing, now, UNGUARDED_GRACE)
            for node in late:
                await self._unlabel_unguarded(node)
            await self._label_running(guards)

    async def _unlabel_unguarded(self, node: str) -> None:
        """A labelled node where no guard task has run for UNGUARDED_GRACE (its health check
        fails: its rules are not whole) loses its label until one does (``_label_running``),
        as read again under the lock: a read from before its task was healthy is no reason."""
        async with self._marking:
            if node not in self._labelled or self._closing:
                return
            found = await self._call(
                self._api.tasks,
                filters={"service": self._service, "node": node, "desired-state": "running"},
            )
            if unguarded([node], [task_view(task) for task in found]):
                await self._mark(node, False)
                self._labelled.discard(node)

    async def _watch(self, nodes: Nodes) -> None:
        """A node found down (its engine gone, its heartbeats stopped) loses its label at
        once: it may come back rebooted, its kernel's rules gone, and Swarm would place
        dynos there as soon as it is ready, before its guard's task has loaded them. When it
        is back, the guard's tasks are replaced (a new generation, start-first: the other
        nodes stay guarded), and the node is labelled again only once a task of that
        generation runs there: healthy, so its rules are whole. (Its old task, if it lived
        through, cannot tell: Swarm may report it running from before the node went.)"""
        for node, (_, _, down) in nodes.items():
            if down and node not in self._returning:
                async with self._marking:
                    if node in self._returning:
                        continue
                    await self._mark(node, False)
                    self._labelled.discard(node)
                    self._returning[node] = None
            elif not down and node in self._returning and self._returning[node] is None:
                async with self._lock:
                    if self._returning.get(node, 0) is not None:
                        continue  # another read of the cluster saw it come back first
                    self._generation += 1
                    if self._covered is not None:
                        await self._call(self.ensure, sorted(self._covered))
                    self._returning[node] = self._generation

    async def _label_running(self, tasks: Sequence[TaskView]) -> None:
        """The nodes where a guard task runs (healthy) labelled: not for a teardown task,
        and for a node that came back, only a task made since (``admits``)."""
        for task in tasks:
            if not admits(task) or task.node_id in self._labelled:
                continue
            async with self._marking:  # not while the node is found down, nor at close
                if task.node_id in self._labelled or self._closing:
                    continue
                returning = task.node_id in self._returning
                wanted = self._returning.get(task.node_id)
                if returning and (wanted is None or not admits(task, wanted)):
                    continue  # not a task made since the node came back
                await self._mark(task.node_id, True)
                self._labelled.add(task.node_id)
                self._returning.pop(task.node_id, None)

    async def _mark(self, node_id: str, on: bool) -> None:
        """``_label`` (under ``_marking``), finished even when its caller is cancelled (a
        settling replaced, or at close): the lock is not let go while the change is on its
        way, so the close's removal of every label comes after it."""
        change = asyncio.ensure_future(self._call(self._label, node_id, on))
        try:
            await asyncio.shield(change)
        except asyncio.CancelledError:
            await asyncio.gather(change, return_exceptions=True)
            raise

    def _label(self, node_id: str, on: bool) -> None:
        node = self._api.inspect_node(node_id)
        spec = dict(node["Spec"])
        labels = dict(spec.get("Labels") or {})
        key = guard_label(self._server)
        if (labels.get(key) == "on") != on:
            if on:
                labels[key] = "on"
            else:
                labels.pop(key, None)
            spec["Labels"] = labels
            self._api.update_node(node_id, int(node["Version"]["Index"]), spec)
            said = "guarded, dynos may run there" if on else "no dynos there until guarded again"
            log.info("swarm guard: node %s %s", node_id[:12], said)

    async def drop_networks(self, app_id: str | None, tries: int = 30) -> None:
        """An app's network (or all the server's) removed, once its tasks have left it."""
        for _ in range(tries):
            with contextlib.suppress(docker.errors.DockerException):
                if not await self._call(remove_networks, self._api, self._server, app_id):
                    return
            await asyncio.sleep(1)

    def ensure(self, nodes: Sequence[str]) -> None:
        """The guard runs on every node with the rules for ``nodes`` (their addresses):
        created, or updated when they or the generation changed."""
        reporter = Path(container_cgroups.__file__).read_text()
        script = guard_script(self._server, self.router, sorted(set(nodes)), reporter)
        if (script, self._generation) == self._applied:
            return
        current = self._find()
        spec = (current or {}).get("Spec", {}).get("TaskTemplate", {}).get("ContainerSpec", {})
        labels = spec.get("Labels") or {}
        same = current is None or labels.get(LAYOUT_LABEL) == rules_layout(self._server)
        order = update_order(labels.get(TEMPLATE_LABEL), same)
        body = self._body(script, guard_health(self._server), str(self._generation), order)
        if current is None:
            self._service = str(self._api.create_service(**body)["ID"])
        else:
            version = int(current["Version"]["Index"])
            self._api.update_service(current["ID"], version, **body)
            self._service = str(current["ID"])
        self._applied = (script, self._generation)
        log.info("swarm guard: the router at %s only, on %d node(s)", self.router, len(nodes))

    def _body(
        self, script: str, health: str, template: str, order: Literal["start-first", "stop-first"]
    ) -> dict[str, Any]:
        layout = rules_layout(self._server)
        return guard_service_body(
            self.image(), self._server, script, health, template, order, layout
        )

    def image(self) -> str:
        """The stack image as every node pulls it, pushed once (blocking)."""
        if self._image is None:
            self._image = registry.push(self._client, self._registry, self._stack_image)
        return self._image

    def _find(self) -> dict[str, Any] | None:
        name = guard_service_name(self._server)
        found = self._api.services(filters={"name": name})
        return next((s for s in found if s["Spec"]["Name"] == name), None)

    @property
    def name(self) -> str:
        return guard_service_name(self._server)

    async def teardown(self) -> None:
        """At close, the guard goes and its rules with it, and no node admits dynos: the
        labels first; then the guard's service is updated to its teardown tasks, which
        remove the rules, and removed once each ready node's has. (A guard task keeps the
        rules on SIGTERM, so removing the service alone would leave them. An update, not a
        one-shot job beside the service: its stop-first order starts each node's teardown
        task only after the guard's task there has stopped, so no guard loop puts the rules
        back after them, and the tasks stay listed until the server has seen them done; a
        removed service's are gone from the API, with no word on whether they ran.)"""
        self._closing = True  # no label put back, no settling started, from here on
        if self._settling is not None:
            self._settling.cancel()
            await asyncio.gather(self._settling, return_exceptions=True)
        async with self._lock:
            async with self._marking:  # after any labelling under way
                carried, ready = await self._call(self._unlabel_all)
            current = await self._call(self._find)
            if current is not None:
                missing = await self._tear_down(str(current["ID"]), current, carried, ready)
                if missing:
                    forward, inbound = chain_names(self._server)
                    log.warning(
                        "swarm guard: its rules may remain on node(s) %s (down, drained or "
                        "slow): remove the chains %s and %s and their jumps from DOCKER-USER "
                        "and INPUT there (iptables -D, -F, -X; ip6tables for %s)",
                        ", ".join(sorted(n[:12] for n in missing)),
                        forward,
                        inbound,
                        inbound,
                    )
                await self._call(self._api.remove_service, str(current["ID"]))
            self._applied = self._covered = self._service = None
            self._labelled.clear()
            self._returning.clear()
            self._unguarded.clear()

    async def _tear_down(
        self, service: str, current: dict[str, Any], carried: set[str], ready: set[str]
    ) -> set[str]:
        """The guard updated to its teardown tasks, waited for on the ``ready`` nodes; every
        node that carried the label or had a guard task and where none reported the rules
        gone (healthy: ``teardown_health``) within TEARDOWN_TIMEOUT."""
        before = await self._call(
            self._api.tasks, filters={"service": service, "desired-state": "running"}
        )
        tasked = [task_view(task) for task in before]
        script, health = teardown_script(self._server), teardown_health(self._server)
        if self._image is None:  # a guard a killed server left: its image, no push at close
            self._image = str(current["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"])
        body = self._body(script, health, TEARDOWN, "stop-first")
        version = int(current["Version"]["Index"])
        await self._call(self._api.update_service, service, version, **body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TEARDOWN_TIMEOUT
        while True:
            found = await self._call(
                self._api.tasks, filters={"service": service, "desired-state": "running"}
            )
            done = {
                t.node_id for t in map(task_view, found) if t.running and t.template == TEARDOWN
            }
            if not ready - done or loop.time() > deadline:
                return left_with_rules(carried | ready, tasked, done)
            await asyncio.sleep(0.5)

    def _unlabel_all(self) -> tuple[set[str], set[str]]:
        """Every node's label for this server's dynos removed; the nodes that carried it,
        and the nodes ready and active (where the guard runs, so where its teardown must)."""
        carried, ready = set(), set()
        for node in self._api.nodes():
            spec = node.get("Spec") or {}
            if (spec.get("Labels") or {}).get(guard_label(self._server)) is not None:
                self._label(str(node["ID"]), False)
                carried.add(str(node["ID"]))
            state = (node.get("Status") or {}).get("State")
            if state == "ready" and spec.get("Availability") == "active":
                ready.add(str(node["ID"]))
        return carried, ready

    def network(self, app_id: str) -> str:
        """The app's overlay network, made when missing."""
        return ensure_network(self._api, self._server, app_id)
