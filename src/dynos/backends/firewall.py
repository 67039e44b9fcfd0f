"""Dyno ports closed to all but the router and the app's own dynos (nftables, as root).

The router tells a dyno who the client is in ``X-Forwarded-For`` and ``X-Forwarded-Proto``,
and apps trust those headers because on Heroku only the router reaches a dyno. Here a dyno
listens on a port that any local process could connect to, spoofing both, and one tenant's
dynos could call another's directly. So a server running as root keeps an nftables table,
``dynos_<pid>``, in which:

- ``output``: a TCP connection (its SYN) to a guarded port from a socket owned by neither the
  server's uid (the router, its router processes and the health checks are all the server's
  own processes) nor the app user the port is given to is reset: its connect fails at once
  with ECONNREFUSED. Other apps' dynos and every other local user are refused.
- ``input``: a SYN to a guarded port that arrives on any interface but loopback is dropped:
  another host, a container or a VM never reaches a dyno, even one that binds every address.

With ``--backend docker`` one more rule (``confine``) drops a SYN to the ``dynos`` bridge's
gateway, where the add-on servers listen for container dynos, arriving on any interface but
loopback and that bridge: another docker network or host never reaches an add-on.

Only SYNs are acted on (other packets cost one set lookup): an open connection is never cut,
and a reply from a dyno to a client whose ephemeral port happens to be guarded is never
touched. Family ``inet`` covers IPv4 and IPv6. A web dyno's port is allowed before its
process starts and revoked once the dyno has exited.

The table is created with the ``owner`` flag (Linux 5.12): it belongs to the netlink socket
of the server's libnftables context, so no other process, root's ``nft`` included, can change
or delete it, ``nft flush ruleset`` (a reload of the system's firewall) leaves it alone, and
the kernel deletes it when the socket closes: when the server stops, and also when it is
killed, so no server ever finds stale rules that would refuse connections to a port reused by
someone else. That needs one socket for the server's whole life, hence libnftables in the
process (through ctypes) rather than the ``nft`` command, whose socket closes as it exits; it
also makes a change cost about 0.1 ms (0.4 ms in a busy server) instead of the 2.5 ms of
starting ``nft`` (whose deletions of set elements took 13 ms here).

``PortRules`` is the pure part (the state and the commands it renders, tested without root);
``PortGuard`` runs them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import ipaddress
import logging
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from dynos.errors import PlatformError

log = logging.getLogger(__name__)

TABLE_PREFIX = "dynos_"
NODES_SET = "swarm_nodes"  # the swarm's node addresses: the add-ons' door and the fence
COMMENT_LIMIT = 120  # characters of the home kept in the table's comment
NETLINK_NETFILTER = 12  # linux/netlink.h


class FirewallError(PlatformError):
    """libnftables is missing, or the kernel refused a change."""


# -- the rules: pure -------------------------------------------------------------------------


def table_name(pid: int) -> str:
    """The table of the server with process id ``pid`` (unique among live processes, and the
    kernel deletes a table with its server)."""
    return f"{TABLE_PREFIX}{pid}"


@dataclass
class PortRules:
    """The guarded ports of one server and the app user each is given to, and the nft
    commands that make the table say so."""

    table: str
    router_uid: int  # the server's uid: its router processes and health checks share it
    owners: dict[int, int] = field(default_factory=dict)  # port -> app uid

    def create(self, home: Path) -> str:
        """The table, empty, owned by the socket that sends this."""
        # An nft string holds no quote or backslash: keep the home readable, not exact.
        where = re.sub(r"[^A-Za-z0-9/._ -]", "_", str(home))[-COMMENT_LIMIT:]
        syn = "tcp flags & (syn | ack) == syn"
        return f"""table inet {self.table} {{
    flags owner
    comment "dynos server on {where}"
    set ports {{
        type inet_service
    }}
    set allowed {{
        type inet_service . uid
    }}
    chain output {{
        type filter hook output priority filter; policy accept;
        tcp dport @ports {syn} meta skuid != {self.router_uid} \
tcp dport . meta skuid != @allowed reject with tcp reset
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        tcp dport @ports {syn} iif != "lo" drop
    }}
}}
"""

    def allow(self, port: int, uid: int) -> str:
        """Commands that guard ``port`` and let ``uid`` (and the router) reach it. A port still
        given to an earlier dyno, whose revoke has not come yet, changes hands."""
        earlier = self.owners.get(port)
        if earlier == uid:
            return ""
        self.owners[port] = uid
        if earlier is not None:
            first = f"delete element {self._set('allowed')} {{ {port} . {earlier} }}"
        else:
            first = f"add element {self._set('ports')} {{ {port} }}"
        return f"{first}\nadd element {self._set('allowed')} {{ {port} . {uid} }}\n"

    def revoke(self, port: int, uid: int) -> str:
        """Commands that unguard ``port``, unless it was given to another dyno since."""
        if self.owners.get(port) != uid:
            return ""
        del self.owners[port]
        return (
            f"delete element {self._set('allowed')} {{ {port} . {uid} }}\n"
            f"delete element {self._set('ports')} {{ {port} }}\n"
        )

    def confine(self, address: str, interface: str) -> str:
        """A rule that drops a connection to ``address`` (the docker bridge's gateway, where
        add-on servers listen for container dynos) arriving on any interface but loopback and
        that bridge: another docker network's containers or another host never reach it.
        ``address``: an IPv4 address; ``interface``: a Linux interface name."""
        ipaddress.IPv4Address(address)  # ValueError: nothing odd reaches the ruleset
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", interface):
            raise ValueError(f"not an interface name: {interface!r}")
        syn = "tcp flags & (syn | ack) == syn"
        return (
            f"add rule inet {self.table} input ip daddr {address} {syn} "
            f'iifname != {{ "lo", "{interface}" }} drop\n'
        )

    def fence(self, interface: str, destinations: list[str], resolvers: list[str]) -> str:
        """A forward chain that drops every new connection from ``interface`` (the manager's
        ``dynos`` bridge under ``--backend swarm``: one-off dynos and container builds) to
        ``destinations`` (IPv4 networks: the private ranges and the swarm's nodes), which
        the guard's chains on ``docker_gwbridge`` do not see: the manager's NAT would give
        them the router's address, which every node's guard lets into its dynos. Port 53
        (UDP and TCP) to ``resolvers`` (IPv4 addresses: the host's, none a node's nor the
        router's) stays open: the engine's embedded DNS forwards a container's lookups from
        the container's namespace, so through this chain, and a private resolver would
        otherwise leave every container on the bridge without names. The nodes that join
        later are dropped too, by the set :meth:`swarm_nodes` keeps (a node on a public
        address is in no private range)."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", interface):
            raise ValueError(f"not an interface name: {interface!r}")
        nets = ", ".join(str(ipaddress.IPv4Network(d)) for d in destinations)
        names = ", ".join(str(ipaddress.IPv4Address(r)) for r in resolvers)
        # Forward: to another node's dynos and addresses; input: to this node's own
        # addresses, where the engine's userland proxy would carry a connection on to a
        # task's published port from the node itself, past the guard's chains.
        chain = "{ type filter hook forward priority filter; policy accept; }\n"
        rules = self._nodes_set() + f"add chain inet {self.table} forward {chain}"
        for hook in ("forward", "input"):
            where = f'add rule inet {self.table} {hook} iifname "{interface}"'
            # The nodes first: one that joins later at a resolver's address gets no port 53.
            rules += f"{where} ip daddr @{NODES_SET} ct state new drop\n"
            if names:
                rules += "".join(
                    f"{where} ip daddr {{ {names} }} {protocol} dport 53 accept\n"
                    for protocol in ("udp", "tcp")
                )
            rules += f"{where} ip daddr {{ {nets} }} ct state new drop\n"
        return rules

    def open_addons(self, address: str, ports: range, interfaces: list[str]) -> str:
        """The add-on servers' ``ports`` on ``address`` (a swarm's router address, where the
        tasks reach them): new connections from ``interfaces`` (the manager's own bridges:
        ``docker_gwbridge``, and every dynos server's one-off bridge, by their prefix ending
        in ``*``: another server's table on the same engine must not drop this one's
        one-offs), loopback and the swarm's nodes (:meth:`swarm_nodes`) only; not from the
        rest of the network the address is on. Before the fence, which would drop the
        one-offs' connections to that address."""
        address = str(ipaddress.IPv4Address(address))
        for interface in interfaces:
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}\*?", interface):
                raise ValueError(f"not an interface name: {interface!r}")
        names = ", ".join(f'"{i}"' for i in ["lo", *interfaces])
        span = f"{ports.start}-{ports.stop - 1}"
        syn = "tcp flags & (syn | ack) == syn"
        where = f"add rule inet {self.table} input ip daddr {address} tcp dport {span}"
        return (
            self._nodes_set()
            + f"{where} {syn} iifname != {{ {names} }} ip saddr != @{NODES_SET} drop\n"
            + "".join(f'{where} iifname "{i}" accept\n' for i in interfaces)
        )

    def swarm_nodes(self, nodes: list[str]) -> str:
        """The swarm's node addresses (IPv4) replace those the set holds: let in to the
        add-on servers (a task elsewhere reaches them from its node's address, after its
        node's NAT) and fenced off the manager's bridge (:meth:`fence`)."""
        kept = sorted({node for node in nodes if _is_ipv4(node)})  # junk: nothing to add
        commands = self._nodes_set() + f"flush set inet {self.table} {NODES_SET}\n"
        if kept:
            commands += f"add element inet {self.table} {NODES_SET} {{ {', '.join(kept)} }}\n"
        return commands

    def _nodes_set(self) -> str:
        """The nodes' set, made by whichever rules name it first (``add`` keeps one made)."""
        return f"add set inet {self.table} {NODES_SET} {{ type ipv4_addr; }}\n"

    def forget(self, port: int, uid: int) -> None:
        """Drop ``port`` from the state alone: its allow never reached the table."""
        if self.owners.get(port) == uid:
            del self.owners[port]

    def delete(self) -> str:
        return f"delete table inet {self.table}\n"

    def _set(self, name: str) -> str:
        return f"inet {self.table} {name}"


