"""Drive the review UI in the system's headless Chromium (never a downloaded browser)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("MODERATION_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextmanager
def chromium_page(width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A Playwright page in the Debian `chromium` package's browser."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise FileNotFoundError(f"{CHROMIUM} not found: install it with `apt-get install -y "
                                "chromium` (.ci/run does this) or set MODERATION_CHROMIUM")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                     headless=True, timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


def log_in(page: Any, base_url: str, token: str, reviewer: str) -> None:
    """Open the UI, pass the login form and wait until the list has loaded."""
    page.goto(base_url + "/")
    page.fill("#reviewer", reviewer)
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_selector("body[data-ready=true]")
