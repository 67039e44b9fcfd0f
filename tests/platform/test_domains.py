"""The domains use-case in process (tests/platform/stage.py): what other parts that follow an
app's hostnames (certificates) are told, and when; a failing watcher changes nothing."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from dynos.platform.models import App
from tests.platform.stage import Stage

pytestmark = pytest.mark.anyio


class Watcher:
    def __init__(self) -> None:
        self.heard: list[tuple[str, tuple[str, ...]]] = []

    def __call__(self, app: App, hostnames: Sequence[str]) -> None:
        self.heard.append((app.name, tuple(hostnames)))


async def test_a_watcher_hears_every_apps_custom_domains_then_each_change(stage: Stage) -> None:
    domains = stage.platform.domains
    shop = await stage.deployed_app("shop")
    blog = await stage.platform.create_app("blog")
    await domains.add(shop, "www.example.com")
    await domains.add(shop, "api.example.com")
    watcher = Watcher()

    await domains.watch(watcher)
    [(name, hostnames)] = watcher.heard  # blog has none
    assert (name, sorted(hostnames)) == ("shop", ["api.example.com", "www.example.com"])

    await domains.add(blog, "blog.example.com")
    await domains.remove(shop, "www.example.com")
    renamed = await stage.platform.rename_app(blog, "journal")
    await stage.platform.destroy_app(renamed)

    assert watcher.heard[1:] == [
        ("blog", ("blog.example.com",)),
        ("shop", ("api.example.com",)),
        ("journal", ("blog.example.com",)),
        ("journal", ()),
    ]
    assert await stage.platform.app_hostnames(shop) == ["shop.localhost", "api.example.com"]
    assert await domains.custom_hostnames(shop) == ["api.example.com"]


async def test_a_failing_watcher_is_logged_and_the_domain_is_added_all_the_same(
    stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    shop = await stage.deployed_app("shop")

    def broken(app: App, hostnames: Sequence[str]) -> None:
        raise RuntimeError("no certificate today")

    later = Watcher()
    await stage.platform.domains.watch(broken)
    await stage.platform.domains.watch(later)
    with caplog.at_level(logging.ERROR):
        domain = await stage.platform.domains.add(shop, "www.example.com")

    assert domain.hostname == "www.example.com"
    assert "a watcher of shop's custom domains failed" in caplog.text
    assert later.heard == [("shop", ("www.example.com",))]
    route = stage.routes.lookup("www.example.com")
    assert route is not None and route.app == "shop"
