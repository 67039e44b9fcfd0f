""".slugignore patterns, as Heroku reads them (pure)."""

from __future__ import annotations

from dynos.core.slugignore import parse_slugignore


def test_a_name_matches_at_any_depth_and_a_path_from_the_top() -> None:
    ignore = parse_slugignore("# big things\n\n*.psd\ndocs/\n/tests\nassets/raw/*.wav\n")
    assert ignore.ignores("logo.psd")
    assert ignore.ignores("static/img/logo.psd")
    assert ignore.ignores("docs")
    assert ignore.ignores("app/docs")
    assert ignore.ignores("tests")
    assert not ignore.ignores("app/tests")  # anchored at the top
    assert ignore.ignores("assets/raw/a.wav")
    assert not ignore.ignores("assets/raw/deeper/a.wav")
    assert not ignore.ignores("logo.png")
    assert not ignore.ignores("# big things")


def test_double_stars_cross_directories_and_classes_match_one_character() -> None:
    ignore = parse_slugignore("data/**/*.csv\nlog[0-9].txt\nfile?.bin\n")
    assert ignore.ignores("data/a.csv")
    assert ignore.ignores("data/x/y/a.csv")
    assert ignore.ignores("log3.txt") and not ignore.ignores("logs.txt")
    assert ignore.ignores("file1.bin") and not ignore.ignores("file12.bin")


def test_an_empty_file_or_a_lone_slash_ignores_nothing() -> None:
    for text in ("", "\n\n", "/\n", "# only a comment\n"):
        ignore = parse_slugignore(text)
        assert not ignore.ignores("Procfile")
        assert not ignore.ignores("a/b")
