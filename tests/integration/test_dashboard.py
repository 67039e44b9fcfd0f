"""The web dashboard in a real browser: Debian's chromium, headless, driven by Playwright,
against a real server with real dynos (one server and one deployed app for the module).

Playwright's own browser download is not used (nor possible here): it launches
``/usr/bin/chromium`` (``apt-get install -y chromium``; .ci/run installs it).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from dynos.testing.harness import RunningServer, wait_for
from tests.integration.conftest import EXAMPLES, each_test, started

CHROMIUM = Path("/usr/bin/chromium")
APP = "dash"
TIMEOUT = 30_000  # ms: dynos start and releases happen on a loaded 2-core machine


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server, with the hello example deployed as APP (v2) and deployed again (v3), a
    config var set (v4) and a Redis add-on (v5)."""
    for running in started(tmp_path_factory.mktemp("dashboard") / "home", "--stop-grace", "5"):
        running.create_app(APP)
        running.deploy(APP, EXAMPLES / "hello")
        running.deploy(APP, EXAMPLES / "hello")
        with running.api() as api:
            api.patch(f"/apps/{APP}/config-vars", json={"SECRET_WORD": "swordfish"})
            api.post(f"/apps/{APP}/addons", json={"plan": "redis"}).raise_for_status()
        yield running


@pytest.fixture
def server(shared_server: RunningServer) -> Iterator[RunningServer]:
    yield from each_test(shared_server)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("These tests drive Debian's chromium: apt-get install -y chromium")
    with sync_playwright() as playwright:
        # --no-sandbox: chromium's sandbox refuses to run as root, which tests here are.
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, server: RunningServer) -> Iterator[Page]:
    """A fresh browser context (no cookies) whose page fails the test on any CSP violation
    or uncaught script error (answers such as a refused sign-in's 401 are the tests' own)."""
    context = browser.new_context(base_url=server.api_url, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT)
    opened = context.new_page()
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            problems.append(message.text)

    opened.on("console", console)
    opened.on("pageerror", lambda error: problems.append(str(error)))
    yield opened
    context.close()
    assert problems == []


def sign_in(page: Page, token: str) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/dashboard/sign-in$"))
    page.fill("#token", token)
    page.click("button[type=submit]")


def test_signing_in_with_the_token_shows_the_apps_and_a_wrong_token_is_refused(
    page: Page, server: RunningServer
) -> None:
    sign_in(page, "not-the-token")
    expect(page.get_by_role("alert")).to_contain_text("not this server's API token")
    assert page.context.cookies() == []
    page.fill("#token", server.token)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/dashboard/$"))
    expect(page.get_by_role("link", name=APP, exact=True)).to_be_visible()
    [cookie] = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert server.token not in page.content() and server.token not in page.url

    page.click("text=Sign out")
    expect(page).to_have_url(re.compile(r"/dashboard/sign-in$"))
    page.goto(f"/dashboard/apps/{APP}")
    expect(page).to_have_url(re.compile(r"/dashboard/sign-in$"))


def test_scaling_a_process_type_makes_its_dyno_appear(page: Page, server: RunningServer) -> None:
    sign_in(page, server.token)
    page.goto(f"/dashboard/apps/{APP}")
    worker = page.locator("form.scale", has=page.locator("input[value=worker]"))
    worker.locator("input[name=quantity]").fill("1")
    worker.locator("select[name=size]").select_option("Standard-2X")
    worker.get_by_role("button").click()
    expect(page.locator(".flash").first).to_contain_text("Scaled worker")
    row = page.locator('#dyno-rows tr[data-dyno="worker.1"]')
    expect(row).to_contain_text("Standard-2X")
    expect(row.locator(".state")).to_have_text("up")  # the page refreshes it as it changes
    with server.api() as api:
        formation = {f["type"]: f for f in api.get(f"/apps/{APP}/formation").json()}
    assert formation["worker"]["quantity"] == 1 and formation["worker"]["size"] == "Standard-2X"


def test_the_log_tail_shows_new_lines_as_they_come(page: Page, server: RunningServer) -> None:
    server.scale(APP, web=1)
    sign_in(page, server.token)
    page.goto(f"/dashboard/apps/{APP}")
    expect(page.locator("#log-status")).to_have_text("live")
    probe = f"/probe-{uuid.uuid4().hex}"
    wait_for(lambda: _get(server, probe), what="the app to answer", timeout=60)
    expect(page.locator("#log-lines")).to_contain_text(f'path="{probe}"')


def _get(server: RunningServer, path: str) -> bool:
    with server.router(APP) as router:
        return router.get(path).status_code == 200


def test_a_config_var_is_hidden_until_revealed(page: Page, server: RunningServer) -> None:
    sign_in(page, server.token)
    page.goto(f"/dashboard/apps/{APP}")
    secret = page.locator('code.secret[data-name="SECRET_WORD"]')
    expect(secret).to_have_text("••••••••")
    assert "swordfish" not in page.content()
    page.locator('button.reveal[data-name="SECRET_WORD"]').click()
    expect(secret).to_have_text("swordfish")
    page.locator('button.reveal[data-name="SECRET_WORD"]').click()
    expect(secret).to_have_text("••••••••")


def test_the_add_ons_are_listed_with_their_config_var(page: Page, server: RunningServer) -> None:
    with server.api() as api:
        [addon] = api.get(f"/apps/{APP}/addons").json()
    sign_in(page, server.token)
    page.goto(f"/dashboard/apps/{APP}")
    row = page.locator("#addons tr", has_text=addon["name"])
    expect(row).to_contain_text("REDIS_URL")
    expect(page.locator('code.secret[data-name="REDIS_URL"]')).to_have_text("••••••••")


def test_rolling_back_makes_a_new_release_of_the_old_one(page: Page, server: RunningServer) -> None:
    sign_in(page, server.token)
    page.goto(f"/dashboard/apps/{APP}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Roll back to v2").click()
    expect(page.locator(".flash").first).to_contain_text("Rolled back to v2")
    with server.api() as api:
        latest = api.get(f"/apps/{APP}/releases").json()[-1]
    assert latest["description"] == "Rollback to v2"
    expect(page.locator(f'#releases tr[data-version="{latest["version"]}"]')).to_contain_text(
        "live"
    )


def test_the_metrics_plots_draw_the_apps_data(page: Page, server: RunningServer) -> None:
    with server.api() as api:
        answer = api.get(f"/apps/{APP}/metrics", params={"process_type": "web", "window": "1h"})
    if answer.status_code == 404 and "No such endpoint" in answer.text:
        pytest.xfail("needs the metrics API (issue 16 part 1)")
    server.scale(APP, web=1)
    wait_for(lambda: _get(server, "/"), what="the app to answer", timeout=60)
    for _ in range(20):
        _get(server, "/")
    sign_in(page, server.token)
    page.goto(f"/dashboard/apps/{APP}")
    throughput = page.locator("#plot-throughput")
    expect(throughput.locator("canvas")).to_be_visible()
    # The page polls; a request recorded in the current minute shows at the next refresh.
    expect(throughput).not_to_have_attribute("data-points", "0", timeout=60_000)
    assert int(throughput.get_attribute("data-points") or 0) > 0
    expect(page.locator("#plot-response-time canvas")).to_be_visible()
    expect(page.locator("#plot-memory canvas")).to_be_visible()
