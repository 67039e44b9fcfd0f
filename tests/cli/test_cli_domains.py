"""``dynos domains`` and its subcommands against a fake API (httpx.MockTransport): the
requests sent and what is printed. The real server's answers: tests/integration/test_domains.py."""

from __future__ import annotations

import json

import httpx

from tests.cli.test_cli_commands import run

OWN = {"id": "1", "hostname": "hello.localhost", "kind": "heroku", "cname": None}
WWW = {
    "id": "2",
    "hostname": "www.example.com",
    "kind": "custom",
    "cname": "hello.localhost",
    "status": "succeeded",
    "app": {"id": "a", "name": "hello"},
}
API = {**WWW, "id": "3", "hostname": "api.example.com"}


def test_domains_prints_the_apps_own_hostname_then_a_table_of_custom_ones() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("GET", "/apps/hello/domains")
        served = {**API, "sni_endpoint": {"id": "e1", "name": "stegosaurus-12345"}}
        return httpx.Response(200, json=[OWN, WWW, served])

    result = run(handler, ["domains"])

    assert result.exit_code == 0, result.output
    assert [line.rstrip() for line in result.stdout.splitlines()] == [
        "=== hello Heroku Domain",
        "hello.localhost",
        "",
        "=== hello Custom Domains",
        "Domain Name      DNS Target       SNI Endpoint",
        "www.example.com  hello.localhost",
        "api.example.com  hello.localhost  stegosaurus-12345",
    ]
    alone = run(lambda request: httpx.Response(200, json=[OWN]), ["domains"])
    assert alone.stdout == "=== hello Heroku Domain\nhello.localhost\n"
    as_json = run(lambda request: httpx.Response(200, json=[OWN]), ["domains", "--json"])
    assert json.loads(as_json.stdout) == [OWN]


def test_domains_add_posts_the_hostname_and_says_where_dns_should_point() -> None:
    sent: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/apps/hello/domains")
        sent.append(json.loads(request.content))
        return httpx.Response(201, json=WWW)

    result = run(handler, ["domains:add", "www.example.com"])

    assert result.exit_code == 0, result.output
    assert sent == [{"hostname": "www.example.com", "sni_endpoint": None}]
    assert result.stdout == (
        "Adding www.example.com to \u2b22 hello... done\n"
        "Configure your DNS provider to point www.example.com to the DNS Target "
        "hello.localhost (a CNAME), or to the router's address.\n"
    )


def test_a_refused_domain_is_one_line_and_exit_1() -> None:
    message = "The domain www.example.com is already in use by the app shop: remove it there."

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"id": "conflict", "message": message})

    result = run(handler, ["domains:add", "www.example.com"])

    assert result.exit_code == 1
    assert result.stdout == "Adding www.example.com to \u2b22 hello... !\n"
    assert result.stderr == f"dynos: {message}\n"


def test_domains_remove_and_info_name_the_domain_in_the_path() -> None:
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.raw_path.decode()))
        return httpx.Response(200, json=WWW)

    removed = run(handler, ["domains:remove", "www.example.com"])
    info = run(handler, ["domains:info", "www.example.com"])

    assert removed.stdout == "Removing www.example.com from \u2b22 hello... done\n"
    assert info.stdout.splitlines() == [
        "app:      hello",
        "cname:    hello.localhost",
        "hostname: www.example.com",
        "id:       2",
        "kind:     custom",
        "status:   succeeded",
    ]
    assert seen == [
        ("DELETE", "/apps/hello/domains/www.example.com"),
        ("GET", "/apps/hello/domains/www.example.com"),
    ]


def test_domains_clear_removes_each_custom_domain_and_not_the_apps_own() -> None:
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        return httpx.Response(200, json=[OWN, WWW, API] if request.method == "GET" else WWW)

    result = run(handler, ["domains:clear"])

    assert result.exit_code == 0, result.output
    assert result.stdout == "Removing all domains from \u2b22 hello... done\n"
    assert seen == [
        ("GET", "/apps/hello/domains"),
        ("DELETE", "/apps/hello/domains/2"),
        ("DELETE", "/apps/hello/domains/3"),
    ]
