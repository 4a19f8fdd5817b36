"""Explore a study, as a user does, on the whole running stack: search the home page, click Explore,
watch the launch (title and licence shown), land in JupyterLab with the study's notebook open.
Also the same launch without a browser: the session holds the notebook and study.json and opens it."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import PageWatch, new_context, screenshot
from tests.stack import BinderStack
from tests.studies.conftest import archives, endpoint_environ, s3, study_environment  # noqa: F401 - fixtures, reused

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(1200)]

LAUNCH_TIMEOUT_MS = 420_000  # a JupyterLab start on two shared cores


@pytest.fixture(scope="module")
def study_stack(archives, study_environment, tmp_path_factory):  # noqa: F811
    # the study environment the service prebuilds, already there (built once per test session, as the
    # notebook tests use it): the stack finds it cached, as a service that has run before does
    # (a hardlinked copy: the environment is relocatable; a data dir outside /tmp, as `make run` uses)
    cache = Path(__file__).resolve().parents[2] / ".cache"
    cache.mkdir(exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="study-stack-", dir=cache))
    (data_dir / "envs").mkdir()
    subprocess.run(["cp", "-al", str(study_environment.root), str(data_dir / "envs" / study_environment.key)], check=True)
    config = "\n".join([
        f"c.BIAProvider.api_url = {archives.url + '/bia'!r}",
        f"c.IDRProvider.api_url = {archives.url + '/idr'!r}",
        f"c.BioStudiesProvider.api_url = {archives.url + '/biostudies'!r}",
        f"c.StudySearch.bia_search_url = {archives.url + '/bia-search/search/fts'!r}",
        f"c.StudySearch.s3_endpoint = {archives.s3_endpoint!r}",
        "c.StudyEnvironment.prebuild = True",
        "",
    ])
    try:
        with BinderStack(data_dir=data_dir, config=config, env=endpoint_environ(archives)) as stack:
            yield stack
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def study_page(browser: Browser, study_stack):
    watch = PageWatch()
    context = await new_context(browser, watch)
    page = await context.new_page()
    yield page
    await context.close()
    assert watch.off_host_requests() == [], "assets must come from bia-binder itself"
    ours = [error for error in watch.errors if "/user/" not in error.split(": ", 1)[0]]
    assert ours == [], "script errors on the home or launch page"


async def test_search_explore_land_in_jupyterlab_with_the_notebook(study_page: Page, study_stack):
    page = study_page
    await page.goto(f"{study_stack.url}/")
    await page.get_by_label("Search BioImage Archive studies").fill("blood")
    await page.get_by_role("button", name="Search", exact=True).click()
    result = page.locator(".study-result").filter(has_text="S-BIAD609")
    await expect(result).to_contain_text("The importance of the blood", timeout=90_000)  # a busy, shared machine
    await expect(result).to_contain_text("Mus musculus")
    await expect(result).to_contain_text("confocal microscopy")
    thumbnail = result.locator("img.study-thumbnail")
    await expect(thumbnail).to_have_attribute("src", "/api/studies/thumbnail/S-BIAD609")
    await page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=await thumbnail.element_handle())
    await screenshot(page, "study-1-search")

    await result.get_by_role("link", name="Explore").click()
    await page.wait_for_url(re.compile(r"/v2/bia/S-BIAD609$"))
    await expect(page.locator("#launch-study")).to_contain_text("The importance of the blood", timeout=60_000)
    await expect(page.locator("#launch-study")).to_contain_text("publicdomain/zero")
    await screenshot(page, "study-2-launch")

    outcome = page.locator("#error-panel:visible, .jp-LabShell").first
    await expect(outcome).to_be_visible(timeout=LAUNCH_TIMEOUT_MS)
    if await page.locator("#error-panel:visible").count():
        pytest.fail(f"the launch failed: {await page.locator('#error-message').inner_text()}\n{study_stack.log_tail(60)}")
    await page.wait_for_url(re.compile(r"/user/[^/]+/lab/tree/explore-S-BIAD609\.ipynb"), timeout=120_000)
    first_cell = page.locator(".jp-Notebook .jp-Cell").first
    await expect(first_cell).to_contain_text("The importance of the blood", timeout=180_000)
    await expect(page.locator(".jp-Notebook")).to_contain_text("accession = 'S-BIAD609'", timeout=60_000)
    await screenshot(page, "study-3-jupyterlab")


def test_idr_launch_opens_its_notebook_in_the_session(study_stack):
    events = study_stack.launch("idr/image/6001247")
    ready = events[-1]
    assert ready["phase"] == "ready", events[-3:]
    assert re.fullmatch(r"v2/idr/image/6001247/v0-[0-9a-f]{12}-t1-e[0-9a-f]{12}", ready["binder_persistent_request"])
    headers = {"Authorization": f"token {ready['token']}"}
    contents = httpx.get(f"{ready['url']}api/contents", headers=headers, timeout=30).json()
    names = {item["name"] for item in contents["content"]}
    assert {"explore-idr-image-6001247.ipynb", "study.json"} <= names
    opened = httpx.get(ready["url"], headers=headers, timeout=30, follow_redirects=False)
    assert opened.status_code in (301, 302)
    assert opened.headers["location"].split("?")[0].endswith("/lab/tree/explore-idr-image-6001247.ipynb")
