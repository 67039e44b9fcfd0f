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
restart or an operator removed or changed them. The rules stay when the task stops (a restart,
a drained node): only the server's teardown at close (``teardown_script``) removes them.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, ip_address

from dynos.core.swarm_usage import REPORT_SECONDS

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
DNS_PORT = 53
# The ports of the add-on servers (Redis, Postgres) of a swarm server, on the router's
# address: the one way a task reaches the manager. Below the dyno ports (backends/ports.py)
# and the kernel's ephemeral range, so no outgoing connection of the manager takes one.
ADDON_PORTS = range(19000, 20000)


def addon_port_range() -> str:
    """ADDON_PORTS as iptables writes a range (``19000:19999``)."""
    return f"{ADDON_PORTS.start}:{ADDON_PORTS.stop - 1}"


# Where a task's names go: on an overlay network its resolver is the engine's, at 127.0.0.11
# in the task's own namespace (never forwarded, so never in DOCKER-USER); the engine (20.10)
# sends what it cannot answer from the task's namespace, so through the guard, to the node's
# resolvers: the IPv4 nameservers of its resolv.conf but loopback ones (systemd-resolved's
# file when only those), or Docker's defaults when none is left. Port 53 goes to these only.
RESOLV_FILES = ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf")
DEFAULT_RESOLVERS = ("8.8.8.8", "8.8.4.4")
# A nameserver written into a rule: four decimal octets, each at most 255, no leading zero
# (an extended regular expression: the script's grep -xE and ``host_resolvers`` share it).
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_PATTERN = f"({_OCTET}[.]){{3}}{_OCTET}"
RECHECK_SECONDS = 2  # how often the guard puts back rules someone removed
HOST_ROOT = "/host"  # where the guard's task sees its node's root filesystem
HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
MARK = "dynos guard task"  # the chain's last rule: which task loaded it, and how many rules

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


def platform_addresses(router: str, nodes: Sequence[str]) -> list[str]:
    """The router's address and every node's, as /32 networks, each once, in order (a node
    that reported no address, or junk, is left out: nothing to block)."""
    out: list[str] = []
    for address in (router, *nodes):
        try:
            network = str(IPv4Network(f"{address}/32"))
        except ValueError:
            continue
        if network not in out:
            out.append(network)
    return out


def blocked_destinations(router: str, nodes: Sequence[str]) -> list[str]:
    """Where a dyno may not connect: the private ranges, the router's address and every
    node's (a node with a public address is not in the ranges), each once, in order."""
    return [*PRIVATE_RANGES, *platform_addresses(router, nodes)]


