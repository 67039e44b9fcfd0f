"""The swarm backend's tenant isolation: each app's network, and the guard on every node.

Pure: names, the guard's firewall rules and its script. The shell is
``backends/swarm_guard.py``.

Every task of an app joins that app's overlay network (``app_network``): apps share none, so a
dyno reaches no other app's dyno over one. A task on an overlay reaches the world, and its
node publishes its host-mode port, through the node's ``docker_gwbridge``, a bridge the engine
makes without traffic between its containers (``enable_icc=false``).

What a network cannot say is who may connect to a published port, and where a dyno may not
go: the node's own services, the other nodes (a dyno on the router's node leaves it with the
router's address, after the engine's NAT) and the platform's registry and API. The guard says
it, on every node: a global service of the swarm, so a node that joins later gets it the way
the first ones did. Its task, on the node's network with ``NET_ADMIN``, loads one chain into
the engine's ``DOCKER-USER`` (the engine jumps there first and never flushes it) and one into
``INPUT``, atomically (``iptables-restore --noflush``), and puts them back if the engine's
restart or an operator removed them.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, ip_address

GATEWAY_BRIDGE = "docker_gwbridge"  # where a swarm node's tasks meet the node's network
# Where a dyno may not open a connection (besides the nodes themselves): private and shared
# address space (other machines of the platform, its registry and API), and link-local (a
# cloud's metadata service, which hands out the machine's credentials).
PRIVATE_RANGES = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
)
DNS_PORT = 53  # a task's resolver forwards names from the task's own network
RECHECK_SECONDS = 2  # how often the guard puts back rules someone removed
HOST_ROOT = "/host"  # where the guard's task sees its node's root filesystem
HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
MARK = "dynos guard task"  # a comment in the chain: which guard task loaded it

_NAME_PART = re.compile(r"[^a-z0-9-]+")


def app_network(server: str, app_id: str) -> str:
    """The overlay network of an app's tasks: ``dynos-<server>-<app id>-net``. By id, not
    name: after ``apps:rename`` a new app of the old name must not join the old one's
    network, whose tasks still run on it until they restart."""
    app = _NAME_PART.sub("-", app_id.lower()).strip("-")
    return f"dynos-{server[:8]}-{app}"[:59].rstrip("-") + "-net"


def guard_service_name(server: str) -> str:
    return f"dynos-{server[:8]}-guard"


def guard_label(server: str) -> str:
    """The node label the server puts on a node once its guard runs there; dyno services
    are placed only on nodes that carry it (``guard_constraint``), so a node that joins gets
    no dyno before it is guarded."""
    return f"dynos.guard.{server[:8]}"


def guard_constraint(server: str) -> str:
    return f"node.labels.{guard_label(server)}==on"


def chain_names(server: str) -> tuple[str, str]:
    """The guard's chains (iptables allows 28 characters): forwarded, and to the node."""
    return f"DYNOS-{server[:8].upper()}-FWD", f"DYNOS-{server[:8].upper()}-IN"


def router_source(address: str) -> str:
    """The address the router's connections to the nodes come from: the manager's address
    in the swarm. ValueError for anything that is not one IPv4 address."""
    parsed = ip_address(address)
    if not isinstance(parsed, IPv4Address) or parsed.is_unspecified or parsed.is_loopback:
        raise ValueError(f"{address!r} is not an address the nodes can see the router come from")
    return str(parsed)


def blocked_destinations(router: str, nodes: Sequence[str]) -> list[str]:
    """Where a dyno may not connect: the private ranges, the router's address and every
    node's (a node with a public address is not in the ranges), each once, in order."""
    out: list[str] = list(PRIVATE_RANGES)
    for address in (router, *nodes):
        try:
            network = str(IPv4Network(f"{address}/32"))
        except ValueError:
            continue  # a node that reported no address: nothing to block
        if network not in out:
            out.append(network)
    return out


def guard_rules(server: str, router: str, nodes: Sequence[str]) -> str:
    """The guard's two chains, as ``iptables-restore --noflush`` input (declaring a chain
    empties it: the new rules replace the old at once, never an open moment between), but
    for the ``COMMIT`` the script adds after the task's mark."""
    forward, inbound = chain_names(server)
    bridge = GATEWAY_BRIDGE
    lines = [
        "*filter",
        f":{forward} - [0:0]",
        f":{inbound} - [0:0]",
        # Answers to connections allowed below.
        f"-A {forward} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        # Into a task (a published port after the engine's DNAT): the router's only. Not
        # other machines, not the node's other tasks (through the node's address and port).
        f"-A {forward} -o {bridge} -s {router}/32 -p tcp -j RETURN",
        f"-A {forward} -o {bridge} -j DROP",
        # Out of a task: names, then anything but the platform's and private addresses.
        f"-A {forward} -i {bridge} -p udp --dport {DNS_PORT} -j RETURN",
        f"-A {forward} -i {bridge} -p tcp --dport {DNS_PORT} -j RETURN",
    ]
    for destination in blocked_destinations(router, nodes):
        lines.append(f"-A {forward} -i {bridge} -d {destination} -j DROP")
    lines += [
        # To the node itself (its API, registry, SSH...): nothing a task starts.
        f"-A {inbound} -i {bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        f"-A {inbound} -i {bridge} -j DROP",
    ]
    return "\n".join(lines) + "\n"


