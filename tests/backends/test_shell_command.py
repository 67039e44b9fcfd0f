"""How a dyno's command is handed to ``sh -c``: simple commands replace the shell."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dynos.backends.local import shell_command, start_command


@pytest.mark.parametrize(
    "command",
    [
        "python3 web.py",
        "gunicorn app:app --bind 0.0.0.0:$PORT --workers ${WEB_CONCURRENCY:-2}",
        "bin/worker > log.txt 2>&1",
        'printenv "a; b | c && d"',
        "python3 web.py # the web process",
        "sh -c 'a; b'",
        "bash",
    ],
)
def test_a_simple_command_is_execed(command: str) -> None:
    assert shell_command(command) == f"exec {command}"


@pytest.mark.parametrize(
    "command",
    [
        "a && b",
        "cd app && python3 web.py",
        "a; b",
        "a || b",
        "a | b",
        "a&&b",
        "a & b",
        "a &",
        "(cd app; x)",
        "{ a; b; }",
        "if true; then x; fi",
        "while true; do x; done",
        "FOO=1 python3 web.py",
        "exec python3 web.py",
        "x $(y; z)",
        "x `y`",
        "a\nb",
        "echo 'unbalanced",
        "",
        "test ${#QUEUES} -gt 0 && rq worker",
        "run a#b && run c",
        'eval "$WEB_COMMAND"',
        "cd app",
        "echo hi",
        ": nothing",
        "2>/dev/null FOO=1 env",
        "> log python3 web.py",
    ],
)
def test_anything_more_is_left_to_the_shell_as_written(command: str) -> None:
    assert shell_command(command) == command


def test_the_app_becomes_the_dynos_main_process() -> None:
    """With ``exec`` the pid the platform watches and signals is the app's own."""
    command = shell_command(f"{sys.executable} -c 'import os; print(os.getpid())'")
    child = subprocess.Popen(["/bin/sh", "-c", command], stdout=subprocess.PIPE, text=True)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 0
    assert int(out) == child.pid


def test_a_compound_command_still_runs_every_part() -> None:
    command = shell_command("echo one && echo two; echo three")
    out = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True).stdout
    assert out.split() == ["one", "two", "three"]


def test_an_app_with_a_profile_starts_through_bash_which_sources_it_first(
    tmp_path: Path,
) -> None:
    assert start_command("python3 web.py", tmp_path) == ["/bin/sh", "-c", "exec python3 web.py"]
    (tmp_path / ".profile.d").mkdir()
    (tmp_path / ".profile.d" / "a.sh").write_text("export ORDER=${ORDER:-}a,\n")
    (tmp_path / ".profile").write_text("export ORDER=${ORDER:-}profile\n")
    argv = start_command('echo "$ORDER $KEPT"', tmp_path)
    assert argv[0] == "/bin/bash"
    env = {"PATH": "/usr/bin:/bin", "KEPT": "config var"}
    ran = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert ran.stdout == "a,profile config var\n"
    # After the profile, a simple command still replaces the shell.
    python = start_command("python3 -c 'import os; print(os.getppid() != 1)'", tmp_path)
    assert python[2].endswith("exec python3 -c 'import os; print(os.getppid() != 1)'")