def nameservers(text: str) -> list[str]:
    """The IPv4 nameservers of a resolv.conf's ``text``, loopback ones left out (the node's
    own, which the engine does not forward to), junk and IPv6 too."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            address = fields[1]
            if re.fullmatch(IPV4_PATTERN, address) and not address.startswith("127."):
                found.append(address)
    return found


def host_resolvers(texts: Sequence[str | None]) -> list[str]:
    """Where the engine sends its containers' lookups on a machine whose RESOLV_FILES hold
    ``texts`` (None: no such file): the first file's nameservers, else Docker's defaults.
    The guard's script reads its node's the same way (``resolvers``, in shell)."""
    for text in texts:
        found = nameservers(text or "")
        if found:
            return found
    return list(DEFAULT_RESOLVERS)


def fence_resolvers(resolvers: Sequence[str], router: str, nodes: Sequence[str]) -> list[str]:
    """The resolvers a fence or guard lets port 53 through to: never the router's or a
    node's address, where a name server would open that machine's port 53 to every tenant."""
    platform = platform_addresses(router, nodes)
    return [r for r in resolvers if f"{r}/32" not in platform]


def _forward_head(server: str, router: str, nodes: Sequence[str]) -> list[str]:
    forward, inbound = chain_names(server)
    bridge = GATEWAY_BRIDGE
    return [
        "*filter",
        f":{forward} - [0:0]",
        f":{inbound} - [0:0]",
        # Answers to connections allowed below.
        f"-A {forward} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        # Into a task (a published port after the engine's DNAT): the router's only. Not
        # other machines, not the node's other tasks (through the node's address and port).
        f"-A {forward} -o {bridge} -s {router}/32 -p tcp -j RETURN",
        f"-A {forward} -o {bridge} -j DROP",
        # Out of a task, to the add-on servers on the router's address (a task elsewhere
        # than the manager's node: forwarded to it). Their passwords keep apps apart.
        f"-A {forward} -i {bridge} -d {router}/32 -p tcp --dport {addon_port_range()} -j RETURN",
        # Out of a task, to the router or a node: nothing else, port 53 included (before the
        # resolvers' exceptions, should a resolver be one of them).
        *(
            f"-A {forward} -i {bridge} -d {destination} -j DROP"
            for destination in platform_addresses(router, nodes)
        ),
    ]


def resolver_rules(server: str, resolver: str) -> list[str]:
    """Names out of a task, to one of its node's resolvers only (``resolver``: an address,
    or the shell variable the script expands to one)."""
    forward, _ = chain_names(server)
    return [
        f"-A {forward} -i {GATEWAY_BRIDGE} -d {resolver}/32 -p {protocol} --dport {DNS_PORT}"
        " -j RETURN"
        for protocol in ("udp", "tcp")
    ]


def _rest(server: str, router: str) -> list[str]:
    forward, inbound = chain_names(server)
    bridge = GATEWAY_BRIDGE
    # Out of a task: no private or link-local address (port 53 but to a resolver included).
    lines = [f"-A {forward} -i {bridge} -d {destination} -j DROP" for destination in PRIVATE_RANGES]
    return [
        *lines,
        f"-A {inbound} -i {bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        # To the add-on servers, from a task on the manager's node (elsewhere: no match).
        f"-A {inbound} -i {bridge} -d {router}/32 -p tcp --dport {addon_port_range()} -j RETURN",
        # To the node itself (its API, registry, SSH...): nothing else a task starts.
        f"-A {inbound} -i {bridge} -j DROP",
    ]


def guard_rules(server: str, router: str, nodes: Sequence[str], resolvers: Sequence[str]) -> str:
    """The guard's two chains on a node whose resolvers are ``resolvers``, as
    ``iptables-restore --noflush`` input (declaring a chain empties it: the new rules replace
    the old at once, never an open moment between), but for the mark and ``COMMIT`` the
    script adds. The script writes the same, with the resolvers it reads on its node."""
    lines = _forward_head(server, router, nodes)
    for resolver in resolvers:
        lines += resolver_rules(server, resolver)
    return "\n".join(lines + _rest(server, router)) + "\n"


def _ipv6_lines(server: str) -> list[str]:
    _, inbound = chain_names(server)
    return [
        f"-A {inbound} -i lo -j RETURN",
        f"-A {inbound} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        f"-A {inbound} -p tcp --dport %s:65535 -j DROP",
    ]


def ipv6_rules(server: str) -> str:
    """The ``ip6tables-restore --noflush`` input (a printf format: ``%s`` is the lowest port
    the node's engine may publish, its ephemeral range's start) of the guard's IPv6 chain.
    The engine publishes a task's port on IPv6 through its userland proxy, a process of the
    node that connects to the task as the node itself, where no forwarding rule sees it:
    so no IPv6 connection from elsewhere may open a port the engine publishes."""
    _, inbound = chain_names(server)
    return "\n".join(["*filter", f":{inbound} - [0:0]", *_ipv6_lines(server), "COMMIT", ""])


def _jumps(server: str) -> list[tuple[str, str, str]]:
    forward, inbound = chain_names(server)
    return [
        ("iptables", "DOCKER-USER", forward),
        ("iptables", "INPUT", inbound),
        ("ip6tables", "INPUT", inbound),
    ]


def _checks(server: str) -> str:
    """Shell functions: ``h`` runs a command of the node; ``intact``: the chains hold what a
    guard loaded, all of it (the forward chain's last rule, the mark, says how many rules
    it has: a flushed chain has none, a chain missing a rule one too few); ``jumped``: the
    jumps to them are in place; ``absent``: no chain of the guard's is left."""
    forward, inbound = chain_names(server)
    inbound_count, six = _input_counts(server)
    count = "grep -c '^-A '"
    marked = f"""s/.*"{MARK} [^ ]* rules \\([0-9][0-9]*\\)".*/\\1/p"""
    return (
        f'h() {{ /usr/sbin/chroot {HOST_ROOT} /usr/bin/env PATH={HOST_PATH} "$@"; }}\n'
        "intact() {\n"
        f"  fwd=$(h iptables -w -S {forward} 2>/dev/null) || return 1\n"
        f"""  want=$(printf '%s\\n' "$fwd" | sed -n '{marked}')\n"""
        f"""  [ -n "$want" ] && [ "$(printf '%s\\n' "$fwd" | {count})" = "$want" ] &&\n"""
        f'  [ "$(h iptables -w -S {inbound} 2>/dev/null | {count})" = {inbound_count} ] &&\n'
        f'  [ "$(h ip6tables -w -S {inbound} 2>/dev/null | {count})" = {six} ]\n'
        "}\n"
        "jumped() { "
        + " && ".join(f"h {t} -w -C {c} -j {j} 2>/dev/null" for t, c, j in _jumps(server))
        + "; }\n"
        "absent() { "
        + " && ".join(f"! h {t} -w -n -L {j} >/dev/null 2>&1" for t, _, j in _jumps(server))
        + "; }\n"
    )


