"""What a user does, on the whole running stack: home page → paste a git URL → watch the log →
JupyterLab → run a cell. Also a repository whose install fails, and the badge snippets."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import PageWatch, new_context, screenshot

# A cold build and a JupyterLab start on two shared cores: well past the suite's default 300 s.
pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(1200)]

BUILD_TIMEOUT_MS = 420_000  # a cold build (about a minute alone) on two cores shared with other test runs
NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "answer",
            "metadata": {},
            "outputs": [],
            "source": ["import six\n", "print('six', six.__name__ == 'six', 6 * 7)"],
        }
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.fixture
async def stack_page(browser: Browser, binder_stack):
    watch = PageWatch()
    context = await new_context(browser, watch)
    await context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = await context.new_page()
    yield page
    await context.close()
    assert watch.off_host_requests() == [], "assets must come from bia-binder itself"
    ours = [error for error in watch.errors if "/user/" not in error.split(": ", 1)[0]]
    assert ours == [], "script errors on the home or launch page"


async def fail_with_context(page: Page, stack, what: str) -> None:
    """Fail with what the launch page and the stack's log said (and a screenshot)."""
    await screenshot(page, f"e2e-unexpected-{what.split()[0]}")
    texts = {}
    for name, selector in (("launch status", "#launch-status"), ("error", "#error-message"), ("page log", "#log")):
        texts[name] = await page.locator(selector).inner_text() if await page.locator(selector).count() else ""
    pytest.fail(
        f"{what} at {page.url}\nlaunch status: {texts['launch status']}\nerror: {texts['error']}\n"
        f"page log tail:\n{texts['page log'][-2000:]}\nbia-binder up log tail:\n{stack.log_tail(80)}"
    )


async def launch_outcome(page: Page, stack, success_selector: str) -> None:
    """Wait until the launch page shows its error panel or ``success_selector`` appears (after the redirect)."""
    outcome = page.locator(f"#error-panel:visible, {success_selector}").first
    try:
        await expect(outcome).to_be_visible(timeout=BUILD_TIMEOUT_MS)
    except AssertionError:
        await fail_with_context(page, stack, "timed out waiting for the launch to end")
    if await page.locator("#error-panel:visible").count():
        await fail_with_context(page, stack, "the launch failed")


async def paste_repository(page: Page, stack, clone_url: str) -> None:
    await page.goto(f"{stack.url}/")
    await expect(page.locator("#launch-form")).to_have_attribute("data-ready", "true")
    await page.get_by_label("Repository URL or DOI").fill(clone_url)
    await expect(page.locator("#repo-status")).to_contain_text(f"Git repository: {clone_url}")


async def test_paste_git_url_watch_log_run_cell_in_jupyterlab(stack_page: Page, binder_stack):
    page = stack_page
    clone_url, _sha = binder_stack.git.create_repo(
        "lab/browser-e2e", {"requirements.txt": "six\n", "analysis.ipynb": json.dumps(NOTEBOOK)}
    )
    await paste_repository(page, binder_stack, clone_url)
    await page.get_by_label("Path to open").fill("analysis.ipynb")
    await screenshot(page, "e2e-1-home-pasted")

    await page.get_by_role("button", name="Launch").click()
    await page.wait_for_url(re.compile(r"/v2/git/"))
    await expect(page.get_by_role("log")).to_contain_text(re.compile(r"\S"), timeout=BUILD_TIMEOUT_MS)
    await screenshot(page, "e2e-2-launch-log")

    await launch_outcome(page, binder_stack, ".jp-LabShell")
    await page.wait_for_url(re.compile(r"/user/[^/]+/lab/tree/analysis\.ipynb"))
    cell = page.locator(".jp-Notebook .jp-Cell").first
    await expect(cell).to_contain_text("print('six'", timeout=180_000)
    await screenshot(page, "e2e-3-jupyterlab")

    # a cell run before the kernel is up may be dropped: wait for the status bar's "Idle"
    await expect(page.get_by_role("button", name=re.compile(r"\| Idle$"))).to_be_visible(timeout=180_000)
    await cell.locator(".jp-InputArea-editor").click()
    await page.keyboard.press("Shift+Enter")
    await expect(cell.locator(".jp-OutputArea-output")).to_have_text("six True 42", timeout=180_000)
    await screenshot(page, "e2e-4-cell-output")


async def test_failing_install_shows_error_panel(stack_page: Page, binder_stack):
    page = stack_page
    clone_url, _sha = binder_stack.git.create_repo(
        "lab/browser-broken", {"requirements.txt": "this-package-does-not-exist-bia-browser\n"}
    )
    await paste_repository(page, binder_stack, clone_url)
    await page.get_by_role("button", name="Launch").click()

    panel = page.locator("#error-panel")
    try:
        await expect(panel).to_be_visible(timeout=BUILD_TIMEOUT_MS)
    except AssertionError:
        await fail_with_context(page, stack=binder_stack, what="timed out waiting for the error panel")
    await expect(page.locator("#error-message")).to_contain_text("this-package-does-not-exist-bia-browser")
    await expect(page.locator("#error-advice")).not_to_be_empty()
    await expect(page.get_by_role("link", name="Try again")).to_have_attribute("href", page.url)
    await screenshot(page, "e2e-5-install-failed")


async def test_badge_snippets_point_at_the_service(stack_page: Page, binder_stack):
    page = stack_page
    clone_url, _sha = binder_stack.git.create_repo("lab/browser-badge", {"requirements.txt": "six\n"})
    await paste_repository(page, binder_stack, clone_url)
    launch = await page.locator("#launch-url").text_content()
    assert launch.startswith(f"{binder_stack.url}/v2/git/") and launch.endswith("/HEAD")

    await expect(page.locator("#badge-markdown")).to_have_text(f"[![Binder]({binder_stack.url}/badge_logo.svg)]({launch})")
    assert await page.locator("#badge-image").evaluate("img => img.complete && img.naturalWidth > 0")
    await page.get_by_role("button", name="Copy reStructuredText badge").click()
    assert await page.evaluate("navigator.clipboard.readText()") == f".. image:: {binder_stack.url}/badge_logo.svg\n   :target: {launch}"
    await screenshot(page, "e2e-6-badges")

    # the link opens the launch page for this spec (fetched without a browser: no launch starts)
    response = httpx.get(launch, timeout=30)
    assert response.status_code == 200 and 'data-build-url="/build/git/' in response.text