def _is_ipv4(address: str) -> bool:
    try:
        return str(ipaddress.IPv4Address(address)) == address
    except ValueError:
        return False


# -- libnftables: thin -----------------------------------------------------------------------


def _socket_fds() -> set[int]:
    """This process's socket descriptors."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                found.add(int(name))
    return found


class _Nft:
    """One libnftables context, and with it one netlink socket, for the server's life."""

    def __init__(self) -> None:
        path = ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            raise FirewallError("libnftables is not installed (apt-get install nftables)") from exc
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        self._lib = lib
        # libnftables exits the process when it cannot open its netlink socket: find out first.
        try:
            socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER).close()
        except OSError as exc:
            raise FirewallError(f"no nf_tables netlink here: {exc.strerror}") from exc
        before = _socket_fds()
        self._ctx: int | None = lib.nft_ctx_new(0)
        if not self._ctx:
            raise FirewallError("libnftables could not make a context")
        # Its socket would be inherited by every process the server starts (uvloop closes no
        # descriptors in children): a dyno could read the server's netlink replies, and a
        # dyno left behind by a killed server would keep the table alive.
        for fd in _socket_fds() - before:
            os.set_inheritable(fd, False)
        # Output and errors are kept for us to read, not printed on the server's stdout.
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)

    def run(self, commands: str) -> None:
        """Run ``commands`` as one transaction: all or nothing. Raises FirewallError."""
        if self._ctx is None:
            raise FirewallError("the firewall is closed")
        failed = self._lib.nft_run_cmd_from_buffer(self._ctx, commands.encode())
        said = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
        if failed:  # the buffer is read every time: it would otherwise pile up
            first = said.strip().splitlines()[0] if said.strip() else "no message"
            raise FirewallError(f"nftables failed: {first.removeprefix('Error: ')}")

    def close(self) -> None:
        if self._ctx is not None:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None


