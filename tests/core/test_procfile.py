import pytest

from dynos.core.procfile import parse_procfile
from dynos.errors import UserError


def test_parse_procfile_keeps_types_in_file_order() -> None:
    text = "# comment\nweb: python3 web.py --port $PORT\n\nworker:python3 worker.py\n"
    assert parse_procfile(text) == {
        "web": "python3 web.py --port $PORT",
        "worker": "python3 worker.py",
    }


def test_parse_procfile_keeps_colons_inside_the_command() -> None:
    assert parse_procfile("web: gunicorn app:app -b 0.0.0.0:$PORT") == {
        "web": "gunicorn app:app -b 0.0.0.0:$PORT"
    }


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("web python3 web.py", "line 1"),
        ("web: ok\nbad type!: x", "line 2"),
        ("web:", "no command"),
        ("web: a\nweb: b", "declared twice"),
        ("# only comments\n\n", "no process type"),
    ],
)
def test_parse_procfile_rejects_bad_lines_naming_them(text: str, fragment: str) -> None:
    with pytest.raises(UserError, match=fragment):
        parse_procfile(text)
