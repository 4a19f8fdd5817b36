"""The whole federation, for real: three ``bia-binder up`` members on loopback behind ``bia-binder federation``,
one git server. Cache-awareness, a burst with a member killed (kill -9) in the middle, drain, the member's
return, and BinderHub's JS client through the gateway. The tests share one federation and run in order."""

from __future__ import annotations

import concurrent.futures
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from playwright.async_api import expect

from bia_binder.federation.members import Member
from bia_binder.federation.selection import rendezvous_score
from tests.browser.conftest import PageWatch, browser, new_context, screenshot  # noqa: F401 (browser: a fixture)
from tests.federation.stack import FederatedStack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

FILES = {"requirements.txt": "six\n"}
BURST_LAUNCHES, BURST_REPOS, BURST_PARALLEL = 12, 3, 4


@pytest.fixture(scope="module")
def fed():
    with FederatedStack(members=3) as stack:
        yield stack


def phases(events):
    return [e["phase"] for e in events]


def stop_session(ready: dict) -> None:
    """Keep the machine quiet: a session the test has checked is stopped (as its user would)."""
    try:
        httpx.post(f"{ready['url']}api/shutdown", headers={"Authorization": f"token {ready['token']}"}, timeout=30)
    except httpx.HTTPError:
        pass


def session_answers(ready: dict) -> bool:
    try:
        return httpx.get(f"{ready['url']}api/status", params={"token": ready["token"]}, timeout=30).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def first_launch(fed):
    spec = fed.git_spec("lab/cached", FILES)
    return spec, fed.launch(spec)


def test_a_new_ref_builds_on_exactly_one_member(fed, first_launch):
    _spec, events = first_launch
    assert events[-1]["phase"] == "ready", (events[-3:], fed.log_tails())
    assert "building" in phases(events)
    holders = [name for name in fed.names if events[-1]["image"] in fed.environments(name)]
    assert holders == [events[-1]["federation_member"]]
    assert events[-1]["url"].startswith(fed.members[holders[0]].url), "the session URL is the member's"
    assert session_answers(events[-1])
    stop_session(events[-1])


def test_a_second_launch_goes_to_the_member_that_built_it_and_builds_nothing(fed, first_launch):
    spec, first = first_launch
    before = {name: fed.environments(name) for name in fed.names}
    events = fed.launch(spec)
    assert events[-1]["phase"] == "ready"
    assert events[-1]["federation_member"] == first[-1]["federation_member"]
    assert "building" not in phases(events) and "fetching" not in phases(events)
    assert {name: fed.environments(name) for name in fed.names} == before, "no build anywhere"
    stop_session(events[-1])


def test_a_burst_loses_no_launch_when_a_member_is_killed(fed):
    specs = [fed.git_spec(f"lab/burst-{i}", {**FILES, "n.txt": str(i)}) for i in range(BURST_REPOS)]
    order = [specs[i % BURST_REPOS] for i in range(BURST_LAUNCHES)]
    with concurrent.futures.ThreadPoolExecutor(BURST_PARALLEL) as pool:
        futures = [pool.submit(fed.launch, spec) for spec in order]
        # mid-burst: kill the member with the most launches under way
        fed.wait_for(lambda: max(m["inflight"] for m in fed.status()["members"]) >= 2, 300, "the burst under way")
        victim = max(fed.status()["members"], key=lambda m: m["inflight"])["name"]
        killed_at = time.monotonic()
        fed.kill(victim)
        results = [f.result() for f in futures]
    lost = [r[-3:] for r in results if r[-1]["phase"] != "ready"]
    assert lost == [], (lost, fed.log_tails())
    moved = [e["message"] for r in results for e in r if e["message"].startswith(f"The launch moved from {victim} to ")]
    assert moved, "the killed member had launches under way: they moved"
    survivors = [r[-1] for r in results if r[-1]["federation_member"] != victim]
    assert survivors and all(session_answers(ready) for ready in survivors)
    assert fed.member_status(victim)["state"] == "down"
    # the dead member gets no new launches
    ended = time.monotonic() - killed_at
    after = [fed.launch(spec) for spec in specs]
    assert all(r[-1]["phase"] == "ready" and r[-1]["federation_member"] != victim for r in after)
    for ready in [r[-1] for r in after] + survivors[1:]:
        stop_session(ready)  # survivors[0] stays for the drain test
    print(f"burst: {BURST_LAUNCHES} launches, 0 lost, {len(moved)} moved away from {victim}; the burst ended {ended:.1f} s after the kill")
    fed.victim = victim
    fed.burst = [(spec, r[-1]) for spec, r in zip(order, results) if r[-1] is survivors[0]]


