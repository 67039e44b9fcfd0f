"""The swarm guard's rules (core/swarm_guard.py): who reaches a dyno, where a dyno may go.

The rules run for real on the lab's two nodes in tests/integration/test_swarm_backend.py;
here, what they say, and that the script is valid shell."""

from __future__ import annotations

import subprocess

import pytest

from dynos.core.swarm_guard import (
    GATEWAY_BRIDGE,
    PRIVATE_RANGES,
    app_network,
    blocked_destinations,
    chain_names,
    guard_constraint,
    guard_health,
    guard_rules,
    guard_script,
    ipv6_rules,
    router_source,
)

SERVER = "0123456789abcdef"


def forward_rules(rules: str) -> list[str]:
    forward, _ = chain_names(SERVER)
    return [line for line in rules.splitlines() if line.startswith(f"-A {forward} ")]


def test_each_app_has_its_own_network_per_server_named_by_its_id() -> None:
    app_id = "6f1c2a9e-3b4d-4e5f-8a7b-0c1d2e3f4a5b"
    assert app_network(SERVER, app_id) == f"dynos-01234567-{app_id}-net"
    assert len(app_network(SERVER, app_id)) <= 63
    assert app_network(SERVER, app_id) != app_network(SERVER, app_id.replace("6f", "7f"))
    assert app_network("fedcba9876543210", app_id) != app_network(SERVER, app_id)
    assert len(app_network(SERVER, "a" * 100)) <= 63


def test_chains_fit_iptables_and_the_constraint_names_the_server_s_label() -> None:
    forward, inbound = chain_names(SERVER)
    assert len(forward) <= 28 and len(inbound) <= 28 and forward != inbound
    assert guard_constraint(SERVER) == "node.labels.dynos.guard.01234567==on"


def test_the_router_source_is_one_routable_ipv4_address() -> None:
    assert router_source("10.77.0.1") == "10.77.0.1"
    for bad in ("", "0.0.0.0", "127.0.0.1", "::1", "10.77.0.1/24", "10.77.0.1; reboot"):
        with pytest.raises(ValueError):
            router_source(bad)


def test_only_the_router_reaches_a_task_and_answers_come_back() -> None:
    rules = forward_rules(guard_rules(SERVER, "10.77.0.1", ["10.77.0.2"]))
    into = [r for r in rules if f"-o {GATEWAY_BRIDGE}" in r]
    # Answers first, then the router's connections, then nobody else's.
    assert "--ctstate RELATED,ESTABLISHED -j RETURN" in rules[0]
    assert into == [
        rules[1],
        rules[2],
    ], "nothing else may mention the bridge as output"
    assert "-s 10.77.0.1/32" in into[0] and into[0].endswith("-j RETURN")
    assert into[1].endswith(f"-o {GATEWAY_BRIDGE} -j DROP")


def test_a_task_reaches_names_but_no_node_private_or_link_local_address() -> None:
    rules = forward_rules(guard_rules(SERVER, "10.77.0.1", ["10.77.0.2", "203.0.113.9"]))
    out = [r for r in rules if f"-i {GATEWAY_BRIDGE}" in r]
    assert out[0].endswith("-p udp --dport 53 -j RETURN")
    assert out[1].endswith("-p tcp --dport 53 -j RETURN")
    dropped = [r.split(" -d ")[1].split()[0] for r in out[2:]]
    assert all(r.endswith("-j DROP") for r in out[2:])
    assert set(PRIVATE_RANGES) <= set(dropped)
    assert {"10.77.0.1/32", "10.77.0.2/32", "203.0.113.9/32"} <= set(dropped)  # every node
    assert "169.254.0.0/16" in dropped  # a cloud's metadata service


def test_blocked_destinations_are_each_listed_once_and_bad_addresses_skipped() -> None:
    got = blocked_destinations("10.77.0.1", ["10.77.0.1", "", "?", "198.51.100.7"])
    assert got == [*PRIVATE_RANGES, "10.77.0.1/32", "198.51.100.7/32"]


def test_nothing_a_task_starts_reaches_its_node() -> None:
    _, inbound = chain_names(SERVER)
    rules = [
        line
        for line in guard_rules(SERVER, "10.77.0.1", []).splitlines()
        if line.startswith(f"-A {inbound} ")
    ]
    assert rules[-1] == f"-A {inbound} -i {GATEWAY_BRIDGE} -j DROP"
    assert "RELATED,ESTABLISHED" in rules[0]


def test_the_rules_replace_the_chains_at_once() -> None:
    rules = guard_rules(SERVER, "10.77.0.1", [])
    forward, inbound = chain_names(SERVER)
    assert rules.startswith(f"*filter\n:{forward} - [0:0]\n:{inbound} - [0:0]\n")
    assert "COMMIT" not in rules  # the script adds it after the task's mark


def test_the_script_is_valid_shell_and_removes_only_its_own_rules() -> None:
    script = guard_script(SERVER, "10.77.0.1", ["10.77.0.2"])
    subprocess.run(["sh", "-n", "-c", script], check=True)
    forward, inbound = chain_names(SERVER)
    trap = next(line for line in script.splitlines() if line.startswith("trap "))
    assert trap.startswith("trap 'mine && {")  # another task's rules (an update's) stay
    assert f"-D DOCKER-USER -j {forward}" in trap and f"-D INPUT -j {inbound}" in trap
    assert "iptables-restore -w --noflush" in script
    assert '"$GUARD_TASK"' in script


def test_no_ipv6_connection_from_elsewhere_opens_a_published_port() -> None:
    _, inbound = chain_names(SERVER)
    rules = (ipv6_rules(SERVER) % "32768").splitlines()
    assert rules[:2] == ["*filter", f":{inbound} - [0:0]"]
    assert rules[2] == f"-A {inbound} -i lo -j RETURN"
    assert "RELATED,ESTABLISHED -j RETURN" in rules[3]
    assert rules[4] == f"-A {inbound} -p tcp --dport 32768:65535 -j DROP"
    assert rules[-1] == "COMMIT"


def test_the_guard_is_healthy_only_with_its_jumps_in_place() -> None:
    forward, inbound = chain_names(SERVER)
    health = guard_health(SERVER)
    assert f"iptables -w -C DOCKER-USER -j {forward}" in health
    assert f"iptables -w -C INPUT -j {inbound}" in health
    assert f"ip6tables -w -C INPUT -j {inbound}" in health
    subprocess.run(["sh", "-n", "-c", health], check=True)
