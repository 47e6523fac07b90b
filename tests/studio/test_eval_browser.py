"""The run page's Evaluation section in a real headless Chromium, on a live run.

`arkor dev` serves the tiny-model project with ``[trainer.eval]``; the run starts from New
run, and the page shows "Evaluating…" once training ends, then the base-vs-adapter table
and the rows where the answers differ as soon as ``eval.completed`` arrives on the stream.
Screenshots: ``.screenshots/studio-run-eval*.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.studio.test_eval_api import eval_project
from tests.utils.browser import BrowserPage, screenshot
from tests.utils.requires import need
from tests.utils.studio import arkor_dev

need("fastapi", "Studio is a FastAPI app")
need("torch", "the run trains the tiny model for real")

pytestmark = [pytest.mark.slow, pytest.mark.browser]
WAIT_MS = 120_000

WATCH_STATUS = """() => {
  window.evalStatuses = [];
  const seen = () => {
    const el = document.querySelector('[data-testid=eval-status]');
    const text = el && !el.hidden ? el.textContent : '';
    if (text && window.evalStatuses.at(-1) !== text) window.evalStatuses.push(text);
  };
  new MutationObserver(seen).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
  seen();
}"""


@pytest.fixture
def studio_url(project: Path, tiny_model: Path) -> Iterator[str]:
    """`arkor dev` serving the evaluated project on the tiny model."""
    eval_project(project, tiny_model)
    with arkor_dev(project) as url:
        yield url


def test_the_run_page_shows_the_eval_table_and_the_rows_where_the_answers_differ(
    studio_url: str, browser_page: BrowserPage
) -> None:
    page = browser_page.page
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{studio_url}/new")
    page.get_by_test_id("config-select").wait_for()
    page.get_by_test_id("start-run").click()
    page.wait_for_url(re.compile(r"/runs/[^/]+$"))
    job_id = page.url.rsplit("/", 1)[1]

    # before the eval: the section says what will come; "Evaluating…" once training ends
    section = page.get_by_test_id("eval-section")
    section.wait_for()
    page.evaluate(WATCH_STATUS)
    table = page.get_by_test_id("eval-table")
    table.wait_for()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=run-status]')?.textContent === 'completed'"
    )
    statuses: list[str] = page.evaluate("() => window.evalStatuses")
    assert any(text.startswith("Evaluating…") for text in statuses), statuses

    # the table: metric, base, adapter, change, with counts (few rows) and the warning
    metrics = page.get_by_test_id("eval-metric")
    names = [metrics.nth(i).get_attribute("data-metric") for i in range(metrics.count())]
    assert names[:2] == ["rouge_l", "exact_match"]
    exact = page.locator("[data-testid=eval-metric][data-metric=exact_match] td")
    rows = int(page.get_by_test_id("eval-meta").get_attribute("data-rows") or 0)
    assert re.fullmatch(rf"\d+/{rows}", exact.nth(0).text_content() or "")
    assert re.fullmatch(rf"\d+/{rows}", exact.nth(1).text_content() or "")
    assert "(few rows)" in (exact.nth(2).text_content() or "")
    warning = page.get_by_test_id("eval-warning").first
    assert f"Only {rows} held-out rows" in (warning.text_content() or "")
    assert "Final adapter (step 6)" in (page.get_by_test_id("eval-meta").text_content() or "")
    assert page.get_by_test_id("eval-select").is_hidden()  # one eval: nothing to choose

    # the rows where base and adapter differ, side by side with the question and reference
    samples = page.get_by_test_id("eval-sample")
    samples.first.wait_for()
    token = page.evaluate("() => document.querySelector('meta[name=arkor-studio-token]').content")
    api = page.request.get(
        f"{studio_url}/api/runs/{job_id}/evals", headers={"X-Arkor-Studio-Token": token}
    ).json()
    differing = len(api["evals"][0]["differing"])
    assert 0 < differing <= rows
    assert samples.count() == differing
    assert page.locator("[data-testid=eval-sample][data-differs=false]").count() == 0
    numbers = [api["evals"][0]["samples"][i]["number"] for i in api["evals"][0]["differing"]]
    assert [int(samples.nth(i).get_attribute("data-row") or 0) for i in range(differing)] == numbers
    head = page.get_by_test_id("eval-rows-head").text_content() or ""
    assert head == f"Rows where base and adapter differ: {differing} of {rows}"
    first = samples.first
    assert first.get_by_test_id("eval-question").text_content()
    boxes = [first.locator(f".answer.{side}") for side in ("reference", "base", "adapter")]
    base_text, adapter_text = (box.locator(".text").text_content() for box in boxes[1:])
    assert base_text != adapter_text
    assert "rouge_l" in (boxes[2].locator(".scores").text_content() or "")
    tops = {round(box.bounding_box()["y"]) for box in boxes}  # type: ignore[index]
    assert len(tops) == 1, "reference, base and adapter side by side at 1280 px"
    screenshot(page, "studio-run-eval")
    section.scroll_into_view_if_needed()
    screenshot(page, "studio-run-eval-window", full_page=False)

    # the toggle, from the keyboard: every evaluated row
    toggle = page.get_by_test_id("eval-all-rows")
    toggle.focus()
    page.keyboard.press("Space")
    assert toggle.is_checked()
    page.wait_for_function(
        f"() => document.querySelectorAll('[data-testid=eval-sample]').length === {rows}"
    )
    assert page.locator("[data-testid=eval-sample][data-differs=true]").count() == differing
    assert (page.get_by_test_id("eval-rows-head").text_content() or "").startswith(
        f"All {rows} evaluated rows"
    )

    # run it again on 4 rows of checkpoint 3: the selector appears and shows the new eval
    page.get_by_test_id("eval-target").select_option("3")
    page.get_by_test_id("eval-rows-input").fill("4")
    page.get_by_test_id("eval-run").click()
    select = page.get_by_test_id("eval-select")
    select.wait_for()
    assert select.locator("option").count() == 2
    assert "Checkpoint 3" in (page.get_by_test_id("eval-meta").text_content() or "")
    assert "4 of" in (page.get_by_test_id("eval-meta").text_content() or "")
    assert page.get_by_test_id("eval-sample").count() == 4  # the toggle is still on
    select.select_option(index=0)
    assert "Final adapter (step 6)" in (page.get_by_test_id("eval-meta").text_content() or "")

    # dark, and narrow: the answers stack, nothing wider than the window
    page.emulate_media(color_scheme="dark")
    page.goto(f"{studio_url}/runs/{job_id}")
    table.wait_for()
    samples.first.wait_for()
    screenshot(page, "studio-run-eval-dark")
    page.set_viewport_size({"width": 420, "height": 800})
    page.goto(f"{studio_url}/runs/{job_id}")
    samples.first.wait_for()
    first = samples.first
    base_box = first.locator(".answer.base").bounding_box()
    adapter_box = first.locator(".answer.adapter").bounding_box()
    assert base_box and adapter_box
    assert adapter_box["y"] >= base_box["y"] + base_box["height"]
    assert page.evaluate("() => document.documentElement.scrollWidth <= innerWidth")
    section.scroll_into_view_if_needed()
    screenshot(page, "studio-run-eval-narrow", full_page=False)
    assert browser_page.errors == []
