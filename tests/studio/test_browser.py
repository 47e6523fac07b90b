"""Studio in a real headless Chromium: train from New run, watch the curve, chat, deploy.

One story on the tiny model, as a user clicks through it, against `arkor dev` run as a
user runs it. Each page is saved as a screenshot (``.screenshots/studio-*.png``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.browser import BrowserPage, screenshot
from tests.utils.requires import need
from tests.utils.studio import arkor_dev, template_project

need("fastapi", "Studio is a FastAPI app")
need("torch", "the run trains the tiny model for real")

pytestmark = [pytest.mark.slow, pytest.mark.browser]
WAIT_MS = 90_000


@pytest.fixture
def studio_url(project: Path, tiny_model: Path) -> Iterator[str]:
    """`arkor dev` serving a fresh template project on the tiny model."""
    template_project(project, tiny_model)
    with arkor_dev(project) as url:
        yield url


def test_a_user_trains_watches_chats_and_deploys_in_studio(
    studio_url: str, browser_page: BrowserPage
) -> None:
    page = browser_page.page
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{studio_url}/runs")
    page.get_by_role("navigation").get_by_role("link", name="New run").click()
    page.wait_for_url(re.compile(r"/new$"))
    page.get_by_test_id("config-select").wait_for()
    page.get_by_text("[trainer]").first.wait_for()

    # an override through the UI, then validate and start
    page.get_by_test_id("override-add").click()
    page.get_by_label("Override 1 key").fill("trainer.learning_rate")
    page.get_by_label("Override 1 value").fill("0.005")
    page.get_by_test_id("validate").click()
    page.get_by_text("Valid: trainer demo").wait_for()
    screenshot(page, "studio-new-run")
    page.get_by_test_id("start-run").click()
    page.wait_for_url(re.compile(r"/runs/[^/]+$"))
    job_id = page.url.rsplit("/", 1)[1]

    # the chart gains points while the run streams in
    chart = page.get_by_test_id("chart")
    chart.wait_for()
    page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=chart]')?.dataset.points || 0) >= 1",
        timeout=WAIT_MS,
    )
    first = int(chart.get_attribute("data-points") or 0)
    page.wait_for_function(
        f"() => Number(document.querySelector('[data-testid=chart]').dataset.points) > {first}",
        timeout=WAIT_MS,
    )
    page.wait_for_function(
        "() => document.querySelector('[data-testid=run-status]')?.textContent.includes('completed')",
        timeout=WAIT_MS,
    )
    assert int(chart.get_attribute("data-points") or 0) == 6
    assert page.get_by_test_id("checkpoint").count() == 2
    # artifacts by folder: the final adapter's files open, one closed <details> per checkpoint
    artifacts = page.get_by_test_id("artifacts")
    artifacts.locator("details").first.wait_for()
    assert (artifacts.locator(".art-folder").first.text_content() or "").startswith("adapter/")
    folders = artifacts.locator("details")
    assert folders.count() == 2
    assert artifacts.locator("details[open]").count() == 0
    assert "checkpoints/checkpoint-3/" in (folders.first.locator("summary").text_content() or "")
    assert "studioToken=" in (artifacts.locator("a[download]").first.get_attribute("href") or "")
    screenshot(page, "studio-run")
    screenshot(page, "studio-run-window", full_page=False)  # the README's picture

    # chat with checkpoint 3 from its "Chat with this" link
    page.locator("[data-testid=checkpoint][data-step='3']").get_by_role(
        "link", name=re.compile("chat", re.I)
    ).click()
    page.wait_for_url(re.compile(rf"/playground\?run={job_id}&step=3"))
    assert page.get_by_label("Max tokens").input_value() == "256"
    # the tiny model reads 512 tokens: two 256-token answers re-encoded could overflow it
    page.get_by_label("Max tokens").fill("64")
    page.get_by_test_id("chat-input").fill("What is the capital of France?")
    page.get_by_test_id("send").click()
    answer = page.get_by_test_id("answer").last
    done = page.locator(".msg-assistant .msg-meta", has_text="completion tokens").last
    done.wait_for()
    assert answer.text_content(), "no streamed text arrived"
    assert "checkpoint 3" in (page.get_by_test_id("target-select").first.text_content() or "")
    assert page.get_by_test_id("system-prompt").input_value()  # the training rows' prompt
    screenshot(page, "studio-playground")

    # the same question to two targets, side by side
    page.get_by_test_id("compare-toggle").check()
    second = page.locator("[data-testid=target-select][data-side=b]")
    second.wait_for()
    assert (
        second.input_value()
        != page.locator("[data-testid=target-select][data-side=a]").input_value()
    )
    page.get_by_test_id("chat-input").fill("Name a colour.")
    page.get_by_test_id("send").click()
    for side, answers in (("a", 2), ("b", 1)):  # side a keeps its earlier exchange
        column = page.locator(f"[data-testid=chat-column][data-side={side}]")
        finished = column.locator(".msg-assistant .msg-meta", has_text="completion tokens")
        finished.nth(answers - 1).wait_for()
        assert finished.count() == answers
    screenshot(page, "studio-playground-compare")

    # deploy the run, make a key (shown once)
    page.goto(f"{studio_url}/endpoints?run={job_id}")
    page.get_by_test_id("endpoint-slug").fill("tiny-bot")
    page.get_by_test_id("create-endpoint").click()
    endpoint = page.locator("[data-testid=endpoint][data-slug='tiny-bot']")
    endpoint.wait_for()
    endpoint.get_by_test_id("new-key").click()
    plaintext = page.get_by_test_id("key-plaintext")
    plaintext.wait_for()
    assert (plaintext.text_content() or plaintext.input_value()).strip().startswith("arkd_")
    assert "tiny-bot" in (page.get_by_test_id("snippet-python").first.text_content() or "")
    assert "/chat/completions" in (page.get_by_test_id("snippet-curl").first.text_content() or "")
    screenshot(page, "studio-endpoints")

    page.goto(f"{studio_url}/data")
    page.get_by_test_id("histogram").wait_for()
    page.get_by_test_id("mask-view").locator(".tokens").wait_for()
    assert re.fullmatch(r"\d+ rows", page.get_by_test_id("data-count").text_content() or "")
    assert "rows measured" in (page.get_by_test_id("rows-measured").text_content() or "")
    # the rows scroll in a box instead of stretching the page
    assert page.evaluate(
        "() => document.querySelector('.rows-scroll').clientHeight <= 0.65 * innerHeight"
    )
    screenshot(page, "studio-data")

    page.goto(f"{studio_url}/runs")
    row = page.locator(f"[data-testid=run-row][data-run-id='{job_id}']")
    row.wait_for()
    assert "completed" in (row.text_content() or "")
    screenshot(page, "studio-runs")

    page.emulate_media(color_scheme="dark")
    page.goto(f"{studio_url}/runs/{job_id}")
    page.get_by_test_id("chart").wait_for()
    page.get_by_text("6 / 6").wait_for()
    # a finished run's bar is drawn full at once, not caught mid-transition
    assert page.evaluate(
        "() => { const b = document.querySelector('.progress .bar');"
        " return b.getBoundingClientRect().width === b.parentElement.clientWidth; }"
    )
    screenshot(page, "studio-run-dark")
    page.set_viewport_size({"width": 420, "height": 800})
    page.goto(f"{studio_url}/playground")
    page.get_by_test_id("chat-input").wait_for()
    # column, messages and composer stack without overlapping
    assert page.evaluate(
        "() => document.querySelector('.composer').getBoundingClientRect().top >="
        " document.querySelector('[data-testid=chat-column]').getBoundingClientRect().bottom"
    )
    screenshot(page, "studio-playground-narrow")
    assert browser_page.errors == []
