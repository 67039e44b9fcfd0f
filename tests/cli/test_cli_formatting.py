"""Pure formatting and argument handling of the CLI: config, releases, formation, apps."""

from __future__ import annotations

import io
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dynos.cli.commands.apps import format_app_info, format_apps
from dynos.cli.commands.config import format_config, list_keys, parse_assignments
from dynos.cli.commands.deploy import follow_build, pack_directory
from dynos.cli.commands.features import format_features
from dynos.cli.commands.logs import log_session_body
from dynos.cli.commands.ps import (
    format_formation_line,
    format_now_running,
    format_process_types,
    format_sizes,
    scale_updates,
    target_phrase,
    type_updates,
)
from dynos.cli.commands.releases import format_releases
from dynos.cli.commands.up import app_name_for, scale_plan
from dynos.cli.style import styled_object, table
from dynos.core.scale import parse_scale_arg
from dynos.errors import BuildFailed, UserError

NOW = datetime(2026, 11, 27, 4, 0, 0, tzinfo=UTC)
FORMATION = [
    {"type": "worker", "quantity": 1, "size": "Standard-1X", "command": "python3 worker.py"},
    {"type": "web", "quantity": 2, "size": "Standard-1X", "command": "python3 web.py"},
]


def test_config_aligns_values_one_space_past_the_longest_key() -> None:
    lines = format_config("hello", {"RAILS_ENV": "staging", "RACK_ENV": "staging"})
    assert lines == ["=== hello Config Vars", "RACK_ENV:  staging", "RAILS_ENV: staging"]


def test_config_without_vars_prints_only_the_header() -> None:
    assert format_config("hello", {}) == ["=== hello Config Vars"]


def test_styled_object_shows_a_mapping_as_comma_separated_pairs() -> None:
    assert styled_object({"Dynos": {"web": 2, "worker": 1}}) == ["Dynos: web: 2, worker: 1"]


def test_parse_assignments_keeps_everything_after_the_first_equals_sign() -> None:
    assert parse_assignments(["URL=postgres://u:p@h/db?x=1"]) == {"URL": "postgres://u:p@h/db?x=1"}


def test_parse_assignments_rejects_an_argument_without_equals_sign() -> None:
    with pytest.raises(UserError, match="KEY=value"):
        parse_assignments(["DEBUG"])


def test_list_keys_joins_names_with_commas() -> None:
    assert list_keys(["K1", "K2"]) == "K1, K2"


def test_releases_list_newest_first_under_the_current_version() -> None:
    releases = [
        {"version": 1, "description": "Initial release", "created_at": "2026-11-27T03:00:00Z"},
        {"version": 2, "description": "Deploy", "created_at": "2026-11-27T03:59:30Z"},
    ]
    assert format_releases("hello", releases, NOW, UTC) == [
        "=== hello Releases - Current: v2",
        "v2  Deploy           2026/11/27 03:59:30 +0000 (~ 30s ago)",
        "v1  Initial release  2026/11/27 03:00:00 +0000 (~ 1h ago)",
    ]


def test_releases_show_the_user_when_releases_have_one() -> None:
    releases = [
        {
            "version": 3,
            "description": "Set DEBUG config vars",
            "user": {"email": "admin@localhost"},
            "created_at": "2026-11-27T03:59:00Z",
            "current": True,
        }
    ]
    lines = format_releases("hello", releases, NOW, UTC)
    assert (
        lines[1]
        == "v3  Set DEBUG config vars  admin@localhost  2026/11/27 03:59:00 +0000 (~ 1m ago)"
    )


def test_releases_are_limited_to_the_newest() -> None:
    releases = [{"version": n, "description": "d"} for n in range(1, 21)]
    lines = format_releases("hello", releases, NOW, limit=3)
    assert [line.split()[0] for line in lines[1:]] == ["v20", "v19", "v18"]


def test_releases_of_an_app_without_any() -> None:
    assert format_releases("hello", [], NOW) == ["hello has no releases."]


def test_formation_line_is_sorted_and_reusable_as_scale_arguments() -> None:
    assert format_formation_line(FORMATION) == "web=2:Standard-1X worker=1:Standard-1X"


def test_now_running_names_only_the_scaled_types_in_formation_order() -> None:
    assert format_now_running(FORMATION, ["web"]) == "done, now running web at 2:Standard-1X"


def test_scale_updates_send_absolute_relative_and_size_only_changes() -> None:
    changes = [parse_scale_arg(a) for a in ("web=2:2X", "worker+1", "clock-1", "web=standard-1x")]
    assert scale_updates(changes) == [
        {"type": "web", "quantity": 2, "size": "Standard-2X"},
        {"type": "worker", "quantity": "+1"},
        {"type": "clock", "quantity": "-1"},
        {"type": "web", "size": "Standard-1X"},
    ]


