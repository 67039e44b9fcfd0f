"""The swarm guard's rules (core/swarm_guard.py): who reaches a dyno, where a dyno may go.

The rules run for real on the lab's two nodes in tests/integration/test_swarm_backend.py;
here, what they say, and what the script's shell functions do with a node's files and
iptables played by a stub (``h``, the script's way to run a command of the node)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dynos.backends import container_cgroups
from dynos.backends.ports import LOWEST
from dynos.core.swarm_guard import (
    ADDON_PORTS,
    GATEWAY_BRIDGE,
    PRIVATE_RANGES,
    addon_port_range,
    app_network,
    blocked_destinations,
    chain_names,
    fence_resolvers,
    guard_constraint,
    guard_health,
    guard_rules,
    guard_script,
    host_resolvers,
    ipv6_rules,
    resolver_rules,
    router_source,
    rules_layout,
    teardown_health,
    teardown_script,
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
    rules = forward_rules(guard_rules(SERVER, "10.77.0.1", ["10.77.0.2"], ["10.255.255.53"]))
    into = [r for r in rules if f"-o {GATEWAY_BRIDGE}" in r]
    # Answers first, then the router's connections, then nobody else's.
    assert "--ctstate RELATED,ESTABLISHED -j RETURN" in rules[0]
    assert into == [
        rules[1],
        rules[2],
    ], "nothing else may mention the bridge as output"
    assert "-s 10.77.0.1/32" in into[0] and into[0].endswith("-j RETURN")
    assert into[1].endswith(f"-o {GATEWAY_BRIDGE} -j DROP")


def test_a_task_reaches_its_node_s_resolvers_but_no_node_private_or_link_local_address() -> None:
    rules = guard_rules(SERVER, "10.77.0.1", ["10.77.0.2", "203.0.113.9"], ["10.255.255.53"])
    out = [r for r in forward_rules(rules) if f"-i {GATEWAY_BRIDGE}" in r]
    # The add-on servers' ports on the router's address first (the next test), then the
    # router and every node, port 53 included; then port 53 to the resolver only, before the
    # private ranges' drops (a private resolver is the usual case).
    assert out.pop(0).endswith(f"-d 10.77.0.1/32 -p tcp --dport {addon_port_range()} -j RETURN")
    nodes = [r.split(" -d ")[1].split()[0] for r in out[:3]]
    assert nodes == ["10.77.0.1/32", "10.77.0.2/32", "203.0.113.9/32"]
    assert all(r.endswith("-j DROP") for r in out[:3])
    assert out[3:5] == resolver_rules(SERVER, "10.255.255.53")
    assert out[3].endswith("-d 10.255.255.53/32 -p udp --dport 53 -j RETURN")
    assert out[4].endswith("-d 10.255.255.53/32 -p tcp --dport 53 -j RETURN")
    assert sum("--dport 53" in r for r in out) == 2  # no other address gets port 53
    dropped = [r.split(" -d ")[1].split()[0] for r in out[5:]]
    assert all(r.endswith("-j DROP") for r in out[5:])
    assert dropped == list(PRIVATE_RANGES)
    assert "169.254.0.0/16" in dropped  # a cloud's metadata service


def test_a_resolver_that_is_a_node_or_the_router_opens_no_port_53_there() -> None:
    # A name server on a node (or the manager): its drop comes before every exception.
    rules = forward_rules(guard_rules(SERVER, "10.77.0.1", ["10.77.0.2"], ["10.77.0.2"]))
    drop = next(i for i, r in enumerate(rules) if "-d 10.77.0.2/32 -j DROP" in r)
    assert drop < min(i for i, r in enumerate(rules) if "--dport 53" in r)
    # The manager's fence gets no exception for them at all.
    resolvers = ["10.77.0.1", "10.255.255.53", "10.77.0.2"]
    assert fence_resolvers(resolvers, "10.77.0.1", ["10.77.0.2", ""]) == ["10.255.255.53"]


def test_blocked_destinations_are_each_listed_once_and_bad_addresses_skipped() -> None:
    got = blocked_destinations("10.77.0.1", ["10.77.0.1", "", "?", "198.51.100.7"])
    assert got == [*PRIVATE_RANGES, "10.77.0.1/32", "198.51.100.7/32"]


def test_a_task_reaches_the_add_on_ports_of_the_router_s_address_and_nothing_else_there() -> None:
    forward, inbound = chain_names(SERVER)
    lines = guard_rules(SERVER, "10.77.0.1", ["10.77.0.2"], []).splitlines()
    ports = addon_port_range()
    assert ports == f"{ADDON_PORTS.start}:{ADDON_PORTS.stop - 1}" == "19000:19999"
    opened = [line for line in lines if line.endswith("-j RETURN") and "-d 10.77.0." in line]
    assert opened == [
        f"-A {forward} -i {GATEWAY_BRIDGE} -d 10.77.0.1/32 -p tcp --dport {ports} -j RETURN",
        f"-A {inbound} -i {GATEWAY_BRIDGE} -d 10.77.0.1/32 -p tcp --dport {ports} -j RETURN",
    ]
    # Each before its chain's drop of the router's address (forwarded) or of all (input).
    assert lines.index(opened[0]) < lines.index(
        f"-A {forward} -i {GATEWAY_BRIDGE} -d 10.77.0.1/32 -j DROP"
    )
    assert lines.index(opened[1]) < lines.index(f"-A {inbound} -i {GATEWAY_BRIDGE} -j DROP")
    # Below the dyno ports and the kernel's ephemeral range.
    assert ADDON_PORTS.stop <= LOWEST


def test_nothing_a_task_starts_reaches_its_node() -> None:
    _, inbound = chain_names(SERVER)
    rules = [
        line
        for line in guard_rules(SERVER, "10.77.0.1", [], []).splitlines()
        if line.startswith(f"-A {inbound} ")
    ]
    assert rules[-1] == f"-A {inbound} -i {GATEWAY_BRIDGE} -j DROP"
    assert "RELATED,ESTABLISHED" in rules[0]


def test_the_rules_replace_the_chains_at_once() -> None:
    rules = guard_rules(SERVER, "10.77.0.1", [], ["192.0.2.53"])
    forward, inbound = chain_names(SERVER)
    assert rules.startswith(f"*filter\n:{forward} - [0:0]\n:{inbound} - [0:0]\n")
    assert "COMMIT" not in rules  # the script adds it after the task's mark


def test_the_guard_keeps_its_rules_on_sigterm_and_only_the_teardown_removes_them() -> None:
    script = guard_script(SERVER, "10.77.0.1", ["10.77.0.2"])
    subprocess.run(["sh", "-n", "-c", script], check=True)
    forward, inbound = chain_names(SERVER)
    trap = next(line for line in script.splitlines() if line.startswith("trap "))
    assert trap == "trap 'exit 0' TERM INT"  # a restart or a drained node: the rules stay
    assert " -D " not in script and " -X " not in script and " -F " not in script
    assert "iptables-restore -w --noflush" in script
    assert '"$GUARD_TASK"' in script
    teardown = teardown_script(SERVER)
    subprocess.run(["sh", "-n", "-c", teardown], check=True)
    assert f"-D DOCKER-USER -j {forward}" in teardown and f"-D INPUT -j {inbound}" in teardown
    assert f"ip6tables -w -X {inbound}" in teardown
    subprocess.run(["sh", "-n", "-c", teardown_health(SERVER)], check=True)


# The script's functions run with ``h`` (the node's commands) played by files: the node's root
# under $ROOT, what iptables-restore read in $STATE/restore4 and 6, what ``iptables -S CHAIN``
# prints in $STATE/S4.CHAIN (and S6), whether a jump is there as $STATE/J4.CHAIN.TARGET.
STUB = """
h() {
  case "$1" in
    cat) cat "$ROOT$2" ;;
    iptables-restore) cat >"$STATE/restore4" ;;
    ip6tables-restore) cat >"$STATE/restore6" ;;
    iptables | ip6tables)
      v=4; [ "$1" = ip6tables ] && v=6
      case "$3" in
        -S) cat "$STATE/S$v.$4" 2>/dev/null ;;
        -C) [ -e "$STATE/J$v.$4.$6" ] ;;
        -n) [ "$4" = -L ] && [ -e "$STATE/S$v.$5" ] ;;
      esac ;;
  esac
}
"""


def functions(script: str) -> str:
    """The script's function definitions, without its main loop."""
    return script.split("trap 'exit 0'")[0]


