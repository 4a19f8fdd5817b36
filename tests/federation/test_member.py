"""The member's side of a federation, on the real binder service (no hub behind it): /health's load and
the authenticated /api/federation/holds endpoint."""

from __future__ import annotations

import json

import httpx
import pytest
from traitlets.config import Config

from bia_binder.builder.cache import METADATA
from bia_binder.service.app import BinderService
from bia_binder.up import free_port

TOKEN = "s3cret-federation-token"


@pytest.fixture
async def member(tmp_path):
    config = Config()
    config.FederationMember.token = TOKEN
    config.Admission.max_sessions = 4
    config.Launcher.request_timeout = 1
    service = BinderService(config=config)
    service.data_dir = str(tmp_path)
    service.port = free_port()
    service.setup()
    service.launcher.hub_api_url = f"http://127.0.0.1:{free_port()}/hub/api"  # nothing listens: no hub
    server = service.make_app().listen(service.port, "127.0.0.1")
    service.url = f"http://127.0.0.1:{service.port}/"
    yield service
    server.stop()


async def test_holds_needs_the_federation_token(member):
    async with httpx.AsyncClient() as client:
        for headers in ({}, {"Authorization": "token wrong"}, {"Authorization": f"token {TOKEN}x"}, {"Authorization": TOKEN}):
            response = await client.get(f"{member.url}api/federation/holds", params={"provider": "gh", "ref": "a" * 40}, headers=headers)
            assert response.status_code == 403
            assert "federation gateway" in response.json()["message"]


async def test_holds_says_what_the_cache_holds(member):
    ref = "1" * 40
    headers = {"Authorization": f"token {TOKEN}"}
    url = f"{member.url}api/federation/holds"
    async with httpx.AsyncClient() as client:
        before = (await client.get(url, params={"provider": "git", "ref": ref}, headers=headers)).json()
        assert before == {"held": False, "building": False}
        # an environment published into the member's cache, as the builder does (metadata last)
        entry = member.builder.cache.entry_dir(member.builder.cache_key("git", ref))
        entry.mkdir(parents=True)
        (entry / METADATA).write_text(json.dumps({"key": entry.name}))
        after = (await client.get(url, params={"provider": "git", "ref": ref}, headers=headers)).json()
        assert after["held"] is True and after["kind"] == "environment"
        other = (await client.get(url, params={"provider": "gh", "ref": ref}, headers=headers)).json()
        assert other["held"] is False, "the key includes the provider"
        bad = await client.get(url, params={"provider": "git"}, headers=headers)
        assert bad.status_code == 400


async def test_holds_reports_a_build_under_way(member):
    import asyncio

    ref = "2" * 40
    key = member.builder.cache_key("git", ref)
    release = asyncio.Event()

    async def build(_publish):
        await release.wait()

    member.pipeline.builds.join_or_start(key, build)
    async with httpx.AsyncClient() as client:
        answer = (await client.get(f"{member.url}api/federation/holds", params={"provider": "git", "ref": ref},
                                   headers={"Authorization": f"token {TOKEN}"})).json()  # fmt: skip
    release.set()
    assert answer == {"held": False, "building": True}


async def test_health_reports_load_even_without_a_hub(member):
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{member.url}health")
    assert response.status_code == 503  # no hub behind this service
    load = response.json()["load"]
    assert load == {"sessions": 0, "max_sessions": 4, "free_slots": 4, "builds": 0}
