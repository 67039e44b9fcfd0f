"""The dashboard's built assets: uPlot is in the installed package, the version setup.py
pins and checked against, and every page's script and style is a file the package has."""

from __future__ import annotations

import re
from pathlib import Path

from dynos.dashboard.app import STATIC, UPLOT

SETUP = Path(__file__).parents[2] / "setup.py"
TEMPLATES = STATIC.parent / "templates"


def test_uplot_was_fetched_at_install_with_the_pinned_integrity() -> None:
    pinned = re.search(r'"(sha512-[A-Za-z0-9+/=]+)"', SETUP.read_text())
    assert pinned, "setup.py pins uPlot's sha512"
    assert UPLOT.exists(), "reinstall with npm on the PATH: setup.py fetches uPlot"
    assert (UPLOT.parent / "uplot.integrity").read_text().strip() == pinned.group(1)
    assert "uPlot" in UPLOT.read_text()[:2000]
    assert (UPLOT.parent / "uPlot.min.css").exists()


def test_every_script_and_stylesheet_a_page_names_is_in_the_package() -> None:
    named = set()
    for template in TEMPLATES.glob("*.html"):
        named |= set(
            re.findall(r'(?:src|href)="\{\{ prefix \}\}/static/([^"]+)"', template.read_text())
        )
    assert {"app.js", "plots.js", "dashboard.css", "vendor/uPlot.iife.min.js"} <= named
    assert all((STATIC / name).is_file() for name in named), named
