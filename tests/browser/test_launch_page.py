"""The launch page in Chromium: live log, progress, errors, and the redirect to the server."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import quote

import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.browser.conftest import screenshot
from tests.browser.harness import FAKE_SERVER_TOKEN, RECORDED_STREAM

pytestmark = pytest.mark.browser


async def stay_on_launch_page(page: Page) -> None:
    """Answer the redirect to the server with 204, so the browser stays and the page can be inspected."""
    await page.route("**/user/test-user/**", lambda route: route.fulfill(status=204))


async def test_mid_build_shows_coloured_log_progress_and_elapsed_time(page: Page, harness):
    await page.goto(f"{harness.url}v2/gh/org/hold-repo/HEAD")
    log = page.get_by_role("log")
    await expect(log).to_contain_text("package-030")
    await expect(page.locator("#launch-status")).to_have_text("Building the environment…")
    await expect(page.locator('[data-step="building"]')).to_have_attribute("data-state", "current")
    await expect(page.locator('[data-step="fetching"]')).to_have_attribute("data-state", "done")
    await expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "35")
    assert await page.title() == "Building: org/hold-repo/HEAD · bia-binder"

    # colours from ANSI escapes, and `\r` progress collapsed to its last state
    await expect(log.locator("span.ansi-bold", has_text="Detected requirements.txt")).to_have_count(1)
    await expect(log.locator("span.ansi-fg-green").first).to_have_text("+")
    await expect(log.locator(".term-line", has_text="Downloading")).to_have_text(["Downloading (100%)"])

    await expect(page.locator("#elapsed")).not_to_have_text("0:00", timeout=15_000)
    await screenshot(page, "launch-building")


async def test_log_follows_the_tail_until_scrolled_up(page: Page, harness):
    await page.set_viewport_size({"width": 1280, "height": 700})
    await page.goto(f"{harness.url}v2/gh/org/hold-follow/HEAD")
    log = page.get_by_role("log")
    await expect(log).to_contain_text("package-030")
    at_bottom = "el => el.scrollHeight - el.scrollTop - el.clientHeight < 8"
    assert await log.evaluate("el => el.scrollHeight > el.clientHeight")
    await page.wait_for_function(f"({at_bottom})(document.getElementById('log'))")

    jump = page.locator("#follow-button")
    await expect(jump).to_be_hidden()
    await log.evaluate("el => el.scrollTo(0, 0)")
    await expect(jump).to_be_visible()
    await jump.click()
    await expect(jump).to_be_hidden()
    assert await log.evaluate(at_bottom)


async def test_copy_log_gives_plain_text(page: Page, harness):
    await page.goto(f"{harness.url}v2/gh/org/hold-copy/HEAD")
    await expect(page.get_by_role("log")).to_contain_text("package-030")
    await page.get_by_role("button", name="Copy log").click()
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert "Detected requirements.txt: building a Python environment with uv\n" in copied
    assert " + package-030==1.30.0" in copied
    assert "\x1b" not in copied and "\r" not in copied


async def test_hide_log_is_a_toggle(page: Page, harness):
    await page.goto(f"{harness.url}v2/gh/org/hold-toggle/HEAD")
    toggle = page.get_by_role("button", name="Hide log")
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    await toggle.click()
    await expect(page.get_by_role("log")).to_be_hidden()
    await expect(page.get_by_role("button", name="Show log")).to_have_attribute("aria-expanded", "false")


@pytest.mark.parametrize(
    "query, expected_path",
    [
        ("", "/user/test-user/"),
        ("?urlpath=" + quote("/lab/tree/notebooks/a.ipynb", safe=""), "/user/test-user/lab/tree/notebooks/a.ipynb"),
        ("?labpath=" + quote("notebooks/segment cells.ipynb", safe=""), "/user/test-user/lab/tree/notebooks/segment%20cells.ipynb"),
        ("?filepath=index.ipynb", "/user/test-user/tree/index.ipynb"),
    ],
)
async def test_ready_opens_the_server_at_the_requested_path(page: Page, harness, query, expected_path):
    await page.goto(f"{harness.url}v2/gh/org/repo/HEAD{query}")
    await page.wait_for_url(re.compile(r"/user/test-user/"))
    assert page.url == f"{harness.origin}{expected_path}?token={FAKE_SERVER_TOKEN}"
    await expect(page.locator("#token")).to_have_text(FAKE_SERVER_TOKEN)


async def test_cached_environment_skips_build_steps(page: Page, harness):
    await stay_on_launch_page(page)
    await page.goto(f"{harness.url}v2/gh/org/cached-repo/HEAD")
    await expect(page.locator("#launch")).to_have_attribute("data-state", "ready")
    await expect(page.locator('[data-step="fetching"] .phase-time')).to_have_text("skipped")
    await expect(page.locator('[data-step="building"] .phase-time')).to_have_text("skipped")
    await expect(page.locator('[data-step="launching"]')).to_have_attribute("data-state", "done")
    await expect(page.get_by_role("link", name="open it here")).to_have_attribute(
        "href", f"{harness.origin}/user/test-user/?token={FAKE_SERVER_TOKEN}"
    )
    await screenshot(page, "launch-ready")


async def test_failed_install_shows_error_panel(page: Page, harness):
    await page.goto(f"{harness.url}v2/gh/org/fail-repo/HEAD")
    panel = page.locator("#error-panel")
    await expect(panel).to_be_visible()
    await expect(panel.get_by_role("heading", name="Launch failed")).to_be_focused()
    await expect(page.locator("#error-message")).to_have_text(
        "Building the environment failed: `uv pip install -r requirements.txt` exited with status 1. "
        "Fix requirements.txt and launch again."
    )
    await expect(page.locator("#error-advice")).to_contain_text("The environment could not be built")
    await expect(page.locator("#error-tail")).to_contain_text("No solution found when resolving dependencies")
    await expect(page.locator('[data-step="building"]')).to_have_attribute("data-state", "failed")
    await expect(page.get_by_role("link", name="Try again")).to_have_attribute("href", page.url)
    await expect(page.get_by_role("log")).to_be_visible()
    await expect(page.get_by_role("log").locator("span.ansi-fg-red").first).to_have_text("error")
    assert (await page.title()).startswith("Failed:")
    assert "favicon-failed" in await page.locator("#favicon").get_attribute("href")
    await screenshot(page, "launch-failed")


async def test_server_start_failure_is_not_blamed_on_the_repository(page: Page, harness):
    await page.goto(f"{harness.url}v2/gh/org/launchfail-repo/HEAD")
    await expect(page.locator("#error-message")).to_have_text("Spawn failed: the server exited before it answered")
    await expect(page.locator("#error-advice")).to_contain_text("The environment was built, but its server did not start")
    await expect(page.locator('[data-step="building"]')).to_have_attribute("data-state", "done")
    await expect(page.locator('[data-step="launching"]')).to_have_attribute("data-state", "failed")


async def test_lost_stream_is_reported_and_not_retried(page: Page, harness):
    spec = "gh/org/drop-repo/HEAD"
    await page.goto(f"{harness.url}v2/{spec}")
    await expect(page.locator("#error-message")).to_have_text(
        "The connection to the build service was lost before the launch finished."
    )
    await asyncio.sleep(4)  # EventSource would have reconnected by now (its default retry is ~3 s)
    assert harness.build_requests.count(spec) == 1


async def test_git_url_spec_is_shown_readable_and_streamed_encoded(page: Page, harness):
    spec = f"git/{quote('http://example.org/lab/repo.git', safe='')}/main"
    await stay_on_launch_page(page)
    await page.goto(f"{harness.url}v2/{spec}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Starting http://example.org/lab/repo.git/main")
    await expect(page.locator("#launch")).to_have_attribute("data-state", "ready")
    assert spec in harness.build_requests


async def test_ready_without_server_url_is_an_error_not_a_redirect(page: Page, harness):
    await page.goto(f"{harness.url}v2/gh/org/nourl-repo/HEAD")
    await expect(page.locator("#error-message")).to_have_text("The server started, but the service did not say where it is.")
    assert "/v2/gh/org/nourl-repo/HEAD" in page.url


async def test_page_text_from_the_url_is_escaped(page: Page, harness):
    spec = 'gh/org/<img src=x onerror="window.pwned=1">/HEAD'
    await stay_on_launch_page(page)
    await page.goto(f"{harness.url}v2/{quote(spec)}")
    await expect(page.locator(".launch-spec")).to_contain_text("<img src=x")
    assert await page.locator("main img").count() == 0
    assert await page.evaluate("window.pwned") is None


@pytest.mark.skipif(not RECORDED_STREAM.exists(), reason=f"reference stream not available at {RECORDED_STREAM}")
async def test_replays_real_binderhub_stream(page: Page, harness):
    """mybinder.org's own events (no phase, 'unknown' phase, `\\r`, ANSI) go through the page."""
    await stay_on_launch_page(page)
    await page.goto(f"{harness.url}v2/gh/binder-examples/recorded-octave/HEAD")
    await expect(page.locator("#launch")).to_have_attribute("data-state", "ready", timeout=60_000)
    log = page.get_by_role("log")
    await expect(log).to_contain_text("Step 51/51")
    await expect(log.locator("span.ansi-fg-bright-red").first).to_contain_text("debconf")
    # "Fetching base image...\r" is overwritten by the next line, as in a terminal
    await expect(log.locator(".term-line", has_text="Fetching base image")).to_have_count(0)
    await expect(log.locator(".term-line", has_text="0707eec19ac4")).to_have_text([" ---> 0707eec19ac4"])
    for step in ("waiting", "fetching", "building", "launching"):
        await expect(page.locator(f'[data-step="{step}"]')).to_have_attribute("data-state", "done")


async def test_ten_launch_tabs_at_once(context: BrowserContext, harness):
    pages = [await context.new_page() for _ in range(10)]
    before = len(harness.build_requests)
    await asyncio.gather(
        *(page.goto(f"{harness.url}v2/gh/org/tab-{i}/HEAD?urlpath=tab{i}") for i, page in enumerate(pages))
    )
    await asyncio.gather(*(page.wait_for_url(re.compile(rf"/user/test-user/tab{i}\?")) for i, page in enumerate(pages)))
    for i, page in enumerate(pages):
        assert page.url == f"{harness.origin}/user/test-user/tab{i}?token={FAKE_SERVER_TOKEN}"
    assert sorted(harness.build_requests[before:]) == sorted(f"gh/org/tab-{i}/HEAD" for i in range(10))
