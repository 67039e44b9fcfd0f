"""core/drains.py: which drain URLs are accepted, and which addresses a drain may reach."""

from __future__ import annotations

import ipaddress

import pytest

from dynos.core.drains import check_target, drain_id, parse_drain_url, pick_drain, refused_address
from dynos.errors import NotFound, UserError


def test_https_url_with_credentials_path_and_query() -> None:
    target = parse_drain_url("https://user:p%40ss@logs.example.com/in?source=x")
    assert (target.scheme, target.host, target.port) == ("https", "logs.example.com", 443)
    assert target.target == "/in?source=x"
    assert (target.username, target.password) == ("user", "p@ss")
    assert target.http and target.tls


@pytest.mark.parametrize(
    ("url", "port", "tls"),
    [
        ("syslog://logs.example.com:1234", 1234, False),
        ("syslog+tls://logs.example.com", 6514, True),
        ("syslog://logs.example.com", 514, False),
        ("http://10.1.2.3:8080/x", 8080, False),
        ("https://[2001:db8::1]:8443/", 8443, True),
    ],
)
def test_default_ports_and_tls(url: str, port: int, tls: bool) -> None:
    target = parse_drain_url(url)
    assert (target.port, target.tls) == (port, tls)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "needs a URL"),
        (None, "needs a URL"),
        (42, "needs a URL"),
        ("ftp://logs.example.com", "scheme ftp"),
        ("logs.example.com:514", "scheme"),
        ("https://", "names no host"),
        ("https://logs.example.com:99999/", "not a valid URL"),
        ("https://logs.example.com:0/", "port 0"),
        ("https://logs.example.com:http/", "not a valid URL"),
        ("https://log s.example.com/", "spaces"),
        ("https://logs.example.com/\n", "control"),
        ("https://lögs.example.com/", "non-ASCII"),
        ("https://logs..example.com/", "not a hostname"),
        ("https://logs!.example.com/", "not a hostname"),
        ("syslog://user:pw@logs.example.com:514", "syslog has none"),
        ("https://example.com/" + "a" * 3000, "longer than"),
    ],
)
def test_bad_urls_say_what_to_fix(url: object, says: str) -> None:
    with pytest.raises(UserError, match=says):
        parse_drain_url(url)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.9.9.9", "::1", "169.254.169.254", "fe80::1", "::ffff:127.0.0.1"],
)
def test_loopback_and_link_local_only_when_allowed(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert "--drains-allow-loopback" in (refused_address(ip, allow_loopback=False) or "")
    assert refused_address(ip, allow_loopback=True) is None


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"])
def test_never_reachable(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert refused_address(ip, allow_loopback=True) is not None


@pytest.mark.parametrize("address", ["10.0.0.5", "192.168.1.10", "8.8.8.8", "2001:db8::1"])
def test_other_addresses_are_reachable(address: str) -> None:
    assert refused_address(ipaddress.ip_address(address), allow_loopback=False) is None


def test_the_machines_own_addresses_only_when_allowed() -> None:
    """Its LAN address reaches the dynos' ports as loopback does, skipping the router."""
    own = {ipaddress.ip_address("192.168.1.20"), ipaddress.ip_address("2001:db8::20")}
    for address in ("192.168.1.20", "2001:db8::20", "::ffff:192.168.1.20"):
        ip = ipaddress.ip_address(address)
        reason = refused_address(ip, allow_loopback=False, own=own) or ""
        assert "an address of this server" in reason and "--drains-allow-loopback" in reason
        assert refused_address(ip, allow_loopback=True, own=own) is None
    assert (
        refused_address(ipaddress.ip_address("192.168.1.21"), allow_loopback=False, own=own) is None
    )
    url = parse_drain_url("syslog://192.168.1.20:514")
    with pytest.raises(UserError, match="an address of this server"):
        check_target(url, allow_loopback=False, own=own)
    check_target(url, allow_loopback=False)  # another machine's, as far as it knows


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:5050/",
        "syslog://localhost:514",
        "http://api.localhost/",
        "http://[::1]/",
        "http://127.1:5050/",  # the legacy IPv4 spellings resolvers accept
        "http://0x7f000001/",
        "http://2130706433/",
    ],
)
def test_check_target_refuses_loopback_hosts_when_added(url: str) -> None:
    with pytest.raises(UserError, match="drains-allow-loopback"):
        check_target(parse_drain_url(url), allow_loopback=False)
    check_target(parse_drain_url(url), allow_loopback=True)


def test_check_target_lets_names_through_to_be_resolved_later() -> None:
    check_target(parse_drain_url("https://logs.example.com/"), allow_loopback=False)
    with pytest.raises(UserError, match="broadcast"):
        check_target(parse_drain_url("syslog://255.255.255.255:514"), allow_loopback=True)


def test_pick_by_id_url_or_token() -> None:
    drains = ["a", "b"]
    keys = [("id-a", "https://a/", "d.a"), ("id-b", "https://b/", "d.b")]
    assert [pick_drain(drains, q, keys) for q in ("id-b", "https://a/", "d.b")] == ["b", "a", "b"]
    with pytest.raises(NotFound, match="drains -a APP"):
        pick_drain(drains, "https://c/", keys)


def test_drain_ids_are_stable_per_app_and_url() -> None:
    assert drain_id("app1", "https://a/") == drain_id("app1", "https://a/")
    assert drain_id("app1", "https://a/") != drain_id("app2", "https://a/")
