"""Heroku's Range paging, as pure functions."""

from __future__ import annotations

import pytest

from dynos.api.ranges import (
    DEFAULT_MAX,
    LARGEST_MAX,
    Range,
    RangeNotSatisfiable,
    paginate,
    parse_range,
)

RELEASES = [{"version": v, "id": f"id-{v:02d}"} for v in range(1, 13)]


def versions(items: list[dict[str, object]]) -> list[object]:
    return [item["version"] for item in items]


def test_no_header_means_no_range() -> None:
    assert parse_range(None, ("id",)) is None
    assert parse_range("  ", ("id",)) is None


def test_heroku_cli_release_range_parses() -> None:
    assert parse_range("version ..; max=10, order=desc", ("version", "id")) == Range(
        "version", max=10, order="desc"
    )


def test_parameters_may_come_without_spaces() -> None:
    assert parse_range("version ..; order=desc,max=1", ("version",)) == Range(
        "version", max=1, order="desc"
    )


def test_heroku_cli_paginator_range_parses() -> None:
    """``heroku domains`` pages with a semicolon after the parameters."""
    assert parse_range("id ..; max=1000;", ("id",)) == Range("id", max=1000)
    assert parse_range("id ]abc..; max=5;", ("id",)) == Range("id", "abc", True, max=5)


def test_exclusive_start_and_end_bounds_parse() -> None:
    assert parse_range("name ]web.1..web.9; max=5", ("name",)) == Range(
        "name", "web.1", True, "web.9", 5
    )


def test_field_alone_means_everything() -> None:
    assert parse_range("id", ("id",)) == Range("id")


def test_max_above_the_largest_is_capped() -> None:
    wanted = parse_range("id ..; max=5000", ("id",))
    assert wanted is not None and wanted.max == LARGEST_MAX


@pytest.mark.parametrize(
    "header",
    ["size ..", "id ..; max=0", "id ..; max=ten", "id ..; order=up", "id ..; limit=3", "id 3"],
)
def test_malformed_range_is_not_satisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, ("id", "name"))


def test_page_holds_max_items_and_says_where_to_go_on() -> None:
    page = paginate(RELEASES, Range("version", max=5))
    assert versions(page.items) == [1, 2, 3, 4, 5]
    assert page.next_range == Range("version", "5", True, max=5)
    assert page.content_range == "version 1..5"


def test_following_next_range_walks_the_whole_list_once() -> None:
    seen: list[object] = []
    wanted: Range | None = Range("version", max=5, order="desc")
    while wanted is not None:
        page = paginate(RELEASES, parse_range(wanted.header(), ("version",)) or wanted)
        seen += versions(page.items)
        wanted = page.next_range
    assert seen == list(range(12, 0, -1))


def test_descending_max_one_is_the_newest() -> None:
    page = paginate(RELEASES, Range("version", max=1, order="desc"))
    assert versions(page.items) == [12]


def test_last_page_has_no_next_range() -> None:
    page = paginate(RELEASES, Range("version", "10", True))
    assert versions(page.items) == [11, 12]
    assert page.next_range is None


def test_inclusive_bounds_keep_both_ends() -> None:
    page = paginate(RELEASES, Range("version", "3", False, "5"))
    assert versions(page.items) == [3, 4, 5]


def test_numeric_field_rejects_a_word_bound() -> None:
    with pytest.raises(RangeNotSatisfiable):
        paginate(RELEASES, Range("version", "abc"))


def test_sort_key_orders_dyno_numbers_numerically() -> None:
    dynos = [{"name": f"web.{n}"} for n in (10, 2, 1)]

    def by_number(name: str) -> int:
        return int(name.split(".")[1])

    page = paginate(dynos, Range("name", "web.1", True), {"name": by_number})
    assert [d["name"] for d in page.items] == ["web.2", "web.10"]


def test_empty_list_is_one_empty_page() -> None:
    page = paginate([], Range("id"))
    assert page.items == [] and page.next_range is None and page.content_range is None


def test_default_page_size_is_herokus() -> None:
    assert Range("id").max == DEFAULT_MAX == 200
