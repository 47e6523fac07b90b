"""Fixtures for the Studio's browser tests: a fresh headless Chromium page per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.browser import BrowserPage, open_page


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[BrowserPage]:
    """A 1280x800 page in headless Chromium with an empty profile; ``.errors`` collects
    console errors and uncaught exceptions, so a test can assert that none happened."""
    with open_page(tmp_path / "chromium-profile") as opened:
        yield opened