def run(script: str, call: str, root: Path, state: Path) -> subprocess.CompletedProcess[str]:
    env = {"ROOT": str(root), "STATE": str(state), "GUARD_TASK": "task1", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        ["sh", "-c", functions(script) + STUB + call], env=env, capture_output=True, text=True
    )


def node(tmp_path: Path, resolv: dict[str, str]) -> tuple[Path, Path]:
    root, state = tmp_path / "root", tmp_path / "state"
    state.mkdir()
    for name, text in resolv.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root, state


@pytest.mark.parametrize(
    ("files", "resolvers"),
    [
        ({"etc/resolv.conf": "search lab\nnameserver 10.255.255.53\n"}, ["10.255.255.53"]),
        # Loopback resolvers are the node's own (the engine does not use them): systemd's
        # file, then Docker's defaults. Junk and IPv6 are never written into a rule.
        (
            {
                "etc/resolv.conf": "nameserver 127.0.0.53\n",
                "run/systemd/resolve/resolv.conf": "nameserver 192.0.2.1\nnameserver 192.0.2.2\n",
            },
            ["192.0.2.1", "192.0.2.2"],
        ),
        (
            {"etc/resolv.conf": "nameserver 127.0.0.1\nnameserver ::1\nnameserver 1.2.3.4;x\n"},
            ["8.8.8.8", "8.8.4.4"],
        ),
        # An octet over 255 or with a leading zero is no address (iptables would refuse the
        # whole chain, leaving the node unguarded, or read it as another address).
        (
            {"etc/resolv.conf": "nameserver 256.1.1.1\nnameserver 10.0.0.09\nnameserver 9.9.9.9\n"},
            ["9.9.9.9"],
        ),
    ],
)
def test_the_script_writes_the_rules_with_its_node_s_resolvers(
    tmp_path: Path, files: dict[str, str], resolvers: list[str]
) -> None:
    script = guard_script(SERVER, "10.77.0.1", ["10.77.0.2"])
    root, state = node(tmp_path, files)
    said = run(script, "rules", root, state)
    assert said.returncode == 0, said.stderr
    assert said.stdout == guard_rules(SERVER, "10.77.0.1", ["10.77.0.2"], resolvers)
    # The server reads its own machine's files (for the manager's fence) the same way.
    texts = [files.get(name) for name in ("etc/resolv.conf", "run/systemd/resolve/resolv.conf")]
    assert host_resolvers(texts) == resolvers


