"""Hostile launch links in a real browser (Debian's Chromium, DNS blocked): whatever urlpath, labpath or
filepath a link carries, the browser stays on the session's path with its token, and no script runs.

The harness renders the launch page with the parameters as given (the service itself refuses them with a
400 first, see tests/security/test_requests.py): this proves the page's own check, the second line.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import pytest
from playwright.async_api import Page, expect

from tests.browser.harness import FAKE_SERVER_TOKEN

from .conftest import CHROMIUM_ARGS, CHROMIUM, TIMEOUT_MS, PageWatch, new_context

pytestmark = pytest.mark.browser

ATTACKS = [
    ("urlpath", "https://evil.example/x"),
    ("urlpath", "//evil.example/x"),
    ("urlpath", "/\\evil.example/x"),
    ("urlpath", "\\/evil.example"),
    ("urlpath", "javascript:alert(document.domain)//"),
    ("urlpath", " javascript:alert(document.domain)"),
    ("urlpath", "java\tscript:alert(1)"),
    ("urlpath", "data:text/html,<script>alert(1)</script>"),
    ("urlpath", "../../hub/admin"),
    ("urlpath", "%2e%2e/%2e%2e/hub"),
    ("labpath", "https://evil.example/x"),
    ("filepath", "javascript:alert(1)"),
]


@pytest.fixture(scope="module")
async def no_dns_browser():
    """Chromium that resolves no name at all: a redirect off the machine could not even be looked up."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"],
            timeout=120_000,
        )
        yield browser
        await browser.close()


@pytest.mark.parametrize("name,value", ATTACKS, ids=[f"{n}={v!r}" for n, v in ATTACKS])
async def test_the_browser_never_leaves_the_session_and_runs_no_script(no_dns_browser, harness, name, value):
    watch = PageWatch()
    context = await new_context(no_dns_browser, watch)
    dialogs: list[str] = []
    try:
        page: Page = await context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        await page.goto(f"{harness.url}v2/gh/org/cached-repo/HEAD?{name}={quote(value, safe='')}")
        await expect(page.locator("#launch")).to_have_attribute("data-state", "failed", timeout=TIMEOUT_MS)
        await expect(page.locator("#error-message")).to_contain_text("not a path inside the session")
        assert urlsplit(page.url).netloc == urlsplit(harness.url).netloc and "/v2/" in page.url
        assert dialogs == []
        # the token went nowhere: no request but to the harness itself, none carrying it
        assert watch.off_host_requests() == [], watch.off_host_requests()
        assert not [url for url in watch.requests if FAKE_SERVER_TOKEN in url]
    finally:
        await context.close()


async def test_a_path_inside_the_session_still_opens_with_the_token(no_dns_browser, harness):
    watch = PageWatch()
    context = await new_context(no_dns_browser, watch)
    try:
        page = await context.new_page()
        await page.goto(f"{harness.url}v2/gh/org/cached-repo/HEAD?urlpath={quote('lab/tree/a b.ipynb', safe='')}")
        await page.wait_for_url("**/user/test-user/**")
        assert page.url == f"{harness.origin}/user/test-user/lab/tree/a%20b.ipynb?token={FAKE_SERVER_TOKEN}"
    finally:
        await context.close()
    assert watch.errors == []


async def test_pages_carry_the_content_security_policy(page, harness):
    for path in ["", "v2/gh/org/cached-repo/HEAD"]:
        response = await page.goto(f"{harness.url}{path}")
        policy = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy, path