class PortGuard:
    """The server's table: ``allow`` a web dyno's port before it starts, ``revoke`` it once
    the dyno is gone, ``close`` at stop. Each change is one transaction, short enough (about
    0.1 ms) to run on the event loop."""

    def __init__(self, rules: PortRules, nft: _Nft) -> None:
        self.rules = rules
        self._nft = nft

    @classmethod
    def open(cls, home: Path) -> PortGuard:
        """Create this server's table. Raises FirewallError (no libnftables, a kernel before
        5.12 or without nf_tables, no CAP_NET_ADMIN)."""
        nft = _Nft()
        rules = PortRules(table_name(os.getpid()), os.geteuid())
        try:
            nft.run(rules.create(home))
        except FirewallError:
            nft.close()
            raise
        return cls(rules, nft)

    def allow(self, port: int, uid: int) -> None:
        """Guard ``port`` for the app user ``uid``. Raises FirewallError: the dyno must then
        not start, for its port would be open to everyone."""
        commands = self.rules.allow(port, uid)
        if not commands:
            return
        try:
            self._nft.run(commands)
        except FirewallError:
            self.rules.forget(port, uid)
            raise

    def revoke(self, port: int, uid: int) -> None:
        commands = self.rules.revoke(port, uid)
        if not commands:
            return
        try:
            self._nft.run(commands)
        except FirewallError as exc:  # the port stays closed to others: nothing is opened
            log.warning("could not unguard port %d: %s", port, exc.message)

    def confine(self, address: str, interface: str) -> None:
        """Only loopback and ``interface`` reach ``address`` (``PortRules.confine``).
        Raises FirewallError."""
        self._nft.run(self.rules.confine(address, interface))

    def fence(self, interface: str, destinations: list[str], resolvers: list[str]) -> None:
        """``PortRules.fence``. Raises FirewallError."""
        self._nft.run(self.rules.fence(interface, destinations, resolvers))

    def open_addons(self, address: str, ports: range, interfaces: list[str]) -> None:
        """``PortRules.open_addons``. Raises FirewallError."""
        self._nft.run(self.rules.open_addons(address, ports, interfaces))

    def swarm_nodes(self, nodes: list[str]) -> None:
        """``PortRules.swarm_nodes``. Raises FirewallError."""
        self._nft.run(self.rules.swarm_nodes(nodes))

    def nodes_changed(self, nodes: list[str]) -> None:
        """:meth:`swarm_nodes`, as the swarm's nodes change. A failure is logged: the set
        keeps the nodes known before; a new one's tasks do not reach the add-ons, and a new
        one on a public address is not fenced off the one-offs."""
        try:
            self.swarm_nodes(nodes)
        except (FirewallError, ValueError) as exc:
            log.error("could not put the swarm's nodes %s in the firewall: %s", nodes, exc)

    def close(self) -> None:
        """Delete the table (the kernel would, as the socket closes, but say so plainly)."""
        try:
            self._nft.run(self.rules.delete())
        except FirewallError as exc:
            log.warning("could not delete the table %s: %s", self.rules.table, exc.message)
        self._nft.close()


def guard_ports(home: Path, euid: int | None = None) -> tuple[PortGuard | None, str]:
    """The server's guard and the line it says at start; None and why, without one. ``euid``:
    the server's effective uid (this process's by default)."""
    if (os.geteuid() if euid is None else euid) != 0:
        return None, (
            "dyno ports open to every local process, which may spoof X-Forwarded-For "
            "(closing them needs root)"
        )
    try:
        guard = PortGuard.open(home)
    except FirewallError as exc:
        # The server runs on, as it does without cgroups: refusing to start would take every
        # app down on a host without nf_tables, for a guard the server can do without.
        return None, (
            f"dyno ports OPEN to every local process, which may spoof X-Forwarded-For: "
            f"{exc.message}. Closing them needs nftables (libnftables), Linux 5.12 or later "
            "and CAP_NET_ADMIN."
        )
    return guard, (
        "dyno ports reachable only by the router and their app's own dynos "
        f"(nftables table inet {guard.rules.table})"
    )
