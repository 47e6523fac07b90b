"""Headless Chromium driven by Playwright's sync API, for the Studio's browser tests.

The browser is Debian's ``chromium`` (``scripts/test.sh`` installs it), named to Playwright by
``executable_path``: Playwright's own browser download needs the internet, which tests never
reach. Without the browser the tests skip, or fail under CI / ``ARKOR_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tests.utils.requires import BROWSER, unavailable

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page, ViewportSize, WebError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "apt-get install chromium (scripts/test.sh does)"

# Resolved at import, from where pytest started: each test then runs in its own folder.
SCREENSHOTS = Path(os.environ.get("ARKOR_SCREENSHOTS") or REPO_ROOT / ".screenshots").resolve()

# No sandbox (CI runs as root), no GPU, and nothing of Chromium's own traffic (updates, sync,
# QUIC probes): the network is closed and each refused connection is noise or a delay.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}


@dataclass
class BrowserPage:
    """A page in a fresh headless Chromium, and every console error and uncaught exception."""

    page: Page
    errors: list[str] = field(default_factory=list)


def chromium_path() -> Path:
    """The Chromium to drive: ``ARKOR_CHROMIUM``, else Debian's ``/usr/bin/chromium``."""
    return Path(os.environ.get("ARKOR_CHROMIUM") or DEFAULT_CHROMIUM)


@contextmanager
def open_page(user_data_dir: Path) -> Iterator[BrowserPage]:
    """Chromium with an empty profile in ``user_data_dir``, for the length of a ``with`` block.

    Skips (or fails where required) when Playwright or the browser is missing; a browser that
    is there but does not start is an error, not a skip.
    """
    executable = chromium_path()
    if not (executable.is_file() and os.access(executable, os.X_OK)):
        unavailable(
            f"no Chromium at {executable} for the browser tests: {INSTALL}, "
            "or point ARKOR_CHROMIUM at a Chromium or Chrome executable",
            BROWSER,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        unavailable(
            f"Playwright is not installed for the browser tests: pip install -e '.[dev]' ({error})",
            BROWSER,
        )
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir,
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
        )
        try:
            opened = BrowserPage(context.pages[0] if context.pages else context.new_page())

            def on_console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    where = message.location.get("url")
                    opened.errors.append(
                        f"console: {message.text}" + (f" ({where})" if where else "")
                    )

            def on_error(error: WebError) -> None:
                opened.errors.append(f"uncaught: {error.error}")

            context.on("console", on_console)
            context.on("weberror", on_error)
            yield opened
        finally:
            context.close()


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save what ``page`` shows as ``NAME.png`` under ``ARKOR_SCREENSHOTS`` (``.screenshots/``):
    the whole page, or with ``full_page=False`` the window as a user sees it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=full_page)
    return path