def test_type_updates_apply_one_size_to_every_process_type() -> None:
    assert type_updates(["2x"], FORMATION) == [
        {"type": "worker", "size": "Standard-2X"},
        {"type": "web", "size": "Standard-2X"},
    ]


def test_type_updates_reject_an_unknown_size() -> None:
    with pytest.raises(UserError, match="Unknown dyno size"):
        type_updates(["web=huge"], FORMATION)


def test_process_types_table_shows_sizes_quantities_and_totals() -> None:
    assert format_process_types(FORMATION) == [
        "=== Process Types",
        "Type    Size         Qty",
        "web     Standard-1X  2",
        "worker  Standard-1X  1",
        "",
        "=== Dyno Totals",
        "Type         Total",
        "Standard-1X  3",
    ]


def test_restart_and_stop_name_a_dyno_a_type_or_all_dynos() -> None:
    assert target_phrase("web.1") == "web.1 dyno"
    assert target_phrase("web") == "web dynos"
    assert target_phrase(None) == "dynos"


def test_sizes_table_converts_heroku_gigabytes_to_megabytes() -> None:
    lines = format_sizes([{"name": "Standard-1X", "memory": 0.5, "compute": 1}])
    assert lines == ["Name         Memory (MB)  Compute", "Standard-1X  512          1"]


def test_table_pads_columns_and_drops_trailing_spaces() -> None:
    assert table([["a", ""], ["bbb", "c"]]) == ["a", "bbb  c"]


def test_apps_are_listed_by_name_under_a_header() -> None:
    assert format_apps([{"name": "zeta"}, {"name": "alpha"}]) == ["=== Apps", "alpha", "zeta"]


def test_app_info_counts_dynos_per_type() -> None:
    app = {
        "name": "hello",
        "web_url": "http://hello.localhost:5000/",
        "released_at": "2026-11-27T03:50:00Z",
    }
    dynos = [{"type": "worker"}, {"type": "web"}, {"type": "web"}]
    assert format_app_info(app, dynos) == [
        "=== hello",
        "Web URL:     http://hello.localhost:5000/",
        "Dynos:       web: 2, worker: 1",
        "Released At: 2026-11-27T03:50:00Z",
    ]
    app["git_url"] = "https://git.localhost:5443/hello.git"
    assert format_app_info(app, dynos)[1:3] == [
        "Web URL:     http://hello.localhost:5000/",
        "Git URL:     https://git.localhost:5443/hello.git",
    ]


def test_log_session_maps_process_type_to_the_dyno_filter() -> None:
    assert log_session_body(100, False, process_type="web") == {
        "lines": 100,
        "tail": False,
        "dyno": "web",
    }
    assert log_session_body(5, True, source="app") == {"lines": 5, "tail": True, "source": "app"}


def test_pack_directory_leaves_out_git_caches_and_virtualenvs(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: python3 web.py\n")
    for skipped in (".git", ".venv", "pkg/__pycache__"):
        (tmp_path / skipped).mkdir(parents=True)
        (tmp_path / skipped / "junk").write_text("x")
    (tmp_path / "pkg" / "mod.py").write_text("x = 1\n")
    with tarfile.open(fileobj=io.BytesIO(pack_directory(tmp_path)), mode="r:gz") as archive:
        names = sorted(archive.getnames())
    assert names == ["Procfile", "pkg", "pkg/mod.py"]


def test_follow_build_prints_output_and_returns_the_release() -> None:
    printed: list[str] = []
    events = [{"output": "-----> Installing\n"}, {"output": "done"}, {"release": {"version": 4}}]
    assert follow_build(events, printed.append) == {"version": 4}
    assert printed == ["-----> Installing", "done"]


def test_follow_build_raises_the_build_error() -> None:
    events = [{"error": {"id": "build_failed", "message": "pip install failed"}}]
    with pytest.raises(BuildFailed, match="pip install failed"):
        follow_build(events, print)


def test_up_names_the_app_after_its_directory() -> None:
    assert app_name_for(Path("/src/My_Cool App")) == "my-cool-app"
    assert app_name_for(Path("/src/2fast")) == "fast"
    assert app_name_for(Path("/src/x")) == "app-x"


def test_up_scales_web_to_two_and_other_types_to_one() -> None:
    assert scale_plan(FORMATION) == [
        {"type": "worker", "quantity": 1},
        {"type": "web", "quantity": 2},
    ]


def test_features_are_listed_as_the_heroku_cli_lists_them() -> None:
    features = [
        {"name": "preboot", "enabled": True, "state": "general", "description": "Seamless"},
        {"name": "beta-thing", "enabled": False, "state": "beta", "description": "Hidden"},
    ]
    assert format_features("shop", features) == ["=== App Features shop", "[+] preboot  Seamless"]
    features[0]["enabled"] = False
    assert format_features("shop", features)[1] == "[ ] preboot  Seamless"
