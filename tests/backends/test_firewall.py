"""The port guard against the real kernel (root only: nftables): who may connect to a guarded
port, from where, and how the table is kept, rewritten and removed."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynos.backends.firewall import FirewallError, PortGuard
from dynos.backends.isolation import runtime_python

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="nftables rules need root")

APP_UID = 65534  # nobody: the app user the port is given to
OTHER_UID = 65533  # anyone else (no passwd entry needed to own a socket)

_CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("connected")
except OSError as exc:
    print(type(exc).__name__)
"""


def connect_as(
    uid: int, host: str, port: int, timeout: float = 5.0, netns: str | None = None
) -> str:
    """Connect to ``host:port`` from a process running as ``uid`` (in network namespace
    ``netns``); "connected" or the name of the error."""
    command = [runtime_python(True), "-c", _CONNECT, host, str(port), str(timeout)]
    if netns is not None:  # entering it needs root: the uid is taken on the way in
        ids = [f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        command = ["ip", "netns", "exec", netns, "setpriv", *ids, *command]
    done = subprocess.run(
        command, user=None if netns else uid, capture_output=True, text=True, timeout=30
    )
    return done.stdout.strip() or done.stderr.strip()


def listener(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, 0))
    sock.listen(16)
    return sock


def table_elements(table: str) -> dict[str, set[str]]:
    """The elements of the table's sets, as nft writes them ("5000", "5000 . 65534")."""
    listing = nft("-n", "list", "table", "inet", table)  # text: 1.0.6's JSON of it is broken
    found: dict[str, set[str]] = {}
    for name, body in re.findall(r"set (\w+) \{(.*?)\n\t\}", listing, re.S):
        elements = re.search(r"elements = \{(.*?)\}", body, re.S)
        items = elements[1].split(",") if elements else []
        found[name] = {" ".join(item.split()) for item in items}
    return found


