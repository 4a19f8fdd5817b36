"""Launches through the real gateway in front of fake-but-real-wire members (tests/federation/fake_member.py):
placement, cache-awareness, failover before ready, failures passed on, drain."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.federation.fake_member import FakeMember


def phases(events):
    return [e["phase"] for e in events]


def moved_lines(events):
    return [e["message"] for e in events if e["message"].startswith("The launch moved from")]


async def test_launch_streams_the_members_events_with_the_gateways_request(federation, repo):
    a, b = FakeMember("a"), FakeMember("b")
    f = await federation([a, b])
    spec = repo()
    events = await f.launch(spec)
    assert phases(events) == ["fetching", "building", "built", "launching", "ready"]
    ready = events[-1]
    member = a if a.launches else b
    assert ready["url"].startswith(member.url), "the session URL is the member's: the session runs there"
    assert ready["binder_request"] == f"v2/{spec}"
    assert ready["binder_launch_host"] == f.url
    assert ready["federation_member"] == member.name
    # the member got the persistent spec: the ref the gateway resolved, not HEAD
    assert member.launches[0].endswith("/" + ready["image"]) and len(ready["image"]) == 40
    # and the client's address, so that its rate limit counts the client, not the gateway
    assert member.forwarded_for == ["127.0.0.1"] and "client_address" not in ready


async def test_second_launch_goes_where_the_environment_is_and_builds_nothing(federation, repo):
    members = [FakeMember(n) for n in "abc"]
    f = await federation(members)
    spec = repo()
    first = await f.launch(spec)
    builder = next(m for m in members if m.built)
    for _ in range(4):
        events = await f.launch(spec)
        assert events[-1]["phase"] == "ready"
        assert "building" not in phases(events)
        assert events[-1]["federation_member"] == builder.name
    assert sum(len(m.built) for m in members) == 1
    assert first[-1]["image"] == builder.built[0]


async def test_a_member_that_holds_the_ref_wins_over_the_hash(federation, repo, git):
    members = [FakeMember(n) for n in "abc"]
    f = await federation(members)
    spec = repo()
    sha = git.head(f"lab/repo-{git._counter}")
    # the hash would pick some member; put the environment on another one (built outside the gateway)
    first_choice = (await f.gateway.place(await f.gateway.resolve("git", spec.split("/", 1)[1]))).first.name
    holder = next(m for m in members if m.name != first_choice)
    holder.held.add(sha)
    events = await f.launch(spec)
    assert events[-1]["federation_member"] == holder.name
    assert "building" not in phases(events)


async def test_concurrent_launches_of_a_new_ref_build_it_once(federation, repo):
    members = [FakeMember(n, delay=0.05) for n in "abc"]
    f = await federation(members)
    spec = repo()
    results = await asyncio.gather(*(f.launch(spec) for _ in range(6)))
    assert all(r[-1]["phase"] == "ready" for r in results)
    assert len({r[-1]["federation_member"] for r in results}) == 1
    # every launch went to the one member, which (like a real member) shares one build; this fake builds per stream
    assert sum(1 for m in members if m.launches) == 1


@pytest.mark.parametrize("behaviour", ["die", "hang", "http-500", "fail-500-launching", "full"])
async def test_a_launch_moves_to_the_next_member_when_its_member_fails_before_ready(federation, repo, behaviour):
    a, b, c = FakeMember("a"), FakeMember("b"), FakeMember("c")
    f = await federation([a, b, c])
    spec = repo()
    placement = await f.gateway.place(await f.gateway.resolve("git", spec.split("/", 1)[1]))
    first = f.members[placement.first.name]
    first.behaviour = behaviour
    events = await f.launch(spec)
    assert events[-1]["phase"] == "ready", events
    assert events[-1]["federation_member"] != first.name
    lines = moved_lines(events)
    assert len(lines) == 1 and f"from {first.name} to {events[-1]['federation_member']}" in lines[0]
    assert [e["phase"] for e in events].count("ready") == 1 and "failed" not in phases(events)
    down = f.member(first.name).state == "down"
    assert down == (behaviour != "full"), "a full member is not down: it just has no room"


async def test_a_dead_member_gets_no_launches_until_it_is_back_and_stays_healthy(federation, repo):
    a, b = FakeMember("a"), FakeMember("b")
    f = await federation([a, b])
    specs = [repo() for _ in range(6)]
    await a.kill()
    await f.wait_for(lambda: f.member("a").state == "down")
    results = [await f.launch(spec) for spec in specs]
    assert all(r[-1]["federation_member"] == "b" for r in results)
    assert a.launches == []
    a.revive()
    # back only after HealthMonitor.rise (3) good checks in a row
    checks_when_revived = a.health_checks
    await f.wait_for(lambda: f.member("a").state == "up")
    assert a.health_checks - checks_when_revived >= 3
    more = [await f.launch(repo()) for _ in range(8)]
    assert any(r[-1]["federation_member"] == "a" for r in more), "a healthy member gets its share again"


async def test_a_failing_build_is_passed_on_not_retried(federation, repo):
    members = [FakeMember(n) for n in "abc"]
    f = await federation(members)
    for m in members:
        m.behaviour = "fail-build"
    events = await f.launch(repo())
    assert events[-1]["phase"] == "failed" and events[-1]["status_code"] == 500
    assert "no such package" in events[-1]["message"]
    assert sum(len(m.launches) for m in members) == 1
    assert moved_lines(events) == []
    assert all(f.member(m.name).state == "up" for m in members), "the repository failed, not the member"


async def test_a_4xx_failure_is_passed_on(federation, repo):
    members = [FakeMember(n) for n in "ab"]
    f = await federation(members)
    for m in members:
        m.behaviour = "bad-spec"
    events = await f.launch(repo())
    assert events[-1]["phase"] == "failed" and events[-1]["status_code"] == 400
    assert sum(len(m.launches) for m in members) == 1


async def test_when_every_member_fails_the_client_gets_one_failure(federation, repo):
    members = [FakeMember(n) for n in "ab"]
    f = await federation(members)
    for m in members:
        m.behaviour = "http-500"
    events = await f.launch(repo())
    assert events[-1]["phase"] == "failed" and events[-1]["status_code"] == 503
    assert "No member of this federation" in events[-1]["message"]
    assert sum(len(m.launches) for m in members) == 2


async def test_an_unresolvable_repository_fails_at_the_gateway(federation, git):
    members = [FakeMember(n) for n in "ab"]
    f = await federation(members)
    from urllib.parse import quote

    events = await f.launch(f"git/{quote(git.url + '/no/such-repo.git', safe='')}/HEAD")
    assert events[-1]["phase"] == "failed" and 400 <= events[-1]["status_code"] < 500
    assert all(m.launches == [] for m in members)


async def test_weights_share_new_repositories(federation, repo):
    a, b = FakeMember("a"), FakeMember("b")
    f = await federation([a, b], weights={"a": 3, "b": 1})
    # placement hashes each new repository (rendezvous, weighted): 16 launches at 3:1 gave a <= b in about 3 %
    # of runs (it failed in CI once); with 48 (below the gateway's 60 per client), a <= b is about 1 in 10^4
    for _ in range(48):
        events = await f.launch(repo())
        assert events[-1]["phase"] == "ready"
    assert len(a.launches) > len(b.launches) > 0


async def test_a_draining_member_takes_no_launches_while_its_sessions_stay_reachable(federation, repo, tmp_path):
    a, b = FakeMember("a"), FakeMember("b")
    f = await federation([a, b])
    # a session on a, launched through the gateway
    spec = repo()
    while True:
        ready = (await f.launch(spec))[-1]
        if ready["federation_member"] == "a":
            break
        spec = repo()
    # drain a with the config file and SIGHUP's reload
    config = tmp_path / "federation_config.py"
    config.write_text(f"c.FederationGateway.members = {[a.entry(0), b.entry(1)]!r}\n")
    f.gateway.config_file = str(config)
    f.gateway.reload_members()
    assert f.member("a").weight == 0 and f.member("a").state == "up"
    launched_before = len(a.launches)
    results = [await f.launch(repo()) for _ in range(5)] + [await f.launch(spec)]  # spec: held by a
    assert all(r[-1]["federation_member"] == "b" for r in results)
    assert len(a.launches) == launched_before
    # the session on a is still reachable through the gateway's /user/ redirect
    name = ready["url"].rstrip("/").rsplit("/", 1)[1]
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{f.url}user/{name}/lab?x=1")
    assert response.status_code == 307
    assert response.headers["Location"] == f"{ready['url']}lab?x=1"


async def test_a_members_refusal_of_this_client_is_passed_on_and_the_client_is_forwarded(federation, repo):
    members = [FakeMember(n) for n in "ab"]
    f = await federation(members)
    for m in members:
        m.behaviour = "rate-limited"
    events = await f.launch(repo())
    assert events[-1]["phase"] == "failed" and events[-1]["status_code"] == 429
    assert "Too many launches" in events[-1]["message"]
    assert sum(len(m.launches) for m in members) == 1, "a refusal of this client is not shopped around"
    assert [x for m in members for x in m.forwarded_for] == ["127.0.0.1"], "the member limits the client, not the gateway"


async def test_the_gateway_refuses_banned_specs_and_repositories_and_limits_clients(federation, repo, git):
    a = FakeMember("a")
    f = await federation(
        [a], BanList__banned_specs=[r"^git/.*banned-spec"], BanList__banned_repositories=[r".*/lab/banned-repo"],
        RateLimiter__limit=2, RateLimiter__trusted_proxies=[],  # the banned repository counted: resolved first
    )
    banned_spec = await f.launch(repo("lab/banned-spec"))
    banned_repo = await f.launch(repo("lab/banned-repo"))
    assert [banned_spec[-1]["status_code"], banned_repo[-1]["status_code"]] == [403, 403]
    assert "banned" in banned_repo[-1]["message"]
    assert a.launches == []
    third = await f.launch(repo())
    assert third[-1]["phase"] == "ready"
    limited = await f.launch(repo())
    assert limited[-1]["phase"] == "failed" and limited[-1]["status_code"] == 429
