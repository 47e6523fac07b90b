"""The browser fixture itself: Chromium loads a loopback page, runs its script, takes a click."""

from __future__ import annotations

import pytest

from tests.utils.browser import VIEWPORT, BrowserPage, screenshot
from tests.utils.loopback import QuietHandler, serving

PAGE = b"""<!doctype html>
<html>
<head><meta charset="utf-8"><title>smoke</title><link rel="icon" href="data:,"></head>
<body>
<button id="go">Go</button>
<p id="out">waiting</p>
<script>
document.getElementById("go").addEventListener("click", () => {
  document.getElementById("out").textContent = "clicked";
});
</script>
</body>
</html>
"""


class PageHandler(QuietHandler):
    """Serves :data:`PAGE` at every path."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)


@pytest.mark.browser
def test_a_click_changes_the_page(browser_page: BrowserPage) -> None:
    page = browser_page.page
    with serving(PageHandler) as url:
        page.goto(url)
        assert page.viewport_size == VIEWPORT
        assert page.text_content("#out") == "waiting"

        page.click("#go")

        assert page.text_content("#out") == "clicked"
        shot = screenshot(page, "browser-smoke")
    assert shot.read_bytes().startswith(b"\x89PNG")
    assert browser_page.errors == []