def loaded(tmp_path: Path) -> tuple[str, Path, Path]:
    """The script's ``load`` run once: the chains as iptables would then list them."""
    script = guard_script(SERVER, "10.77.0.1", ["10.77.0.2"])
    root, state = node(tmp_path, {"etc/resolv.conf": "nameserver 10.255.255.53\n"})
    (root / "proc/sys/net/ipv4").mkdir(parents=True)
    said = run(script, "load", root, state)
    assert said.returncode == 0, said.stderr
    forward, inbound = chain_names(SERVER)
    for version in ("4", "6"):
        restored = (state / f"restore{version}").read_text().splitlines()
        assert restored[-1] == "COMMIT"
        for chain in (forward, inbound):
            rules = [line for line in restored if line.startswith(f"-A {chain} ")]
            if rules:
                (state / f"S{version}.{chain}").write_text(f"-N {chain}\n" + "\n".join(rules))
        for chain, target in (("DOCKER-USER", forward), ("INPUT", inbound)):
            (state / f"J{version}.{chain}.{target}").touch()
    return script, root, state


def test_the_chain_s_mark_counts_its_rules_and_a_flushed_or_cut_chain_is_not_whole(
    tmp_path: Path,
) -> None:
    script, root, state = loaded(tmp_path)
    forward, inbound = chain_names(SERVER)
    listed = (state / f"S4.{forward}").read_text().splitlines()
    assert listed[-1] == (
        f'-A {forward} -m comment --comment "dynos guard task task1 rules {len(listed) - 1}"'
        " -j RETURN"
    )
    health = guard_health(SERVER)
    assert run(health, "intact && jumped", root, state).returncode == 0
    assert run(script, "intact", root, state).returncode == 0
    # Flushed (not deleted): the chain is there, empty. The check and the health fail.
    (state / f"S4.{forward}").write_text(f"-N {forward}\n")
    assert run(script, "intact", root, state).returncode == 1
    assert run(health, "intact && jumped", root, state).returncode == 1
    # One rule gone (the mark stays): not whole either.
    (state / f"S4.{forward}").write_text("\n".join([*listed[:3], *listed[4:]]))
    assert run(script, "intact", root, state).returncode == 1
    # The inbound chains, IPv4 and IPv6, flushed.
    (state / f"S4.{forward}").write_text("\n".join(listed))
    for version in ("4", "6"):
        whole = (state / f"S{version}.{inbound}").read_text()
        (state / f"S{version}.{inbound}").write_text(f"-N {inbound}\n")
        assert run(health, "intact && jumped", root, state).returncode == 1
        (state / f"S{version}.{inbound}").write_text(whole)
    assert run(health, "intact && jumped", root, state).returncode == 0
    # A jump gone: unhealthy (the loop puts it back).
    (state / f"J4.DOCKER-USER.{forward}").unlink()
    assert run(health, "intact && jumped", root, state).returncode == 1