def ipv6_rules(server: str) -> str:
    """The ``ip6tables-restore --noflush`` input (a printf format: ``%s`` is the lowest port
    the node's engine may publish, its ephemeral range's start) of the guard's IPv6 chain.
    The engine publishes a task's port on IPv6 through its userland proxy, a process of the
    node that connects to the task as the node itself, where no forwarding rule sees it:
    so no IPv6 connection from elsewhere may open a port the engine publishes."""
    _, inbound = chain_names(server)
    return "\n".join(
        [
            "*filter",
            f":{inbound} - [0:0]",
            f"-A {inbound} -i lo -j RETURN",
            f"-A {inbound} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
            f"-A {inbound} -p tcp --dport %s:65535 -j DROP",
            "COMMIT",
            "",
        ]
    )


def guard_health(server: str) -> str:
    """The guard's health check (a shell command): its jumps are in place. Swarm reports a
    task with a health check running only once it is healthy, and only then is its node
    labelled for dynos (a guard that cannot load its rules never is)."""
    forward, inbound = chain_names(server)
    host = f"/usr/sbin/chroot {HOST_ROOT} /usr/bin/env PATH={HOST_PATH}"
    return (
        f"{host} iptables -w -C DOCKER-USER -j {forward} && "
        f"{host} iptables -w -C INPUT -j {inbound} && "
        f"{host} ip6tables -w -C INPUT -j {inbound}"
    )


def guard_script(server: str, router: str, nodes: Sequence[str]) -> str:
    """The guard task's shell script (``sh -c``; ``$GUARD_TASK`` its task's id): the rules
    loaded with the task's mark, the jumps to them first in ``DOCKER-USER`` and ``INPUT``,
    put back every RECHECK_SECONDS. On SIGTERM the jumps and chains go (the service was
    removed: the server stopped), unless they carry another task's mark: an update of the
    guard (a node joined) starts the new task first, and its rules must stay."""
    forward, inbound = chain_names(server)
    rules = shlex.quote(guard_rules(server, router, nodes))
    mark = shlex.quote(f'%s -m comment --comment "{MARK} %s" -j RETURN\nCOMMIT\n')
    v6 = shlex.quote(ipv6_rules(server))
    jumps = [("iptables", "DOCKER-USER", forward), ("iptables", "INPUT", inbound)]
    jumps.append(("ip6tables", "INPUT", inbound))
    ensure = " && ".join(
        f"{{ h {tool} -w -C {chain} -j {target} 2>/dev/null || "
        f"h {tool} -w -I {chain} 1 -j {target}; }}"
        for tool, chain, target in jumps
    )
    remove = "; ".join(
        f"h {tool} -w -D {chain} -j {target}; h {tool} -w -F {target}; h {tool} -w -X {target}"
        for tool, chain, target in jumps
    )
    return (
        "set -u\n"
        # The node's own iptables (the same backend, legacy or nft, as its engine's).
        f'h() {{ /usr/sbin/chroot {HOST_ROOT} /usr/bin/env PATH={HOST_PATH} "$@"; }}\n'
        f"load() {{ {{ printf %s {rules}; printf {mark} '-A {forward}' \"$GUARD_TASK\"; }} "
        "| h iptables-restore -w --noflush && "
        # (cat: dash's read of a /proc/sys file byte by byte gets its first byte only, here)
        "set -- $(cat /proc/sys/net/ipv4/ip_local_port_range) && "
        f'printf {v6} "$1" | h ip6tables-restore -w --noflush; }}\n'
        f'mine() {{ h iptables -w -S {forward} 2>/dev/null | grep -qF "{MARK} $GUARD_TASK"; }}\n'
        f"trap 'mine && {{ {remove}; }}; exit 0' TERM INT\n"
        "load || exit 1\n"
        "while :; do\n"
        f"  {{ h iptables -w -n -L {forward} && h ip6tables -w -n -L {inbound}; }} >/dev/null 2>&1"
        " || load\n"
        f"  {ensure} || echo 'dynos guard: could not put the jumps back' >&2\n"
        f"  sleep {RECHECK_SECONDS} & wait $!\n"
        "done\n"
    )