def _input_counts(server: str) -> tuple[int, int]:
    """How many rules the guard's input chains hold, IPv4 and IPv6 (a task checks them by
    count; the forward chain carries its own in its mark)."""
    _, inbound = chain_names(server)
    rest = _rest(server, "0.0.0.0")  # counted only: the router's address changes no count
    return sum(line.startswith(f"-A {inbound} ") for line in rest), len(_ipv6_lines(server))


def rules_layout(server: str) -> str:
    """The guard's input chains' counts, as its service's label says them: a running guard
    of another layout (an older dynos's) would load its own rules again over a new task's,
    and the new task its own, every RECHECK_SECONDS until the old task stops."""
    ipv4, ipv6 = _input_counts(server)
    return f"input {ipv4} ipv6 {ipv6}"


def guard_health(server: str) -> str:
    """The guard's health check (a shell command): its chains are whole and jumped to. Swarm
    reports a task with a health check running only once it is healthy, and only then is its
    node labelled for dynos (a guard that cannot load its rules never is)."""
    return _checks(server) + "intact && jumped"


def guard_script(server: str, router: str, nodes: Sequence[str], reporter: str = "") -> str:
    """The guard task's shell script (``sh -c``; ``$GUARD_TASK`` its task's id): the rules
    loaded with the task's mark, the jumps to them first in ``DOCKER-USER`` and ``INPUT``;
    every RECHECK_SECONDS, the rules loaded again if they are not whole (deleted, flushed,
    a rule gone) and the jumps put back. On SIGTERM the rules stay: a task stops when it
    restarts after failed health checks, on a drained node, or in an update of the guard (a
    node joined), and the node must stay guarded; the server tears them down at close.

    ``reporter``: the usage reporter's Python source (``backends/container_cgroups.py``),
    run beside the loop on the node's cgroups (started again should it end): its lines are
    the guard's output, which the server follows (``core/swarm_usage.py``)."""
    forward, _ = chain_names(server)
    head = shlex.quote("\n".join(_forward_head(server, router, nodes)) + "\n")
    dns = "".join(f" printf '%s\\n' \"{line}\";" for line in resolver_rules(server, "$r"))
    rest = shlex.quote("\n".join(_rest(server, router)) + "\n")
    files = " ".join(RESOLV_FILES)
    mark = shlex.quote(f'%s -m comment --comment "{MARK} %s rules %s" -j RETURN\nCOMMIT\n')
    v6 = shlex.quote(ipv6_rules(server))
    ensure = " && ".join(
        f"{{ h {tool} -w -C {chain} -j {target} 2>/dev/null || "
        f"h {tool} -w -I {chain} 1 -j {target}; }}"
        for tool, chain, target in _jumps(server)
    )
    return (
        "set -u\n"
        # The node's own iptables (the same backend, legacy or nft, as its engine's).
        + _checks(server)
        + "resolvers() {\n"
        f"  for f in {files}; do\n"
        '    found=$(h cat "$f" 2>/dev/null | awk \'$1 == "nameserver" { print $2 }\' |'
        f" grep -xE '{IPV4_PATTERN}' | grep -v '^127[.]')\n"
        '    if [ -n "$found" ]; then printf \'%s\\n\' "$found"; return 0; fi\n'
        "  done\n"
        f"  printf '%s\\n' {' '.join(DEFAULT_RESOLVERS)}\n"
        "}\n"
        f"rules() {{ printf %s {head}; for r in $(resolvers); do{dns} done; printf %s {rest}; }}\n"
        "load() {\n"
        "  body=$(rules) &&\n"
        f"""  n=$(printf '%s\\n' "$body" | grep -c '^-A {forward} ') &&\n"""
        f"""  {{ printf '%s\\n' "$body"; printf {mark} '-A {forward}' "$GUARD_TASK" $((n + 1))"""
        "; } | h iptables-restore -w --noflush &&\n"
        # (cat: dash's read of a /proc/sys file byte by byte gets its first byte only, here)
        "  set -- $(cat /proc/sys/net/ipv4/ip_local_port_range) &&\n"
        f'  printf {v6} "$1" | h ip6tables-restore -w --noflush\n'
        "}\n"
        "trap 'exit 0' TERM INT\n"
        "load || exit 1\n"
        + _reporter(reporter)
        + "while :; do\n"
        + ('  kill -0 "$reporter" 2>/dev/null || report\n' if reporter else "")
        + "  intact || { echo 'dynos guard: rules missing or changed: loaded again' >&2; load; }\n"
        f"  {ensure} || echo 'dynos guard: could not put the jumps back' >&2\n"
        f"  sleep {RECHECK_SECONDS} & wait $!\n"
        "done\n"
    )


