"""The demo page end to end in headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

Install the browser with ``scripts/install-browser``; without it the test is skipped and says why.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from llmrec.recommend import Recommender
from llmrec.serve import create_app

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def page(tmp_path: Path) -> Any:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: run scripts/install-browser (Debian's chromium) to run the demo-page test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as playwright:
        # A persistent context gives Chromium a fresh --user-data-dir of our own (Playwright refuses it as an arg).
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), args=FLAGS, headless=True
        )
        try:
            context.set_default_timeout(15_000)
            yield context.new_page()
        finally:
            context.close()


def test_demo_page_recommends_for_a_user_and_for_picked_items(
    page: Any, recommender: Recommender, live_server: Any, tmp_path: Path
) -> None:
    base = live_server(create_app(recommender))
    page.goto(base + "/")
    page.wait_for_function("document.getElementById('model-info').textContent.startsWith('model ready')")
    assert f"{recommender.n_items} items" in page.text_content("#model-info")

    # 1. a known user
    page.fill("#k", "5")
    page.fill("#user-id", "u03")
    page.click("#recommend-user")
    page.wait_for_selector("#results:not([hidden]) tbody tr")
    rows = page.locator("#results tbody tr")
    assert rows.count() == 5
    expected = recommender.explain(user="u03", k=5)  # the page asks for explanations by default
    titles = page.locator("#results tbody td.title")
    assert titles.all_text_contents() == [e.recommendation.title + e.text for e in expected]  # title, then its reason
    assert page.locator("#results tbody td.title .why").all_text_contents() == [e.text for e in expected]
    assert page.locator("#results tbody td.item-id").all_text_contents() == [e.recommendation.item_id for e in expected]
    _screenshot(page, "demo-page-user.png")
    # the user's history beside the list, most recent first, and the scores labelled
    recent = recommender.user_history("u03")[::-1][:20]
    shown = [f"{recommender.titles[i - 1]} [{recommender.raw_ids[i - 1]}]" for i in recent]
    assert page.locator("#history-list li").all_text_contents() == shown
    assert page.locator("#history").is_visible() and page.locator("#results-box").is_visible()
    assert page.text_content("#results th.score") == "model score"
    assert page.locator("#score-note").is_visible() and "higher ranks first" in page.text_content("#score-note")
    n = len(recommender.user_history("u03"))
    assert n > 8  # longer than the tiny model reads: the page says so
    assert page.text_content("#status") == f"5 recommendations from a history of {n} item(s) (only the most recent 8 were read)"

    # 2. items picked by title: search, add two, recommend
    page.fill("#item-search", "item 1")
    page.wait_for_selector("#search-results button[data-item-id='12']")
    page.click("#search-results button[data-item-id='12']")
    page.fill("#item-search", "item 3")
    page.wait_for_selector("#search-results button[data-item-id='30']")
    page.click("#search-results button[data-item-id='30']")
    assert page.locator("#picked li").all_text_contents() == ["removeItem 12 [12]", "removeItem 30 [30]"]
    page.check("#exclude-seen")
    page.uncheck("#explain")
    page.fill("#diversity", "0.5")
    page.click("#recommend-history")
    page.wait_for_function("document.getElementById('status').textContent.includes('history of 2 item(s)')")
    expected = recommender.recommend(history=["12", "30"], k=5, exclude_seen=True, diversity=0.5)
    assert page.locator("#results tbody td.title").all_text_contents() == [r.title for r in expected]
    assert page.locator("#history-list li").all_text_contents() == ["Item 30 [30]", "Item 12 [12]"]
    _screenshot(page, "demo-page-items.png")

    # 3. an error is shown, not swallowed
    page.fill("#user-id", "ghost")
    page.click("#recommend-user")
    page.wait_for_selector("#status.error")
    assert page.text_content("#status") == "unknown user id: ghost"
    assert page.locator("#results").is_hidden() and page.locator("#history").is_hidden()


def test_demo_page_names_the_dataset_and_offers_example_users(page: Any, recommender: Recommender, live_server: Any) -> None:
    base = live_server(create_app(recommender))
    page.goto(base + "/")
    page.wait_for_selector("#examples button")
    name = recommender.meta["name"]
    assert page.text_content("#dataset-name") == f"{name} ({len(recommender.histories)} users, {recommender.n_items} items)"
    examples = page.locator("#examples button").all_text_contents()
    assert 1 <= len(examples) <= 5 and set(examples) <= set(recommender.histories)
    page.click(f"#examples button[data-user-id='{examples[1]}']")  # one click: its history and its list
    page.wait_for_selector("#results:not([hidden]) tbody tr")
    assert page.input_value("#user-id") == examples[1]
    assert page.locator("#history-list li").count() == min(20, len(recommender.user_history(examples[1])))
    assert page.locator("#results tbody tr").count() == 10


def _screenshot(page: Any, name: str) -> None:
    """Save a screenshot into $LLMREC_SCREENSHOTS when set (to look at the page as a person would)."""
    if os.environ.get("LLMREC_SCREENSHOTS"):
        page.screenshot(path=str(Path(os.environ["LLMREC_SCREENSHOTS"]) / name), full_page=True)


def test_demo_page_sends_the_api_key(page: Any, recommender: Recommender, live_server: Any) -> None:
    base = live_server(create_app(recommender, api_key="s3cret"))
    page.goto(base + "/")
    page.fill("#user-id", "u03")
    page.click("#recommend-user")
    page.wait_for_selector("#status.error")
    assert "X-API-Key" in page.text_content("#status")
    page.fill("#api-key", "s3cret")
    page.click("#recommend-user")
    page.wait_for_selector("#results:not([hidden]) tbody tr")
    assert page.locator("#results tbody tr").count() == 10


def test_the_browser_is_where_ci_installs_it() -> None:
    # Guards the skip above from hiding a broken install in CI: CI runs scripts/install-browser first.
    if os.environ.get("CI") != "true":
        pytest.skip("only checked in CI")
    assert CHROMIUM.exists() and shutil.which("chromium"), "CI must run scripts/install-browser"
