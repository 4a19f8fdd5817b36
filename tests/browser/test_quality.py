"""Base URL prefix, narrow screens, contrast, the error page: the pages' quality bar."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.harness import FAKE_SERVER_TOKEN

pytestmark = pytest.mark.browser

# WCAG 2 contrast of each element's text colour against the first opaque background behind it.
CONTRAST_JS = """
(selectors) => {
  const rgb = (css) => css.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => {
    const channel = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const parts = rgb(getComputedStyle(el).backgroundColor);
      if (parts.length === 3 || parts[3] === 1) return parts.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const results = [];
  for (const selector of selectors) {
    for (const el of document.querySelectorAll(selector)) {
      if (!el.getClientRects().length || !el.textContent.trim()) continue;
      const [a, b] = [luminance(rgb(getComputedStyle(el).color)), luminance(background(el))];
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      results.push([selector, el.textContent.trim().slice(0, 30), Math.round(ratio * 100) / 100]);
    }
  }
  return results;
}
"""

HOME_TEXT = ["body", "h1", ".lede", "label", ".field-status", ".field-hint", ".button", ".nav-links a", ".snippet-text", ".site-footer"]
LAUNCH_TEXT = [".launch-status", ".elapsed", ".phase-list li", ".term-line", ".term-line span", ".error-message", ".error-advice", ".error-tail", ".button"]


async def low_contrast(page: Page, selectors: list[str]) -> list:
    measured = await page.evaluate(CONTRAST_JS, selectors)
    assert measured, "nothing measured"
    return [item for item in measured if item[2] < 4.5]


async def test_home_text_has_readable_contrast(page: Page, harness):
    await page.goto(harness.url)
    await page.get_by_label("Repository URL or DOI").fill("org/repo")
    await page.get_by_label("Path to open").fill("x")
    assert await low_contrast(page, HOME_TEXT) == []
    await page.get_by_label("Repository URL or DOI").fill("no such thing")
    assert await low_contrast(page, [".field-status"]) == []


async def test_launch_log_and_error_have_readable_contrast(page: Page, harness):
    await page.goto(f"{harness.url}v2/gh/org/fail-contrast/HEAD")
    await expect(page.locator("#error-panel")).to_be_visible()
    assert await low_contrast(page, LAUNCH_TEXT) == []


async def test_every_ansi_colour_is_readable_on_the_log(page: Page, harness):
    await page.goto(f"{harness.url}v2/gh/org/hold-ansi/HEAD")
    await page.evaluate(
        """() => {
            const log = document.getElementById("log");
            for (const bright of ["", "bright-"]) for (const name of ["red", "green", "yellow", "blue", "magenta", "cyan", "white", "black"]) {
                const span = document.createElement("span");
                span.className = `ansi-fg-${bright}${name} probe`;
                span.textContent = name;
                log.append(span);
            }
        }"""
    )
    assert await low_contrast(page, [".probe"]) == []


async def test_works_under_a_base_url_prefix(page: Page, prefixed_harness, watch):
    harness = prefixed_harness
    await page.goto(harness.url)
    await expect(page.get_by_role("complementary", name="Announcement")).to_contain_text("Maintenance on Friday")
    await page.get_by_label("Repository URL or DOI").fill("https://github.com/org/repo")
    await expect(page.locator("#launch-url")).to_have_text(f"{harness.origin}/binder/v2/gh/org/repo/HEAD")
    await expect(page.locator("#badge-markdown")).to_contain_text(f"{harness.origin}/binder/badge_logo.svg")
    assert await page.locator("#badge-image").evaluate("img => img.naturalWidth > 0")
    await expect(page.get_by_role("link", name="bia-binder")).to_have_attribute("href", "/binder/")
    await screenshot(page, "home-prefix-banner")

    await page.get_by_role("button", name="Launch").click()
    await page.wait_for_url(re.compile(r"/user/test-user/"))
    assert page.url == f"{harness.origin}/user/test-user/?token={FAKE_SERVER_TOKEN}"
    local = [url for url in watch.requests if "/static/" in url]
    assert local and all(url.startswith(f"{harness.origin}/binder/static/") for url in local)
    assert any("/binder/build/gh/org/repo/HEAD" in url for url in watch.requests)


@pytest.mark.parametrize("path", ["", "v2/gh/org/fail-narrow/HEAD", "v2/gh/org/hold-narrow/HEAD"])
async def test_narrow_screen_has_no_sideways_scrolling(browser, harness, path):
    from tests.browser.conftest import PageWatch, new_context

    watch = PageWatch()
    context = await new_context(browser, watch, viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    try:
        page = await context.new_page()
        await page.goto(f"{harness.url}{path}")
        if path:
            await expect(page.get_by_role("log")).not_to_be_empty()
        else:
            await page.get_by_label("Repository URL or DOI").fill("https://github.com/some-organisation/a-rather-long-repository-name")
            await expect(page.locator("#share-content")).to_be_visible()
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        await screenshot(page, f"narrow-{path.split('/')[3] if path else 'home'}")
    finally:
        await context.close()
    assert watch.errors == []


async def test_skip_link_moves_focus_to_main(page: Page, harness):
    await page.goto(harness.url)
    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    await expect(skip).to_be_focused()
    await expect(skip).to_be_in_viewport()
    await page.keyboard.press("Enter")
    await expect(page.locator("main")).to_be_focused()


async def test_unknown_page_shows_error_page(page: Page, harness, watch):
    response = await page.goto(f"{harness.url}no/such/page")
    assert response.status == 404
    watch.errors = [error for error in watch.errors if "status of 404" not in error]
    await expect(page.locator("#error-message")).to_have_text("No page at /no/such/page")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    await expect(page.get_by_role("link", name="Go to the home page")).to_have_attribute("href", harness.base_url)