def test_the_teardown_is_healthy_only_once_no_chain_is_left(tmp_path: Path) -> None:
    _, root, state = loaded(tmp_path)
    health = teardown_health(SERVER)
    assert run(health, "absent", root, state).returncode == 1
    forward, inbound = chain_names(SERVER)
    for name in (f"S4.{forward}", f"S4.{inbound}"):
        (state / name).unlink()
    assert run(health, "absent", root, state).returncode == 1  # the IPv6 chain is left
    (state / f"S6.{inbound}").unlink()
    assert run(health, "absent", root, state).returncode == 0


def test_no_ipv6_connection_from_elsewhere_opens_a_published_port() -> None:
    _, inbound = chain_names(SERVER)
    rules = (ipv6_rules(SERVER) % "32768").splitlines()
    assert rules[:2] == ["*filter", f":{inbound} - [0:0]"]
    assert rules[2] == f"-A {inbound} -i lo -j RETURN"
    assert "RELATED,ESTABLISHED -j RETURN" in rules[3]
    assert rules[4] == f"-A {inbound} -p tcp --dport 32768:65535 -j DROP"
    assert rules[-1] == "COMMIT"


def test_the_guard_is_healthy_only_with_its_chains_whole_and_jumped_to() -> None:
    forward, inbound = chain_names(SERVER)
    health = guard_health(SERVER)
    assert health.endswith("intact && jumped")
    assert f"iptables -w -C DOCKER-USER -j {forward}" in health
    assert f"iptables -w -C INPUT -j {inbound}" in health
    assert f"ip6tables -w -C INPUT -j {inbound}" in health
    assert f"iptables -w -S {forward}" in health
    subprocess.run(["sh", "-n", "-c", health], check=True)


def test_the_guard_runs_the_usage_reporter_beside_its_loop_and_again_should_it_end() -> None:
    reporter = "import sys\nprint('it\\'s quoted')\n"
    script = guard_script(SERVER, "10.77.0.1", ["10.77.0.2"], reporter)
    subprocess.run(["sh", "-n", "-c", script], check=True)
    lines = script.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("report() {"))
    assert "python3 -I -c" in lines[start] and "/host/sys/fs/cgroup 2 &" in script
    loop = lines.index("while :; do")
    assert start < loop and lines[loop + 1] == '  kill -0 "$reporter" 2>/dev/null || report'
    assert "report" not in guard_script(SERVER, "10.77.0.1", ["10.77.0.2"])


def test_the_reporter_s_real_source_reaches_python_whole_through_the_script(tmp_path: Path) -> None:
    """The guard's ``report`` as the node's shell runs it, with a ``python3`` that keeps what
    it was given: the source of backends/container_cgroups.py, byte for byte."""
    source = Path(container_cgroups.__file__).read_text()
    script = guard_script(SERVER, "10.77.0.1", ["10.77.0.2"], source)
    start = script.index("report() {")
    report = script[start : script.index("\nreport\n", start)]  # the function, many lines
    fake = '#!/bin/sh\nprintf %s "$3" > "$KEPT"; echo "$4 $5" >> "$ARGS"\n'
    (tmp_path / "python3").write_text(fake)
    (tmp_path / "python3").chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    env |= {"KEPT": str(tmp_path / "kept"), "ARGS": str(tmp_path / "args")}
    subprocess.run(["sh", "-c", f"{report}\nreport\nwait"], env=env, check=True, timeout=30)
    assert (tmp_path / "kept").read_text() == source
    assert (tmp_path / "args").read_text() == "/host/sys/fs/cgroup 2\n"


def test_the_rules_layout_names_the_input_chains_counts_the_health_check_compares() -> None:
    # Today's: three IPv4 input rules (answers, the add-on ports, the drop), three IPv6.
    assert rules_layout(SERVER) == "input 3 ipv6 3"
    assert "= 3 ]" in guard_health(SERVER)  # the counts the tasks check are those
