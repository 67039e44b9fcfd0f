"""Take the dashboard's screenshots in docs/ (dashboard-*.png) from a real server.

Starts a `dynos server` on a scratch home, deploys the hello example as `shop`, scales it,
sets config vars and sends it requests for a few minutes (the plots are per minute), then
signs in with Debian's chromium (Playwright, ``executable_path=/usr/bin/chromium``) and
shoots the sign-in page, the apps list and the app's page.

    python docs/dashboard_screenshots.py [--minutes 4]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from dynos.testing.harness import start_server, wait_for

DOCS = Path(__file__).parent
HELLO = DOCS.parent / "examples" / "hello"


def traffic(router_port: int, seconds: float) -> None:
    """Requests to shop at a rate that changes each minute."""
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=f"http://127.0.0.1:{router_port}", timeout=30) as client:
        while time.monotonic() < deadline:
            rate = random.choice((5, 15, 30))
            minute_end = min(deadline, time.monotonic() + 60)
            while time.monotonic() < minute_end:
                client.get("/", headers={"Host": "shop.localhost"})
                time.sleep(1 / rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dynos-shots-") as scratch:
        server = start_server(Path(scratch) / "home")
        try:
            server.create_app("shop")
            server.create_app("blog")
            server.deploy("shop", HELLO)
            server.deploy("blog", HELLO)
            with server.api() as api:
                api.patch(
                    "/apps/shop/config-vars",
                    json={"GREETING": "hello", "SECRET_KEY": "s3cr3t-value"},
                ).raise_for_status()
            server.scale("shop", web=2, worker=1)
            wait_for(lambda: _answers(server.router_port), timeout=60, what="shop up")
            traffic(server.router_port, args.minutes * 60)
            shoot(server.api_url, server.token)
        finally:
            server.stop()


def _answers(port: int) -> bool:
    answer = httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": "shop.localhost"})
    return answer.status_code == 200


def shoot(api_url: str, token: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        page = browser.new_page(base_url=api_url, viewport={"width": 1200, "height": 420})
        page.goto("/")
        page.screenshot(path=DOCS / "dashboard-sign-in.png")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_url("**/dashboard/")
        page.screenshot(path=DOCS / "dashboard-apps.png")
        page.set_viewport_size({"width": 1400, "height": 900})
        page.goto("/dashboard/apps/shop")
        page.wait_for_selector("#plot-throughput canvas")
        page.wait_for_selector("#log-lines:not(:empty)")
        page.wait_for_timeout(1500)
        page.screenshot(path=DOCS / "dashboard-app.png", full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
