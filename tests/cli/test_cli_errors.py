"""User errors end as one `dynos: ...` line on stderr and exit status 1, never a traceback."""

from __future__ import annotations

import json
import socket
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from dynos.cli.main import cli
from dynos.cli.session import CliState
from dynos.config import ServerConfig
from dynos.errors import UserError


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def no_server_env(tmp_path: Path) -> dict[str, str]:
    return {
        "DYNOS_API_URL": f"http://127.0.0.1:{closed_port()}",
        "DYNOS_API_KEY": "token",
        "DYNOS_HOME": str(tmp_path),
        "DYNOS_APP": "hello",
    }


def test_bad_scale_argument_exits_1_with_one_line_and_no_request(tmp_path: Path) -> None:
    # A server that is not running proves no request was tried: that would be another error.
    result = CliRunner().invoke(cli, ["ps:scale", "web=two"], env=no_server_env(tmp_path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "dynos: Invalid quantity 'two' in 'web=two': use a whole number, e.g. web=2."
    ]


def test_destroy_without_confirm_exits_1_and_says_to_pass_confirm(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["apps:destroy", "foo"], env=no_server_env(tmp_path))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("dynos: ")
    assert "--confirm foo" in lines[0]


def test_destroy_with_a_different_confirm_is_refused(tmp_path: Path) -> None:
    args = ["apps:destroy", "foo", "--confirm", "bar"]
    result = CliRunner().invoke(cli, args, env=no_server_env(tmp_path))
    assert result.exit_code == 1
    assert "--confirm foo" in result.stderr


def test_config_set_without_equals_sign_exits_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["config:set", "DEBUG"], env=no_server_env(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.startswith("dynos: 'DEBUG' is invalid")


def test_command_without_app_asks_for_one(tmp_path: Path) -> None:
    env = no_server_env(tmp_path)
    del env["DYNOS_APP"]
    result = CliRunner().invoke(cli, ["ps"], env=env)
    assert result.exit_code == 1
    assert result.stderr == "dynos: No app specified: pass -a APP or set DYNOS_APP.\n"


@pytest.mark.parametrize(
    "args",
    [
        ["apps"],
        ["ps"],
        ["ps:scale", "web=2"],
        ["ps:restart"],
        ["config"],
        ["config:set", "A=1"],
        ["releases"],
        ["logs", "--tail"],
        ["open"],
        ["sizes"],
    ],
)
def test_unreachable_server_is_one_line_and_exit_1(tmp_path: Path, args: list[str]) -> None:
    env = no_server_env(tmp_path)
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"dynos: no dynos server is running at {env['DYNOS_API_URL']}. "
        "Start one with 'dynos server' (or set DYNOS_API_URL)."
    )
    assert "Traceback" not in result.output


def test_without_url_or_server_json_the_default_url_is_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["apps"], env={"DYNOS_HOME": str(tmp_path), "DYNOS_API_URL": ""}
    )
    assert result.exit_code == 1
    assert "no dynos server is running at http://127.0.0.1:5050." in result.stderr


def test_server_json_in_the_home_gives_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    (tmp_path / "server.json").write_text(json.dumps({"api_url": url, "pid": 1}))
    result = CliRunner().invoke(
        cli, ["apps"], env={"DYNOS_HOME": str(tmp_path), "DYNOS_API_URL": ""}
    )
    assert result.exit_code == 1
    assert f"no dynos server is running at {url}." in result.stderr


def test_auth_token_prints_the_first_line_of_the_credentials(tmp_path: Path) -> None:
    (tmp_path / "credentials").write_text("s3cret\n")
    env = {"DYNOS_HOME": str(tmp_path), "DYNOS_API_KEY": ""}
    result = CliRunner().invoke(cli, ["auth:token"], env=env)
    assert result.exit_code == 0
    assert result.stdout == "s3cret\n"


def test_server_options_come_from_dynos_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[ServerConfig] = []
    fake = types.ModuleType("dynos.server")
    fake.serve = seen.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dynos.server", fake)
    env = {"DYNOS_HOME": str(tmp_path), "DYNOS_API_PORT": "6001", "DYNOS_STOP_GRACE": "5"}
    result = CliRunner().invoke(cli, ["server", "--router-port", "0"], env=env)
    assert result.exit_code == 0, result.output
    assert seen == [
        ServerConfig(home=tmp_path.resolve(), api_port=6001, router_port=0, stop_grace=5.0)
    ]


def test_server_error_such_as_a_port_in_use_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def serve(config: ServerConfig) -> None:
        raise UserError(f"Port {config.api_port} on 127.0.0.1 is already in use.")

    fake = types.ModuleType("dynos.server")
    fake.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dynos.server", fake)
    result = CliRunner().invoke(cli, ["server", "--home", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr == "dynos: Port 5050 on 127.0.0.1 is already in use.\n"


# Transport failures: cli/client.py is the one place httpx errors become DynosErrors, and
# cli/main.py prints them; a fake transport stands in for a server that misbehaves.


def run_against(handler: Callable[[httpx.Request], httpx.Response], args: list[str]) -> Result:
    env = {"DYNOS_API_URL": "http://dynos.test", "DYNOS_API_KEY": "tok", "DYNOS_APP": "hello"}
    state = CliState(transport=httpx.MockTransport(handler), env=env)
    return CliRunner().invoke(cli, args, obj=state, env={"DYNOS_APP": "hello"})


def test_a_server_that_does_not_answer_in_time_is_one_line_and_exit_1() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    result = run_against(handler, ["apps"])
    assert result.exit_code == 1
    assert result.stderr == (
        "dynos: the dynos server at http://dynos.test did not answer in time; try again.\n"
    )


def test_a_log_stream_cut_midway_prints_its_lines_then_one_error_line() -> None:
    def cut(request: httpx.Request) -> Iterator[bytes]:
        yield b"first line\n"
        raise httpx.ReadError("connection reset", request=request)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/log-sessions"):
            return httpx.Response(201, json={"logplex_url": "http://dynos.test/stream/1"})
        return httpx.Response(200, content=cut(request))

    result = run_against(handler, ["logs"])
    assert result.exit_code == 1
    assert result.stdout == "first line\n"
    assert result.stderr == (
        "dynos: lost the connection to the dynos server at http://dynos.test: connection reset\n"
    )


@pytest.mark.parametrize("where", ["DYNOS_API_URL", "logplex_url"])
def test_a_url_httpx_cannot_parse_is_one_line_not_a_traceback(tmp_path: Path, where: str) -> None:
    bad = "http://127.0.0.1:abc"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"logplex_url": f"{bad}/stream/1"})

    env = {"DYNOS_API_URL": "http://dynos.test", "DYNOS_API_KEY": "tok", "DYNOS_APP": "hello"}
    if where == "DYNOS_API_URL":
        env["DYNOS_API_URL"] = bad
    state = CliState(transport=httpx.MockTransport(handler), env=env)
    result = CliRunner().invoke(cli, ["logs"], obj=state, env={"DYNOS_APP": "hello"})
    assert result.exit_code == 1
    assert result.stderr == (
        "dynos: a URL of the dynos server is not valid (Invalid port: 'abc'): check "
        "DYNOS_API_URL, or restart 'dynos server' to rewrite its server.json.\n"
    )