def nft(*args: str, netns: str | None = None) -> str:
    """The nft command, as another root process than the server (``netns``: in that network
    namespace, whose ruleset is its own); its output, or its error."""
    command = ["nft", *args] if netns is None else ["ip", "netns", "exec", netns, "nft", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    return done.stdout if done.returncode == 0 else f"error: {done.stderr.strip()}"


@pytest.fixture
def guard(tmp_path: Path) -> Iterator[PortGuard]:
    opened = PortGuard.open(tmp_path / "home")
    yield opened
    opened.close()


def test_a_guarded_port_admits_root_and_its_app_user_and_refuses_everyone_else(
    guard: PortGuard,
) -> None:
    with listener() as server, listener("::1") as server6:
        port, port6 = server.getsockname()[1], server6.getsockname()[1]
        assert connect_as(OTHER_UID, "127.0.0.1", port) == "connected"  # before: open to all
        guard.allow(port, APP_UID)
        guard.allow(port6, APP_UID)
        assert connect_as(OTHER_UID, "127.0.0.1", port) == "ConnectionRefusedError"
        assert connect_as(OTHER_UID, "::1", port6) == "ConnectionRefusedError"
        assert connect_as(APP_UID, "127.0.0.1", port) == "connected"
        assert connect_as(APP_UID, "::1", port6) == "connected"
        assert connect_as(0, "127.0.0.1", port) == "connected"  # the router's uid

        guard.revoke(port, APP_UID)
        assert connect_as(OTHER_UID, "127.0.0.1", port) == "connected"
        assert connect_as(OTHER_UID, "::1", port6) == "ConnectionRefusedError"
        assert table_elements(guard.rules.table) == {
            "ports": {str(port6)},
            "allowed": {f"{port6} . {APP_UID}"},
        }


def test_a_port_given_to_another_app_is_closed_to_the_first(guard: PortGuard) -> None:
    with listener() as server:
        port = server.getsockname()[1]
        guard.allow(port, OTHER_UID)
        guard.allow(port, APP_UID)  # before the first dyno's revoke
        guard.revoke(port, OTHER_UID)
        assert connect_as(OTHER_UID, "127.0.0.1", port) == "ConnectionRefusedError"
        assert connect_as(APP_UID, "127.0.0.1", port) == "connected"


def test_closing_deletes_the_table(tmp_path: Path) -> None:
    guard = PortGuard.open(tmp_path / "home")
    table = guard.rules.table
    assert f"table inet {table}\n" in nft("list", "tables")
    guard.close()
    assert table not in nft("list", "tables")


def test_no_other_process_can_change_the_table(guard: PortGuard) -> None:
    table = guard.rules.table
    assert "Operation not permitted" in nft("delete", "table", "inet", table)
    assert "Operation not permitted" in nft("add", "element", "inet", table, "ports", "{ 1 }")
    assert "Operation not permitted" in nft("flush", "table", "inet", table)
    assert table_elements(table) == {"ports": set(), "allowed": set()}


def test_no_child_inherits_the_socket_that_owns_the_table(guard: PortGuard) -> None:
    netfilter = {  # inode of each NETLINK_NETFILTER socket on the machine
        fields[-1]
        for fields in map(str.split, Path("/proc/net/netlink").read_text().splitlines()[1:])
        if fields[1] == "12"
    }
    links = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the descriptor listdir itself used
            links.add(os.readlink(f"/proc/self/fd/{fd}"))
    mine = {link for link in links if link.removeprefix("socket:[")[:-1] in netfilter}
    assert mine  # the guard's
    # Asked to keep every descriptor (as uvloop's children do), a child still lacks that one.
    child = subprocess.run(
        ["ls", "-l", "/proc/self/fd"], close_fds=False, capture_output=True, text=True, check=True
    )
    assert not [link for link in mine if link in child.stdout]


_OPEN_AND_WAIT = """
import sys, time
from pathlib import Path
from dynos.backends.firewall import PortGuard
guard = PortGuard.open(Path(sys.argv[1]))
guard.allow(5000, 65534)
print(guard.rules.table, flush=True)
time.sleep(60)
"""


def test_the_table_goes_with_its_server_even_one_killed(tmp_path: Path) -> None:
    command = [sys.executable, "-c", _OPEN_AND_WAIT, str(tmp_path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            table = server.stdout.readline().strip()
            assert table_elements(table)["ports"] == {"5000"}
        finally:
            server.kill()
    assert table not in nft("list", "tables")


def test_a_reload_of_the_systems_firewall_leaves_the_table(
    tmp_path: Path, other_host: tuple[str, str]
) -> None:
    netns, _ = other_host  # a namespace of its own: flushing its ruleset touches no other
    command = ["ip", "netns", "exec", netns, sys.executable, "-c", _OPEN_AND_WAIT, str(tmp_path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            table = server.stdout.readline().strip()
            assert nft("flush", "ruleset", netns=netns) == ""
            assert f"table inet {table}" in nft("list", "tables", netns=netns)
        finally:
            server.kill()


def test_a_command_nftables_refuses_says_why(guard: PortGuard) -> None:
    with pytest.raises(FirewallError, match="nftables failed: No such file or directory"):
        guard._nft.run("add element inet dynos_no_such_table ports { 1 }\n")


@pytest.fixture
def other_host() -> Iterator[tuple[str, str]]:
    """A network namespace joined to this host by a veth pair: another machine, as far as
    the host's firewall can tell. Yields the namespace and the host's address on the link."""
    tag = uuid.uuid4().hex[:6]
    netns, host_end, peer_end = f"dynos-{tag}", f"dy{tag}a", f"dy{tag}b"
    commands = [
        ["ip", "netns", "add", netns],
        ["ip", "link", "add", host_end, "type", "veth", "peer", "name", peer_end],
        ["ip", "link", "set", peer_end, "netns", netns],
        ["ip", "addr", "add", "10.213.7.1/30", "dev", host_end],
        ["ip", "link", "set", host_end, "up"],
        ["ip", "-n", netns, "addr", "add", "10.213.7.2/30", "dev", peer_end],
        ["ip", "-n", netns, "link", "set", peer_end, "up"],
    ]
    try:
        for command in commands:
            subprocess.run(command, check=True, capture_output=True)
        yield netns, "10.213.7.1"
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


@contextlib.contextmanager
def veth_peer(host_end: str, prefix: str) -> Iterator[tuple[str, str]]:
    """A network namespace behind the host's interface ``host_end`` (``prefix``.1/30, the
    namespace ``prefix``.2, its default route through the host): yields the namespace and
    the host's address on the link."""
    tag = uuid.uuid4().hex[:6]
    netns, peer_end = f"dynos-{tag}", f"dy{tag}p"
    commands = [
        ["ip", "netns", "add", netns],
        ["ip", "link", "add", host_end, "type", "veth", "peer", "name", peer_end],
        ["ip", "link", "set", peer_end, "netns", netns],
        ["ip", "addr", "add", f"{prefix}.1/30", "dev", host_end],
        ["ip", "link", "set", host_end, "up"],
        ["ip", "-n", netns, "addr", "add", f"{prefix}.2/30", "dev", peer_end],
        ["ip", "-n", netns, "link", "set", peer_end, "up"],
        ["ip", "-n", netns, "route", "add", "default", "via", f"{prefix}.1"],
    ]
    try:
        for command in commands:
            subprocess.run(command, check=True, capture_output=True)
        yield netns, f"{prefix}.1"
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


def test_a_guarded_port_is_closed_to_other_hosts_even_on_every_address(
    guard: PortGuard, other_host: tuple[str, str]
) -> None:
    netns, address = other_host
    with listener("0.0.0.0") as guarded, listener("0.0.0.0") as unguarded:
        port = guarded.getsockname()[1]
        guard.allow(port, APP_UID)
        assert connect_as(0, address, unguarded.getsockname()[1], netns=netns) == "connected"
        # Dropped, not refused: the SYN never reaches the dyno, whatever uid sent it.
        assert connect_as(0, address, port, timeout=1, netns=netns) == "TimeoutError"
        assert connect_as(APP_UID, address, port, timeout=1, netns=netns) == "TimeoutError"


_GUARD_LINE = """
from pathlib import Path
from dynos.backends.firewall import guard_ports
guard, line = guard_ports(Path("/var/lib/dynos"))
print(guard is None, line)
"""


def test_without_nftables_rights_the_server_says_ports_are_open_and_runs_on() -> None:
    # Root, but without CAP_NET_ADMIN: as in a container that was not given it.
    command = ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin"]
    done = subprocess.run(
        [*command, sys.executable, "-c", _GUARD_LINE], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith(
        "True dyno ports OPEN to every local process, which may spoof X-Forwarded-For: "
        "nftables failed: "
    )
    assert "Operation not permitted" in done.stdout


def test_the_swarm_fence_is_a_forward_chain_the_kernel_takes(guard: PortGuard) -> None:
    guard.fence(
        "dynos-fence0", ["10.0.0.0/8", "169.254.0.0/16", "203.0.113.7/32"], ["10.255.255.53"]
    )
    dropped = 'iifname "dynos-fence0" ip daddr { 10.0.0.0/8, 169.254.0.0/16, 203.0.113.7 }'
    dns = 'iifname "dynos-fence0" ip daddr 10.255.255.53 udp dport 53 accept'
    forward = nft("list", "chain", "inet", guard.rules.table, "forward")
    assert "hook forward" in forward
    assert dropped in forward and "ct state new drop" in forward
    assert dns in forward and forward.index(dns) < forward.index(dropped)
    assert dropped in nft("list", "chain", "inet", guard.rules.table, "input")


def test_a_node_that_joins_later_is_fenced_off_the_bridge(guard: PortGuard) -> None:
    """A node on a public address is in no private range the fence drops: once the set of
    the swarm's nodes has it, a one-off on the manager's bridge (here, a namespace behind
    an interface of its own) no longer reaches it; nor after the node left and came back."""
    node = "203.0.113.77"  # one of this machine's addresses, as a node's would be its own
    tag = uuid.uuid4().hex[:6]
    subprocess.run(["ip", "addr", "add", f"{node}/32", "dev", "lo"], check=True)
    try:
        with veth_peer(f"dynosf{tag}", "10.213.11") as (bridge, _), listener(node) as sock:
            port = sock.getsockname()[1]
            guard.fence(f"dynosf{tag}", ["10.99.0.0/16"], [])
            assert connect_as(0, node, port, timeout=5, netns=bridge) == "connected"
            guard.nodes_changed([node, "10.213.7.2"])  # it joined: the guard learnt of it
            assert connect_as(0, node, port, timeout=1, netns=bridge) == "TimeoutError"
            guard.nodes_changed([])
            assert connect_as(0, node, port, timeout=5, netns=bridge) == "connected"
    finally:
        subprocess.run(["ip", "addr", "del", f"{node}/32", "dev", "lo"], check=False)


def test_the_add_on_ports_on_the_router_s_address_admit_only_the_swarm_s_nodes(
    guard: PortGuard, other_host: tuple[str, str]
) -> None:
    """Another machine on the router's network (the namespace) reaches the add-on servers
    only while it is one of the swarm's nodes; the host itself always does."""
    netns, address = other_host
    ports = range(19000, 20000)
    sock = socket.socket()
    for port in ports:  # a port of the range, as the add-ons' allocator hands them out
        with contextlib.suppress(OSError):
            sock.bind((address, port))
            break
    sock.listen(16)
    with sock, listener(address) as outside:
        port = sock.getsockname()[1]
        guard.swarm_nodes([])
        guard.open_addons(address, ports, ["dynos-fence0", "dynosx*"])
        assert connect_as(0, address, port, timeout=1, netns=netns) == "TimeoutError"
        # Through an interface the prefix names (another server's one-off bridge): let in.
        with veth_peer("dynosx" + uuid.uuid4().hex[:6], "10.213.9") as (inside, _):
            assert connect_as(0, address, port, timeout=5, netns=inside) == "connected"
        assert connect_as(0, address, port) == "connected"  # the host (its tasks' way in)
        # A port outside the range is not the add-ons' rule's to close.
        assert connect_as(0, address, outside.getsockname()[1], netns=netns) == "connected"
        guard.swarm_nodes(["10.213.7.2", "203.0.113.9"])  # it joined the swarm
        assert connect_as(0, address, port, timeout=5, netns=netns) == "connected"
        guard.nodes_changed(["203.0.113.9"])  # it left (as the guard tells it)
        assert connect_as(0, address, port, timeout=1, netns=netns) == "TimeoutError"