def test_a_draining_member_takes_no_launches_and_its_sessions_keep_working(fed):
    burst = getattr(fed, "burst", None)
    if burst is None:
        pytest.skip("the burst did not run")
    # a session of the burst, on a member that is still alive; that member holds the session's environment
    spec, ready = next((spec, ready) for spec, ready in burst if ready["federation_member"] != fed.victim and session_answers(ready))
    drained = ready["federation_member"]
    fed.set_weight(drained, 0)
    try:
        events = fed.launch(spec)
        assert events[-1]["phase"] == "ready"
        assert events[-1]["federation_member"] not in (drained, fed.victim), "not even the ref it holds"
        assert session_answers(ready), "its running session keeps working"
        name = ready["url"].rstrip("/").rsplit("/", 1)[1]
        redirect = httpx.get(f"{fed.url}/user/{name}/api/status", timeout=30)
        assert redirect.status_code == 307 and redirect.headers["Location"].startswith(ready["url"])
        stop_session(events[-1])
        stop_session(ready)
    finally:
        fed.set_weight(drained, 1)


def test_the_killed_member_comes_back_and_gets_launches_again(fed):
    victim = getattr(fed, "victim", None)
    if victim is None:
        pytest.skip("the burst did not run")
    fed.restart(victim)
    fed.wait_for(lambda: fed.member_status(victim)["state"] == "up", 60, f"{victim} up again")
    # a new repository that its hash ranks first on the member that came back (the least loaded one)
    pool = [Member(name=n, url="", weight=1) for n in fed.names]
    for i in range(200):
        clone_url = fed.git.clone_url(f"lab/back-{i}")
        if max(pool, key=lambda m: rendezvous_score(m, f"git:{clone_url}")).name == victim:
            break
    spec = fed.git_spec(f"lab/back-{i}", FILES)
    events = fed.launch(spec)
    assert events[-1]["phase"] == "ready" and events[-1]["federation_member"] == victim
    stop_session(events[-1])


def test_binderhub_js_client_launches_through_the_gateway(fed, first_launch):
    node = shutil.which("node")
    assert node, "node is required (the machine has Node 20)"
    root = Path(__file__).resolve().parents[2]
    spec, _events = first_launch
    result = subprocess.run(
        [node, str(root / "tests" / "service" / "binderhub_client_launch.mjs"), f"{fed.url}/build/", spec],
        capture_output=True, text=True, timeout=300, cwd=root,
    )
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:])
    assert events[-1]["phase"] == "ready"
    assert any(events[-1]["url"].startswith(stack.url) for stack in fed.members.values())
    assert events[-1]["binder_launch_host"] == f"{fed.url}/"
    stop_session(events[-1])


@pytest.mark.browser
async def test_the_web_front_end_launches_through_the_gateway(fed, first_launch, browser):  # noqa: F811
    """Paste a repository on the gateway's home page, launch: JupyterLab opens on the member."""
    spec, _events = first_launch
    clone_url = unquote(spec.split("/")[1])
    watch = PageWatch()
    context = await new_context(browser, watch)
    page = await context.new_page()
    try:
        await page.goto(f"{fed.url}/")
        await expect(page.locator("#launch-form")).to_have_attribute("data-ready", "true")
        await page.get_by_label("Repository URL or DOI").fill(clone_url)
        await expect(page.locator("#repo-status")).to_contain_text(f"Git repository: {clone_url}")
        await page.get_by_role("button", name="Launch").click()
        await page.wait_for_url(re.compile(r"/v2/git/"))
        assert page.url.startswith(f"{fed.url}/v2/"), "the launch page is the gateway's"
        await expect(page.locator(".jp-LabShell, #error-panel:visible").first).to_be_visible(timeout=420_000)
        await screenshot(page, "federation-jupyterlab")
        assert await page.locator("#error-panel:visible").count() == 0, await page.locator("#log").inner_text()
        assert any(page.url.startswith(f"{stack.url}/user/") for stack in fed.members.values()), page.url
    finally:
        await context.close()
    assert watch.off_host_requests() == []
