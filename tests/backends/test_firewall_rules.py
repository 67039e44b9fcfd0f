"""The firewall's pure part: the table it creates and the changes it renders per dyno."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynos.backends.firewall import PortRules, guard_ports, table_name

TABLE = table_name(42)


def test_a_servers_table_is_named_for_its_process() -> None:
    assert TABLE == "dynos_42"


def test_the_table_belongs_to_the_server_and_guards_syns_to_its_ports() -> None:
    script = PortRules(TABLE, 7).create(Path("/var/lib/dynos"))
    assert script.startswith(f"table inet {TABLE} {{\n    flags owner\n")
    assert 'comment "dynos server on /var/lib/dynos"' in script
    # The router's uid and the port's app user pass; SYNs only; remote SYNs are dropped.
    assert (
        "tcp dport @ports tcp flags & (syn | ack) == syn meta skuid != 7 "
        "tcp dport . meta skuid != @allowed reject with tcp reset"
    ) in script
    assert 'tcp dport @ports tcp flags & (syn | ack) == syn iif != "lo" drop' in script


def test_a_home_that_nft_could_not_quote_is_kept_readable_in_the_comment() -> None:
    script = PortRules(TABLE, 0).create(Path('/srv/"x"\\y') / ("z" * 200))
    comment = next(line for line in script.splitlines() if "comment" in line)
    assert comment.count('"') == 2 and "\\" not in comment
    assert comment.endswith('zzz"') and len(comment) < 160


def test_allowing_a_port_guards_it_and_lets_its_app_user_in() -> None:
    rules = PortRules(TABLE, 0)
    assert rules.allow(5000, 1001) == (
        f"add element inet {TABLE} ports {{ 5000 }}\n"
        f"add element inet {TABLE} allowed {{ 5000 . 1001 }}\n"
    )
    assert rules.allow(5000, 1001) == ""  # nothing to change
    assert rules.owners == {5000: 1001}


def test_a_port_given_to_another_app_changes_hands_and_the_late_revoke_changes_nothing() -> None:
    rules = PortRules(TABLE, 0)
    rules.allow(5000, 1001)
    # The first dyno is gone but its revoke has not come when the port is given again.
    assert rules.allow(5000, 1002) == (
        f"delete element inet {TABLE} allowed {{ 5000 . 1001 }}\n"
        f"add element inet {TABLE} allowed {{ 5000 . 1002 }}\n"
    )
    assert rules.revoke(5000, 1001) == ""
    assert rules.owners == {5000: 1002}


def test_revoking_a_port_removes_its_pair_and_the_port() -> None:
    rules = PortRules(TABLE, 0)
    rules.allow(5000, 1001)
    assert rules.revoke(5000, 1001) == (
        f"delete element inet {TABLE} allowed {{ 5000 . 1001 }}\n"
        f"delete element inet {TABLE} ports {{ 5000 }}\n"
    )
    assert rules.owners == {}
    assert rules.revoke(5000, 1001) == ""


def test_forget_drops_an_allow_that_never_reached_the_table() -> None:
    rules = PortRules(TABLE, 0)
    rules.allow(5000, 1001)
    rules.forget(5000, 1002)  # not its owner: kept
    assert rules.owners == {5000: 1001}
    rules.forget(5000, 1001)
    assert rules.owners == {}


def test_delete_removes_the_whole_table() -> None:
    assert PortRules(TABLE, 0).delete() == f"delete table inet {TABLE}\n"


def test_without_root_the_server_says_dyno_ports_are_open_to_every_local_process() -> None:
    guard, line = guard_ports(Path("/var/lib/dynos"), euid=1000)
    assert guard is None
    assert line == (
        "dyno ports open to every local process, which may spoof X-Forwarded-For "
        "(closing them needs root)"
    )


def test_the_add_on_gateway_is_reached_only_from_loopback_and_its_bridge() -> None:
    rule = PortRules(TABLE, 0).confine("172.18.0.1", "br-0123456789ab")
    assert rule == (
        f"add rule inet {TABLE} input ip daddr 172.18.0.1 tcp flags & (syn | ack) == syn "
        'iifname != { "lo", "br-0123456789ab" } drop\n'
    )
    for address, interface in [("172.18.0.1; flush ruleset", "br0"), ("10.0.0.1", 'b" }')]:
        with pytest.raises(ValueError):
            PortRules(TABLE, 0).confine(address, interface)


def test_the_swarm_fence_drops_new_connections_from_the_bridge_to_each_destination() -> None:
    rules = PortRules("dynos_1", router_uid=0)
    said = rules.fence("br-0123456789ab", ["10.0.0.0/8", "203.0.113.7/32"], ["10.255.255.53"])
    assert "hook forward" in said
    lines = said.splitlines()
    for hook in ("forward", "input"):  # input: the node's own addresses (the proxy's way)
        where = f'add rule inet dynos_1 {hook} iifname "br-0123456789ab" '
        drop = where + "ip daddr { 10.0.0.0/8, 203.0.113.7/32 } ct state new drop"
        joined = where + "ip daddr @swarm_nodes ct state new drop"  # nodes that join later
        # Port 53 to the host's resolver, before the drop (the engine's embedded DNS
        # forwards a container's lookups from its namespace); nothing else gets through.
        dns = [where + f"ip daddr {{ 10.255.255.53 }} {p} dport 53 accept" for p in ("udp", "tcp")]
        ours = [line for line in lines if line.startswith(where)]
        assert ours == [joined, *dns, drop]
    assert lines[0] == "add set inet dynos_1 swarm_nodes { type ipv4_addr; }"
    assert said.count(" accept\n") == 4
    # No resolver: no exception at all.
    assert " accept\n" not in rules.fence("br-x", ["10.0.0.0/8"], [])
    for bad_interface in ("", "a" * 16, 'br"; flush ruleset'):
        with pytest.raises(ValueError):
            rules.fence(bad_interface, ["10.0.0.0/8"], [])
    for bad_destination in ("10.0.0.1/8", "::1", "10.0.0.0/8 }; flush ruleset"):
        with pytest.raises(ValueError):
            rules.fence("br-x", [bad_destination], [])
    for bad_resolver in ("10.0.0.0/8", "::1", "10.0.0.1 }; flush ruleset", "256.1.1.1"):
        with pytest.raises(ValueError):
            rules.fence("br-x", ["10.0.0.0/8"], [bad_resolver])


def test_the_add_on_ports_admit_loopback_the_manager_s_bridges_and_the_nodes_only() -> None:
    rules = PortRules(TABLE, 0)
    said = rules.open_addons("10.77.0.1", range(19000, 20000), ["docker_gwbridge", "dynos*"])
    where = f"add rule inet {TABLE} input ip daddr 10.77.0.1 tcp dport 19000-19999"
    assert said.splitlines() == [
        f"add set inet {TABLE} swarm_nodes {{ type ipv4_addr; }}",
        f"{where} tcp flags & (syn | ack) == syn "
        """iifname != { "lo", "docker_gwbridge", "dynos*" } ip saddr != @swarm_nodes drop""",
        f'{where} iifname "docker_gwbridge" accept',
        f'{where} iifname "dynos*" accept',  # before the fence's drop of the address
    ]
    made = f"add set inet {TABLE} swarm_nodes {{ type ipv4_addr; }}\n"
    assert rules.swarm_nodes(["10.77.0.3", "10.77.0.2", "10.77.0.3"]) == (
        f"{made}flush set inet {TABLE} swarm_nodes\n"
        f"add element inet {TABLE} swarm_nodes {{ 10.77.0.2, 10.77.0.3 }}\n"
    )
    assert rules.swarm_nodes([]) == f"{made}flush set inet {TABLE} swarm_nodes\n"
    # A node's junk address (as the engine may report one) is left out, the rest kept.
    junk = ["10.77.0.1; drop", "::1", "", "010.77.0.2"]
    assert rules.swarm_nodes([*junk, "10.77.0.2"]) == (
        f"{made}flush set inet {TABLE} swarm_nodes\n"
        f"add element inet {TABLE} swarm_nodes {{ 10.77.0.2 }}\n"
    )
    for bad in junk:
        with pytest.raises(ValueError):
            rules.open_addons(bad, range(19000, 20000), [])
    for bad_interface in ('br" accept', "*", "br*x"):
        with pytest.raises(ValueError):
            rules.open_addons("10.77.0.1", range(19000, 20000), [bad_interface])