def _reporter(source: str) -> str:
    """The lines that define and start the usage reporter; none without one."""
    if not source:
        return ""
    cgroups = f"{HOST_ROOT}/sys/fs/cgroup"  # the node's, through its root filesystem
    return (
        f"report() {{ python3 -I -c {shlex.quote(source)} {cgroups} {REPORT_SECONDS} & "
        "reporter=$!; }\n"
        "report\n"
    )


def teardown_script(server: str) -> str:
    """The guard's last task on each node, at the server's close: its jumps and chains
    removed (again every RECHECK_SECONDS should one come back), then it idles until the
    server removes the service. Healthy (``teardown_health``) once none is left."""
    remove = "; ".join(
        f"while h {tool} -w -D {chain} -j {target} 2>/dev/null; do :; done; "
        f"h {tool} -w -F {target} 2>/dev/null; h {tool} -w -X {target} 2>/dev/null"
        for tool, chain, target in _jumps(server)
    )
    return (
        _checks(server)
        + f"remove() {{ {remove}; }}\n"
        + "trap 'exit 0' TERM INT\n"
        + "while :; do\n"
        + "  absent || remove\n"
        + f"  sleep {RECHECK_SECONDS} & wait $!\n"
        + "done\n"
    )


def teardown_health(server: str) -> str:
    return _checks(server) + "absent"
