"""The gateway as a web service: a member's URL space, its safety (headers, public URL, malformed input),
health, status page, metrics and redirect mode."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from bia_binder.federation.members import HealthMonitor, Member
from tests.federation.fake_member import FakeMember


async def get(url: str, **kwargs) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(url, **kwargs)


async def test_member_pages_badges_and_providers_are_served(federation, repo):
    f = await federation([FakeMember("a")])
    spec = repo()
    home = await get(f.url)
    assert home.status_code == 200 and "bia-binder" in home.text
    page = await get(f"{f.url}v2/{spec}?labpath=notebooks/a.ipynb")
    assert page.status_code == 200
    assert f'/build/{spec}' in page.text, "the launch page opens its stream on the gateway"
    assert (await get(f"{f.url}badge_logo.svg")).headers["Content-Type"].startswith("image/svg+xml")
    providers = (await get(f"{f.url}api/repoproviders")).json()
    assert {p["id"] for p in providers} >= {"gh", "git", "zenodo"}
    for response in (home, page):
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["v2/gh/%zz/HEAD", "build/git/%ff%fe/HEAD", "v2/gh/org/re%0Apo/HEAD", "status%00"])
async def test_malformed_urls_answer_400(federation, path):
    f = await federation([FakeMember("a")])
    response = await get(f"{f.url}{path}", headers={"Accept": "text/event-stream"})
    assert response.status_code == 400
    assert "Malformed URL" in response.text or "Invalid unicode" in response.text  # ours, or Tornado's own check
    assert "Traceback" not in response.text


async def test_bad_launches_fail_with_one_line_and_a_4xx(federation):
    a = FakeMember("a")
    f = await federation([a])
    no_accept = await get(f"{f.url}build/gh/org/repo/HEAD")
    assert no_accept.status_code == 400 and "text/event-stream" in no_accept.text
    unknown = await f.launch("nope/org/repo/HEAD")
    assert unknown[-1]["phase"] == "failed" and unknown[-1]["status_code"] == 404
    not_local = await f.launch(f"git/{quote('file:///etc', safe='')}/HEAD")
    assert not_local[-1]["phase"] == "failed" and 400 <= not_local[-1]["status_code"] < 500
    assert a.launches == []
    missing = await get(f"{f.url}user/binder-nobody-1/lab")
    assert missing.status_code == 404


async def test_launch_host_comes_from_the_public_url_never_from_host(federation, repo):
    f = await federation([FakeMember("a")], FederationGateway__public_url="https://binder.example.org/")
    events = []
    async with httpx.AsyncClient(timeout=30) as client:
        async with client.stream("GET", f"{f.url}build/{repo()}", headers={"Accept": "text/event-stream", "Host": "evil.example"}) as r:
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    events.append(line)
    assert '"binder_launch_host": "https://binder.example.org/"' in events[-1]
    assert "evil.example" not in "".join(events)


async def test_health_is_ok_while_one_member_takes_launches(federation):
    a, b = FakeMember("a"), FakeMember("b")
    f = await federation([a, b])
    assert (await get(f"{f.url}health")).status_code == 200
    a.healthy = False
    await f.wait_for(lambda: f.member("a").state == "down")
    body = (await get(f"{f.url}health")).json()
    assert body["ok"] is True and [c["ok"] for c in body["checks"]] == [False, True]
    b.healthy = False
    await f.wait_for(lambda: f.member("b").state == "down")
    assert (await get(f"{f.url}health")).status_code == 503


def test_a_flapping_member_stays_down():
    monitor = HealthMonitor(rise=3)
    member = Member("a", "http://a.example/")
    monitor.succeeded(member)
    assert member.state == "up", "a new member comes up on its first good check"
    monitor.failed(member, "timeout")
    assert member.state == "down", "down on the first failure"
    for _ in range(5):
        monitor.succeeded(member)
        monitor.succeeded(member)
        monitor.failed(member, "timeout")
        assert member.state == "down"
    for _ in range(3):
        monitor.succeeded(member)
    assert member.state == "up"


async def test_status_page_and_metrics_say_where_launches_went(federation, repo):
    a, b = FakeMember("a"), FakeMember("b")
    f = await federation([a, b])
    spec = repo()
    first = await f.launch(spec)
    second = await f.launch(spec)
    where = first[-1]["federation_member"]
    assert second[-1]["federation_member"] == where
    status = (await get(f"{f.url}api/federation/status")).json()
    row = next(m for m in status["members"] if m["name"] == where)
    assert row["last_hour"] == {"ready": 2, "cache_hits": 1}
    assert status["launches_last_hour"] == 2 and status["cache_hits_last_hour"] == 1
    page = await get(f"{f.url}status")
    assert page.status_code == 200 and f'data-member="{where}"' in page.text
    metrics = (await get(f"{f.url}metrics")).text
    assert f'federation_launches_total{{member="{where}",outcome="ready"}} 2.0' in metrics
    assert 'federation_placements_total{reason="held"} 1.0' in metrics
    assert "federation_cache_hits_total 1.0" in metrics
    assert 'federation_member_up{member="a"} 1.0' in metrics


async def test_redirect_mode_sends_launches_to_the_chosen_member(federation, repo):
    a, b = FakeMember("a"), FakeMember("b")
    f = await federation([a, b], FederationGateway__mode="redirect")
    spec = repo()
    build = await get(f"{f.url}build/{spec}", headers={"Accept": "text/event-stream"})
    assert build.status_code == 307
    member = next(m for m in (a, b) if build.headers["Location"].startswith(m.url))
    assert build.headers["Location"] == f"{member.url}build/{spec}"
    page = await get(f"{f.url}v2/{spec}?labpath=notebooks/a.ipynb")
    assert page.status_code == 307
    assert page.headers["Location"] == f"{member.url}v2/{spec}?labpath=notebooks%2Fa.ipynb", "the same member again"
    bad = await get(f"{f.url}v2/{spec}?urlpath=https://evil.example/")
    assert bad.status_code == 400
    hub = await get(f"{f.url}hub/login")
    assert hub.status_code == 307 and hub.headers["Location"] in (f"{a.url}hub/login", f"{b.url}hub/login")
