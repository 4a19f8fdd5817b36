"""Launch rate limit per client (429 with Retry-After) and ban lists (403): the binder service's app on
loopback, in this process (no hub needed: these launches are refused or fail before a session)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from urllib.parse import quote

import httpx
import pytest
from traitlets import TraitError
from traitlets.config import Config

from bia_binder.service.app import BinderService
from bia_binder.service.bans import BanList
from bia_binder.service.ratelimit import RateLimited, RateLimiter
from bia_binder.up import free_port
from tests.gitserver import GitServer

EVENTS = {"Accept": "text/event-stream"}


@pytest.fixture
async def service(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:9/hub/api")  # nothing listens: no hub needed
    config = Config()
    config.RateLimiter.limit = 3
    config.RateLimiter.period = 600
    config.BanList.banned_specs = [r"^gh/evil-org/", r"^gist/spammer/"]
    config.BanList.banned_repositories = [r"^http://127\.0\.0\.1:\d+/banned/"]
    service = BinderService(config=config, data_dir=str(tmp_path), allow_local_repos=True)
    service.setup()
    service.port = free_port()
    server = service.make_app().listen(service.port, "127.0.0.1", xheaders=True)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}", timeout=30) as client:
        service.client = client
        yield service
    server.stop()


def last_event(response: httpx.Response) -> dict:
    data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
    return json.loads(data[-1])


async def test_launches_beyond_the_limit_get_429_with_retry_after(service):
    client = service.client
    for _ in range(3):
        within = await client.get("/build/gh/not-a-full-spec", headers=EVENTS)  # fails fast: a malformed spec
        assert within.status_code == 200 and last_event(within)["status_code"] == 400
    over = await client.get("/build/gh/not-a-full-spec", headers=EVENTS)
    assert over.status_code == 429
    retry_after = int(over.headers["Retry-After"])
    assert 590 <= retry_after <= 600
    failed = last_event(over)  # BinderHub's client reads one failed event
    assert failed["phase"] == "failed" and failed["status_code"] == 429
    assert "Too many launches" in failed["message"] and f"{retry_after} s" in failed["message"]
    # another client, as the proxy names it in X-Forwarded-For, has its own budget
    other = await client.get("/build/gh/not-a-full-spec", headers={**EVENTS, "X-Forwarded-For": "203.0.113.7"})
    assert other.status_code == 200
    # pages and the API are not launches
    assert (await client.get("/health")).status_code != 429
    assert (await client.get("/v2/gh/org/repo/main")).status_code == 200


async def test_banned_spec_gets_403_with_a_clear_message(service):
    client = service.client
    build = await client.get("/build/gh/Evil-Org/repo/main", headers=EVENTS)
    assert build.status_code == 403
    failed = last_event(build)
    assert failed["status_code"] == 403 and failed["message"] == (
        "gh/Evil-Org/repo/main is banned from launching on this server; ask its operators if you think this is a mistake."
    )
    page = await client.get("/v2/gist/spammer/abc123")
    assert page.status_code == 403 and "is banned from launching" in page.text
    api = await client.get("/build/gh/evil-org/repo/main", headers={"Accept": "application/json"})
    assert api.status_code == 400  # not an event-stream client: told so first, never a 500
    assert (await client.get("/build/gh/good-org/repo/main", headers=EVENTS)).status_code == 200  # not banned


async def test_banned_repository_is_refused_however_it_is_named(service):
    git = GitServer().start()
    try:
        url, _sha = git.create_repo("banned/project", {"requirements.txt": "six\n"})
        response = await service.client.get(f"/build/git/{quote(url, safe='')}/HEAD", headers=EVENTS)
    finally:
        git.stop()
    failed = last_event(response)
    assert failed["phase"] == "failed" and failed["status_code"] == 403
    assert url.removesuffix(".git") in failed["message"] or url in failed["message"]
    assert "building" not in response.text  # refused before anything is fetched or built


def request_from(peer: str, forwarded: str | None = None):
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return SimpleNamespace(headers=headers, remote_ip=peer, connection=SimpleNamespace(context=SimpleNamespace(address=(peer, 1))))


def test_client_address_is_the_nearest_hop_that_is_not_our_proxy():
    limiter = RateLimiter()
    # configurable-http-proxy on loopback appends the client's address
    assert limiter.client_address(request_from("127.0.0.1", "198.51.100.4")) == "198.51.100.4"
    # a client cannot pick its key: what it sends stays left of what our proxy appended
    assert limiter.client_address(request_from("127.0.0.1", "10.9.9.9, 198.51.100.4")) == "198.51.100.4"
    # a client reaching the service directly is its peer address, whatever it claims
    assert limiter.client_address(request_from("198.51.100.4", "203.0.113.1")) == "198.51.100.4"
    # behind a load balancer the operator trusts too
    behind = RateLimiter(trusted_proxies=["127.0.0.0/8", "10.0.0.0/8"])
    assert behind.client_address(request_from("127.0.0.1", "198.51.100.4, 10.1.2.3")) == "198.51.100.4"
    assert limiter.client_address(request_from("127.0.0.1")) == "127.0.0.1"
    with pytest.raises(TraitError, match="not an address or network"):
        RateLimiter(trusted_proxies=["lan"])


def test_rate_limit_is_a_sliding_window():
    limiter = RateLimiter(limit=2, period=10)
    limiter.hit("a", now=0)
    limiter.hit("a", now=4)
    with pytest.raises(RateLimited) as over:
        limiter.hit("a", now=5)
    assert over.value.retry_after == 5 and over.value.status_code == 429
    limiter.hit("a", now=10.5)  # the first launch left the window
    limiter.hit("b", now=5)
    RateLimiter(limit=0).hit("a")  # 0: no limit


def test_bad_ban_patterns_are_refused_at_configuration():
    with pytest.raises(TraitError, match="not a regular expression"):
        BanList(banned_specs=["gh/("])
    assert BanList(message="{what} is off {today}", banned_specs=["gh/"]).message  # other braces are not a 500
    with pytest.raises(Exception, match=r"gh/x/y is off \{today\}"):
        BanList(message="{what} is off {today}", banned_specs=["gh/"]).check_spec("gh", "x/y")
