"""Debian's Chromium driven by Playwright against the local Dagster UI, for the UI tests and
bench G.

No browser is downloaded (``playwright install`` never runs): Playwright launches
``/usr/bin/chromium`` headless, and every request not to 127.0.0.1 is aborted, so a page never
waits on the internet and nothing leaves the machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 900}


def launch_chromium(playwright: Any) -> Any:
    """Headless Debian Chromium, from a running ``sync_playwright()``."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )


def _only_this_machine(route: Any) -> None:
    if urlsplit(route.request.url).hostname == "127.0.0.1":
        route.continue_()
    else:
        route.abort()


def local_context(browser: Any, timeout_s: float) -> Any:
    """A fresh browser context (empty cache) that reaches only 127.0.0.1, waits at most
    ``timeout_s`` per condition, and has Dagster's once-per-browser dialog dismissed."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(timeout_s * 1000)
    # Dagster's "join the community" dialog would cover the page.
    context.add_init_script("window.localStorage.setItem('communityNux', JSON.stringify('1'))")
    context.route("**/*", _only_this_machine)
    return context
