"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, and the page harness."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.browser.harness import PageHarness

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("BIA_BINDER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# Generous: two shared cores, and other engineers' tests run at the same time.
TIMEOUT_MS = 30_000



@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's chromium package (scripts/system-deps.sh)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=120_000)
        yield browser
        await browser.close()


@pytest.fixture(scope="session")
async def harness() -> AsyncIterator[PageHarness]:
    server = await PageHarness().start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
async def prefixed_harness() -> AsyncIterator[PageHarness]:
    """The service under a base URL prefix, with an operator banner."""
    server = await PageHarness(base_url="/binder/", banner="<strong>Maintenance</strong> on Friday").start()
    yield server
    await server.stop()


class PageWatch:
    """What a browser context did that a test should not have to ask for: errors and off-host requests."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []

    def off_host_requests(self) -> list[str]:
        allowed_schemes = {"data", "blob", "about"}
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in allowed_schemes and urlsplit(url).hostname != "127.0.0.1"
        ]


async def new_context(browser: Browser, watch: PageWatch, **options) -> BrowserContext:
    context = await browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **options})
    context.set_default_timeout(TIMEOUT_MS)
    context.on("request", lambda request: watch.requests.append(request.url))

    def on_page(page: Page) -> None:
        page.on("pageerror", lambda error: watch.errors.append(f"{page.url}: {error}"))
        page.on(
            "console",
            lambda message: watch.errors.append(f"{page.url}: console {message.text}") if message.type == "error" else None,
        )

    context.on("page", on_page)
    return context


@pytest.fixture
async def watch() -> PageWatch:
    return PageWatch()


@pytest.fixture
async def context(browser: Browser, watch: PageWatch) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile; at the end, no script errors and every request went to 127.0.0.1."""
    context = await new_context(browser, watch)
    await context.grant_permissions(["clipboard-read", "clipboard-write"])
    yield context
    await context.close()
    assert watch.errors == [], watch.errors
    assert watch.off_host_requests() == [], "assets must come from bia-binder itself"


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


async def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as a test artefact (test-artifacts/browser/<name>.png)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
