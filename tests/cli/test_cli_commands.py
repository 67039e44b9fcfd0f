"""Commands against a fake API (httpx.MockTransport): requests sent, answers printed."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from click.testing import CliRunner, Result

from dynos.cli.main import COMMANDS_BY_MODULE, cli
from dynos.cli.session import CliState

ENV = {"DYNOS_API_URL": "http://dynos.test", "DYNOS_API_KEY": "tok", "DYNOS_APP": "hello"}
Handler = Callable[[httpx.Request], httpx.Response]


def run(handler: Handler, args: list[str]) -> Result:
    state = CliState(transport=httpx.MockTransport(handler), env=ENV)
    return CliRunner().invoke(cli, args, obj=state, env={"DYNOS_APP": "hello"})


def test_the_lazy_command_table_names_every_modules_commands_and_no_other() -> None:
    modules = Path(__file__).resolve().parents[2] / "src" / "dynos" / "cli" / "commands"
    names = sorted(p.stem for p in modules.glob("*.py") if p.stem != "__init__")
    assert sorted(COMMANDS_BY_MODULE) == names
    for module, commands in COMMANDS_BY_MODULE.items():
        loaded = importlib.import_module(f"dynos.cli.commands.{module}")
        assert tuple(loaded.COMMANDS) == commands, module


def test_one_command_loads_its_own_module_only() -> None:
    """The point of the lazy table: `dynos apps` does not import `run`'s websockets, nor the
    server's code."""
    script = (
        "import sys; from dynos.cli.main import cli; "
        "cli.main(['apps', '--help'], standalone_mode=False); "
        "print(sorted(m for m in sys.modules if m.startswith('dynos.cli.commands.')))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "['dynos.cli.commands.apps']"


def test_a_mistyped_command_is_answered_with_the_close_names_of_the_whole_table() -> None:
    """click suggests from the commands it holds, which the lazy group loads only when asked
    for: the suggestion comes from the table, as click words it, from the real CLI."""

    def dynos(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "dynos", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    one = dynos("ps:scael", "web=2")
    assert one.returncode == 2 and one.stdout == ""
    assert "Error: No such command 'ps:scael'." in one.stderr
    assert "'ps:scale'" in one.stderr and "Did you mean" in one.stderr
    typo = dynos("stack:biuld").stderr
    assert "No such command 'stack:biuld'. Did you mean 'stack:build'?" in typo
    several = dynos("aps").stderr
    assert "No such command 'aps'. (Did you mean one of: 'apps', 'ps'?)" in several
    nothing = dynos("zzzqq").stderr
    assert "No such command 'zzzqq'." in nothing and "Did you mean" not in nothing
    assert dynos("--help").returncode == 0  # an option is still the group's own
    assert dynos("ps:scale", "--help").returncode == 0


def test_every_request_carries_the_token_and_the_heroku_accept_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[{"name": "hello"}])

    assert run(handler, ["apps"]).exit_code == 0
    assert seen[0].headers["Authorization"] == "Bearer tok"
    assert seen[0].headers["Accept"] == "application/vnd.heroku+json; version=3"


def test_api_error_message_is_printed_on_one_line_with_exit_1() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"id": "not_found", "message": "Couldn't find that app."}
        return httpx.Response(404, json=body)

    result = run(handler, ["ps"])
    assert result.exit_code == 1
    assert result.stderr == "dynos: Couldn't find that app.\n"


def test_scale_patches_the_formation_and_reports_what_runs() -> None:
    bodies: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        answer = [{"type": "web", "quantity": 3, "size": "Standard-2X", "command": "web"}]
        return httpx.Response(200, json=answer)

    result = run(handler, ["ps:scale", "web+1:2X"])
    assert result.exit_code == 0
    assert bodies == [{"updates": [{"type": "web", "quantity": "+1", "size": "Standard-2X"}]}]
    assert result.stdout == "Scaling dynos... done, now running web at 3:Standard-2X\n"


def test_config_set_reports_the_new_release_and_the_values() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            return httpx.Response(200, json={"A": "1", "LONGER": "two", "OTHER": "x"})
        return httpx.Response(200, json=[{"version": 1}, {"version": 2}])

    result = run(handler, ["config:set", "A=1", "LONGER=two"])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "Setting A, LONGER and restarting \u2b22 hello... done, v2",
        "A:      1",
        "LONGER: two",
    ]


def test_config_get_of_an_unset_key_prints_nothing() -> None:
    result = run(lambda request: httpx.Response(200, json={"A": "1"}), ["config:get", "B"])
    assert result.exit_code == 0
    assert result.stdout == ""


def test_restart_of_one_dyno_deletes_that_dyno() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(f"{request.method} {request.url.path}")
        return httpx.Response(202, json={})

    result = run(handler, ["ps:restart", "web.1"])
    assert paths == ["DELETE /apps/hello/dynos/web.1"]
    assert result.stdout == "Restarting web.1 dyno on \u2b22 hello... done\n"


def test_deploy_streams_build_output_and_prints_the_release(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: python3 web.py\n")
    lines = [{"output": "-----> Building"}, {"output": "-----> Done"}, {"release": {"version": 3}}]

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Content-Type"] == "application/gzip"
        assert request.url.path == "/apps/hello/deploys"
        body = "".join(json.dumps(line) + "\n" for line in lines)
        return httpx.Response(200, text=body, headers={"Content-Type": "application/x-ndjson"})

    result = run(handler, ["deploy", str(tmp_path)])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1:] == ["-----> Building", "-----> Done", "Released v3"]


def test_deploy_rejected_before_streaming_is_one_line(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"id": "invalid_params", "message": "Procfile line 1: expected TYPE: COMMAND."}
        return httpx.Response(422, json=body)

    result = run(handler, ["deploy", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr == "dynos: Procfile line 1: expected TYPE: COMMAND.\n"


def test_deploy_build_failure_exits_1_after_the_output(tmp_path: Path) -> None:
    lines = [
        {"output": "ERROR: no such package"},
        {"error": {"id": "build_failed", "message": "Build failed."}},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="".join(json.dumps(line) + "\n" for line in lines))

    result = run(handler, ["deploy", str(tmp_path)])
    assert result.exit_code == 1
    assert "ERROR: no such package" in result.stdout
    assert result.stderr == "dynos: Build failed.\n"


def test_logs_open_a_session_and_print_its_lines_without_the_token() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path == "/apps/hello/log-sessions":
            return httpx.Response(
                201, json={"id": "s1", "logplex_url": "http://dynos.test/log-stream/abc"}
            )
        return httpx.Response(200, text="line one\nline two\n")

    result = run(handler, ["logs", "-n", "2", "-p", "web"])
    assert result.exit_code == 0
    assert json.loads(requests[0].content) == {"lines": 2, "tail": False, "dyno": "web"}
    assert "Authorization" not in requests[1].headers
    assert result.stdout == "line one\nline two\n"


def test_a_list_the_server_pages_is_fetched_whole_by_following_next_range() -> None:
    ranges: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ranges.append(request.headers.get("Range"))
        if "Range" not in request.headers:
            headers = {"Next-Range": "name ]alpha..; max=1, order=asc"}
            return httpx.Response(206, json=[{"name": "alpha"}], headers=headers)
        return httpx.Response(200, json=[{"name": "beta"}])

    result = run(handler, ["apps"])
    assert result.exit_code == 0
    assert ranges == [None, "name ]alpha..; max=1, order=asc"]
    assert "alpha" in result.stdout and "beta" in result.stdout
