"""The home page in Chromium: paste a link → provider detected → launch link and badge snippets."""

from __future__ import annotations

import json

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.harness import REPOPROVIDERS

pytestmark = pytest.mark.browser


async def open_home(page: Page, url: str) -> None:
    await page.goto(url)
    await expect(page.locator("#launch-form")).to_have_attribute("data-ready", "true")


async def test_pasted_github_link_gives_launch_link_and_badges(page: Page, harness):
    await open_home(page, harness.url)
    await screenshot(page, "home-empty")
    await page.get_by_label("Repository URL or DOI").fill("https://github.com/binder-examples/requirements")

    launch = f"{harness.url}v2/gh/binder-examples/requirements/HEAD"
    badge = f"{harness.url}badge_logo.svg"
    await expect(page.locator("#repo-status")).to_contain_text("GitHub: binder-examples/requirements")
    await expect(page.locator("#launch-url")).to_have_text(launch)
    await expect(page.locator("#badge-markdown")).to_have_text(f"[![Binder]({badge})]({launch})")
    await expect(page.locator("#badge-rst")).to_have_text(f".. image:: {badge}\n   :target: {launch}")
    await expect(page.locator("#badge-html")).to_have_text(f'<a href="{launch}"><img src="{badge}" alt="Launch Binder"></a>')
    await expect(page.locator("#launch-button")).to_be_enabled()
    assert await page.locator("#badge-image").evaluate("img => img.complete && img.naturalWidth > 0")
    await screenshot(page, "home-badge-snippets")


async def test_copy_buttons_copy_the_snippets(page: Page, harness):
    await open_home(page, harness.url)
    await page.get_by_label("Repository URL or DOI").fill("https://gitlab.com/group/sub/project")
    expected = f"{harness.url}v2/gl/group%2Fsub%2Fproject/HEAD"
    await expect(page.locator("#launch-url")).to_have_text(expected)

    await page.get_by_role("button", name="Copy link").click()
    assert await page.evaluate("navigator.clipboard.readText()") == expected
    await expect(page.get_by_role("button", name="Copied link")).to_be_visible()

    await page.get_by_role("button", name="Copy Markdown badge").click()
    assert await page.evaluate("navigator.clipboard.readText()") == await page.locator("#badge-markdown").text_content()


async def test_ref_and_path_to_open_end_up_in_the_link(page: Page, harness):
    await open_home(page, harness.url)
    await page.get_by_label("Repository URL or DOI").fill("https://github.com/org/repo/tree/dev")
    await expect(page.locator("#launch-url")).to_have_text(f"{harness.url}v2/gh/org/repo/dev")
    await expect(page.get_by_label("Branch, tag or commit")).to_have_attribute("placeholder", "dev")

    await page.get_by_label("Branch, tag or commit").fill("v1.2")
    await page.get_by_label("Path to open").fill("notebooks/segment cells.ipynb")
    await expect(page.locator("#launch-url")).to_have_text(
        f"{harness.url}v2/gh/org/repo/v1.2?labpath=notebooks%2Fsegment+cells.ipynb"
    )
    await page.get_by_label("Kind of path").select_option("url")
    await page.get_by_label("Path to open").fill("/voila/render/app.ipynb")
    await expect(page.locator("#launch-url")).to_have_text(
        f"{harness.url}v2/gh/org/repo/v1.2?urlpath=%2Fvoila%2Frender%2Fapp.ipynb"
    )


async def test_doi_disables_ref(page: Page, harness):
    await open_home(page, harness.url)
    await page.get_by_label("Repository URL or DOI").fill("https://doi.org/10.5281/zenodo.3242074")
    await expect(page.locator("#launch-url")).to_have_text(f"{harness.url}v2/zenodo/10.5281/zenodo.3242074")
    await expect(page.get_by_label("Branch, tag or commit")).to_be_disabled()


async def test_choosing_a_source_shows_its_example_and_ref_field(page: Page, harness):
    await open_home(page, harness.url)
    await page.get_by_label("Source").select_option(label="Zenodo DOI")
    await expect(page.get_by_label("Repository URL or DOI")).to_have_attribute("placeholder", "10.5281/zenodo.3242074")
    await expect(page.get_by_label("Branch, tag or commit")).to_be_disabled()
    await page.get_by_label("Source").select_option(label="GitHub")
    await expect(page.get_by_label("Branch, tag or commit")).to_be_enabled()


async def test_unrecognised_input_says_what_to_do(page: Page, harness):
    await open_home(page, harness.url)
    field = page.get_by_label("Repository URL or DOI")
    await field.fill("just some words")
    await expect(page.locator("#repo-status")).to_contain_text("Not recognised. Paste the address of a repository or a DOI")
    await expect(field).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#launch-button")).to_be_disabled()
    await expect(page.locator("#share-content")).to_be_hidden()

    await page.get_by_label("Source").select_option("gh")
    await field.fill("https://gitlab.com/a/b")
    await expect(page.locator("#repo-status")).to_contain_text("This is not a GitHub link")
    await screenshot(page, "home-unrecognised")


async def test_keyboard_only_launch(page: Page, harness):
    """Tab from the top of the page to the field, type, press Enter: the launch page runs to the server."""
    await open_home(page, harness.url)
    for _ in range(12):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "repo-input":
            break
    assert await page.evaluate("document.activeElement.id") == "repo-input"
    await page.keyboard.type("org/keyboard-repo")
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{harness.origin}/user/test-user/?token=*")


async def test_every_control_is_labelled(page: Page, harness):
    await open_home(page, harness.url)
    await page.get_by_label("Repository URL or DOI").fill("org/repo")
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll("input, select, button, a, textarea")]
            .filter((el) => el.offsetParent !== null || el.getClientRects().length > 0)
            .filter((el) => {
                const label = (el.labels && [...el.labels].map((l) => l.textContent).join(""))
                    || el.getAttribute("aria-label")
                    || (el.getAttribute("aria-labelledby") || "").split(" ").map((id) => document.getElementById(id)?.textContent).join("")
                    || el.textContent || el.querySelector("img")?.alt;
                return !label || !label.trim();
            })
            .map((el) => el.outerHTML)"""
    )
    assert unlabelled == []


@pytest.mark.parametrize("embedding", ["list", "json-text", "absent"])
async def test_providers_embedded_or_fetched(browser, watch, harness, embedding):
    """The page takes the provider list as data or JSON text, or fetches /api/repoproviders itself."""
    from tests.browser.conftest import new_context

    harness.embedded_repoproviders = {"list": REPOPROVIDERS, "json-text": json.dumps(REPOPROVIDERS), "absent": None}[embedding]
    context = await new_context(browser, watch)
    try:
        page = await context.new_page()
        await open_home(page, harness.url)
        await page.get_by_label("Repository URL or DOI").fill("https://gist.github.com/someone/8f7c2f0341ef")
        await expect(page.locator("#launch-url")).to_have_text(f"{harness.url}v2/gist/someone/8f7c2f0341ef/HEAD")
        fetched = any(url.endswith("/api/repoproviders") for url in watch.requests)
        assert fetched == (embedding == "absent")
    finally:
        harness.embedded_repoproviders = REPOPROVIDERS
        await context.close()
    assert watch.errors == []
