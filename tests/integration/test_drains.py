"""Log drains against a real server and real receivers on loopback: an HTTPS receiver whose
certificate the server's CA issued, a syslog TCP one and a syslog+tls one; a drain that fails
and comes back; a drain that hangs while the router keeps answering; and the API's refusals.

The server runs with ``--drains-allow-loopback`` (the receivers are on loopback); one test
runs a server without it and sees loopback drains refused.
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynos.platform.tls_files import issue, load_ca
from dynos.testing.drain_receivers import HttpReceiver, SyslogReceiver
from dynos.testing.harness import RunningServer
from tests.integration.conftest import each_test, started

pytestmark = pytest.mark.timeout(300)

FRAME = re.compile(rb"<(\d+)>1 (\S+) (\S+) (\S+) (\S+) - (.*)", re.S)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("drains") / "home"
    yield from started(home, "--stop-grace", "2", "--drains-allow-loopback")


@pytest.fixture
def server(shared: RunningServer) -> Iterator[RunningServer]:
    yield from each_test(shared)


def tls_for(server: RunningServer, tmp_path: Path) -> ssl.SSLContext:
    """A receiver's TLS: a certificate for 127.0.0.1 from the server's own CA."""
    chain, key = issue(load_ca(server.home / "tls"), ["127.0.0.1"])
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    return context


def add_drain(server: RunningServer, app: str, url: str) -> dict[str, str]:
    with server.api() as api:
        response = api.post(f"/apps/{app}/log-drains", json={"url": url})
    assert response.status_code == 201, response.text
    drain: dict[str, str] = response.json()
    return drain


def make_lines(server: RunningServer, app: str, marker: str, requests: int = 3) -> None:
    """app[api] lines (a config change) and router lines (requests to an app with no dyno)."""
    with server.api() as api:
        assert api.patch(f"/apps/{app}/config-vars", json={"MARK": marker}).status_code == 200
    with server.router(app) as router:
        for _ in range(requests):
            assert router.get(f"/{marker}").status_code == 503  # H14: no web dynos


def test_https_drain_gets_logplex_posts(server: RunningServer, tmp_path: Path) -> None:
    server.create_app("drained")
    receiver = HttpReceiver(tls=tls_for(server, tmp_path))
    receiver.start()
    try:
        drain = add_drain(server, "drained", f"https://127.0.0.1:{receiver.port}/logs?x=1")
        assert re.fullmatch(r"d\.[0-9a-f-]{36}", drain["token"])
        make_lines(server, "drained", "first")
        receiver.wait(
            lambda: sum(b'path="/first"' in m for m in receiver.messages()) == 3,
            what="the three router lines",
        )
    finally:
        receiver.stop()
    posts = receiver.delivered()
    for post in posts:
        assert post.headers["content-type"] == "application/logplex-1"
        assert post.headers["logplex-drain-token"] == drain["token"]
        assert re.fullmatch(r"[0-9A-F]{32}", post.headers["logplex-frame-id"])
        assert int(post.headers["logplex-msg-count"]) == len(post.messages) > 0
    assert len({p.headers["logplex-frame-id"] for p in posts}) == len(posts)
    fields = [FRAME.fullmatch(m) for m in receiver.messages()]
    assert all(fields), receiver.messages()
    parsed = [f.groups() for f in fields if f]
    api_lines = [p for p in parsed if p[3:5] == (b"app", b"api")]
    assert any(b"Set MARK config vars" in p[5] for p in api_lines)
    assert all(p[0] == b"190" and p[2] == b"host" for p in api_lines)
    router = [p for p in parsed if p[4] == b"router"]
    assert len(router) == 3 and all(p[0] == b"158" and b"code=H14" in p[5] for p in router)


@pytest.mark.parametrize("scheme", ["syslog", "syslog+tls"])
def test_syslog_drains_get_octet_counted_rfc5424(
    server: RunningServer, tmp_path: Path, scheme: str
) -> None:
    app = "sysloged" if scheme == "syslog" else "sysloged-tls"
    server.create_app(app)
    receiver = SyslogReceiver(tls=tls_for(server, tmp_path) if scheme.endswith("tls") else None)
    receiver.start()
    try:
        drain = add_drain(server, app, f"{scheme}://127.0.0.1:{receiver.port}")
        make_lines(server, app, "syslogged")
        receiver.wait(
            lambda: sum(b"code=H14" in m for m in receiver.messages()) == 3, what="H14 lines"
        )
    finally:
        receiver.stop()
    parsed = [FRAME.fullmatch(m) for m in receiver.messages()]
    assert all(parsed)
    # The token names the drain in each message's HOSTNAME: syslog carries no header.
    assert {p.group(3) for p in parsed if p} == {drain["token"].encode()}
    assert receiver.connections == 1


def test_a_failing_drain_gets_the_batch_again_with_the_same_frame_id(
    server: RunningServer, tmp_path: Path
) -> None:
    server.create_app("flaky")
    receiver = HttpReceiver(mode="fail")
    receiver.start()
    try:
        add_drain(server, "flaky", f"http://127.0.0.1:{receiver.port}/")
        make_lines(server, "flaky", "retried", requests=1)
        receiver.wait(lambda: len(receiver.posts) >= 3, what="three failed attempts")
        receiver.mode = "ok"
        receiver.wait(lambda: bool(receiver.delivered()), what="a delivered retry")
    finally:
        receiver.stop()
    first, delivered = receiver.posts[0], receiver.delivered()[0]
    assert delivered.headers["logplex-frame-id"] == first.headers["logplex-frame-id"]
    assert delivered.body == first.body
    attempts = [
        p
        for p in receiver.posts
        if p.headers["logplex-frame-id"] == first.headers["logplex-frame-id"]
    ]
    assert len(attempts) >= 4


def test_a_dead_drain_that_comes_back_gets_the_lines(server: RunningServer) -> None:
    server.create_app("revived")
    receiver = HttpReceiver()
    receiver.start()
    port = receiver.port
    receiver.stop()  # nothing listens there now: connections are refused
    add_drain(server, "revived", f"http://127.0.0.1:{port}/")
    make_lines(server, "revived", "while-dead", requests=2)
    time.sleep(2)  # a few refused attempts
    back = HttpReceiver(port=port)
    back.start()
    try:
        back.wait(
            lambda: sum(b"/while-dead" in m for m in back.messages()) == 2,
            timeout=60,
            what="the lines logged while the drain was down",
        )
    finally:
        back.stop()


def test_the_router_answers_while_a_drain_hangs(server: RunningServer) -> None:
    server.create_app("hung")
    receiver = HttpReceiver(mode="hang")
    receiver.start()
    try:
        add_drain(server, "hung", f"http://127.0.0.1:{receiver.port}/")
        make_lines(server, "hung", "first", requests=1)
        receiver.wait(lambda: bool(receiver.posts), what="the drain's first POST")
        started_at = time.monotonic()
        with server.router("hung") as router:
            statuses = {router.get(f"/n{n}").status_code for n in range(300)}
        elapsed = time.monotonic() - started_at
        assert statuses == {503}
        assert elapsed < 30, f"300 requests took {elapsed:.1f} s with a hung drain"
        with server.api() as api:  # the API answers too, and lists the drain
            assert len(api.get("/apps/hung/log-drains").json()) == 1
    finally:
        receiver.stop()


def test_the_api_lists_reads_and_removes_by_url_or_token(server: RunningServer) -> None:
    server.create_app("listed")
    one = add_drain(server, "listed", "https://logs.example.com/a")
    two = add_drain(server, "listed", "syslog+tls://logs.example.com:6514")
    with server.api() as api:
        assert [d["url"] for d in api.get("/apps/listed/log-drains").json()] == [
            one["url"],
            two["url"],
        ]
        assert api.get(f"/apps/listed/log-drains/{one['token']}").json()["id"] == one["id"]
        again = api.post("/apps/listed/log-drains", json={"url": one["url"]})
        assert again.status_code == 409 and again.json()["id"] == "conflict"
        removed = api.delete("/apps/listed/log-drains/" + "https:%2F%2Flogs.example.com%2Fa")
        assert removed.status_code == 200 and removed.json()["id"] == one["id"]
        assert api.delete(f"/apps/listed/log-drains/{two['token']}").status_code == 200
        assert api.get("/apps/listed/log-drains").json() == []
        missing = api.delete(f"/apps/listed/log-drains/{two['token']}")
        assert missing.status_code == 404 and "drains -a APP" in missing.json()["message"]
        logs = server.logs("listed")
    assert "Add drain https://logs.example.com/a" in logs


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://x.example.com/", "scheme ftp"),
        ("https://", "names no host"),
        ("https://0.0.0.0:9/", "not a host a drain can send to"),
        ("", "needs a URL"),
    ],
)
def test_bad_drain_urls_are_refused_with_a_reason(
    server: RunningServer, url: str, says: str
) -> None:
    with server.api() as api:
        api.post("/apps", json={"name": "refusing"})  # 409 after the first case: it exists
        response = api.post("/apps/refusing/log-drains", json={"url": url})
        assert response.status_code == 422, response.text
        assert response.json()["id"] == "invalid_params" and says in response.json()["message"]
        assert api.get("/apps/refusing/log-drains").json() == []


def test_loopback_drains_are_refused_without_the_allowance(own_server: RunningServer) -> None:
    own_server.create_app("guarded")
    with own_server.api() as api:
        for url in ("http://127.0.0.1:5050/", "syslog://localhost:514", "https://169.254.169.254/"):
            response = api.post("/apps/guarded/log-drains", json={"url": url})
            assert response.status_code == 422
            assert "--drains-allow-loopback" in response.json()["message"]


def test_the_dynos_cli_adds_lists_and_removes_drains(server: RunningServer) -> None:
    server.create_app("clidrained")
    added = server.cli("drains:add", "syslog+tls://logs.example.com:6514", "-a", "clidrained")
    assert added.stdout == "Successfully added drain syslog+tls://logs.example.com:6514\n"
    listed = server.cli("drains", "-a", "clidrained").stdout.splitlines()
    assert listed[0] == "=== Drains"
    url, token = re.fullmatch(r"(\S+) \((d\.[0-9a-f-]{36})\)", listed[1]).groups()  # type: ignore[union-attr]
    assert url == "syslog+tls://logs.example.com:6514"
    as_json = server.cli("drains", "--json", "-a", "clidrained").stdout
    assert f'"token": "{token}"' in as_json
    refused = server.cli("drains:add", "ftp://logs.example.com", "-a", "clidrained", check=False)
    assert refused.returncode == 1 and "use https://, http://, syslog://" in refused.stderr
    removed = server.cli("drains:remove", token, "-a", "clidrained")
    assert removed.stdout == f"Successfully removed drain {url}\n"
    assert server.cli("drains", "-a", "clidrained").stdout == ""


def test_a_renamed_apps_lines_still_reach_its_drain(server: RunningServer) -> None:
    server.create_app("before-rename")
    receiver = SyslogReceiver()
    receiver.start()
    try:
        add_drain(server, "before-rename", f"syslog://127.0.0.1:{receiver.port}")
        with server.api() as api:
            renamed = api.patch("/apps/before-rename", json={"name": "after-rename"})
            assert renamed.status_code == 200, renamed.text
        make_lines(server, "after-rename", "renamed", requests=1)
        receiver.wait(
            lambda: any(b"/renamed" in m for m in receiver.messages()),
            what="the renamed app's line",
        )
        with server.api() as api:  # and a destroyed app's drain stops with it
            assert api.delete("/apps/after-rename").status_code == 200
    finally:
        receiver.stop()


@pytest.fixture
def small_buffer(tmp_path: Path) -> Iterator[RunningServer]:
    """A server holding 20 lines per drain."""
    options = ("--stop-grace", "2", "--drains-allow-loopback", "--drain-buffer", "20")
    yield from started(tmp_path / "home", *options)


L10 = re.compile(
    rb"dynos logplex - Error L10 \(output buffer overflow\): (\d+) messages dropped since \S+\."
)


def test_an_overflowing_drain_gets_an_l10_line(small_buffer: RunningServer) -> None:
    """The drain answers 503 while 40 requests are logged, then comes back: the lines held
    arrive, and an L10 line with the count of the others."""
    small_buffer.create_app("overflowing")
    receiver = HttpReceiver(mode="fail")
    receiver.start()
    try:
        add_drain(small_buffer, "overflowing", f"http://127.0.0.1:{receiver.port}/")
        make_lines(small_buffer, "overflowing", "first", requests=1)
        receiver.wait(lambda: bool(receiver.posts), what="the first (failing) POST")
        make_lines(small_buffer, "overflowing", "flood", requests=40)
        receiver.mode = "ok"
        receiver.wait(
            lambda: any(b"Error L10" in m for m in receiver.messages()),
            timeout=60,
            what="the L10 line",
        )
    finally:
        receiver.stop()
    messages = receiver.messages()
    (l10,) = [m for m in messages if b"Error L10" in m]
    found = L10.search(l10)
    assert found, l10
    held = [m for m in messages if b"Error L10" not in m]
    assert len(held) <= 20  # the buffer's 20 (the batch out among them)
    # Every flood line was delivered or counted (the count has some of the API's lines too).
    assert sum(b"/flood" in m for m in held) + int(found.group(1)) >= 40
