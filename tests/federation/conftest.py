"""Fixtures: fake members on loopback (tests/federation/fake_member.py), a real git server, and the real
gateway (in this process, on loopback) in front of them."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import httpx
import pytest
from traitlets.config import Config

from bia_binder.federation.app import FederationGateway
from bia_binder.up import free_port
from tests.federation.fake_member import FakeMember
from tests.gitserver import GitServer


@pytest.fixture(scope="module")
def git():
    with GitServer() as server:
        yield server


@pytest.fixture
def repo(git, request):
    """A new repository on the git server; returns its spec ``git/<quoted url>/HEAD``."""
    counter = getattr(git, "_counter", 0) + 1
    git._counter = counter

    def make(name: str | None = None) -> str:
        nonlocal counter
        counter += 1
        git._counter = counter
        repo_name = name or f"lab/repo-{counter}"
        clone_url, _sha = git.create_repo(repo_name, {"requirements.txt": "six\n"})
        return f"git/{quote(clone_url, safe='')}/HEAD"

    return make


class Federation:
    """The gateway and its members, started in this event loop."""

    def __init__(self, members: list[FakeMember], weights: dict[str, float] | None = None, **gateway_config):
        self.members = {m.name: m for m in members}
        self.weights = weights or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        config = Config()
        config.FederationGateway.port = self.port
        config.FederationGateway.allow_local_repos = True
        config.FederationGateway.keepalive_interval = 0.5
        config.HealthMonitor.interval = 0.1
        config.HealthMonitor.rise = 3
        config.LaunchProxy.stall_timeout = 1.0
        config.LaunchProxy.connect_timeout = 1.0
        for key, value in gateway_config.items():
            section, _, name = key.partition("__")
            setattr(getattr(config, section), name, value)
        self.config = config

    async def start(self) -> "Federation":
        for m in self.members.values():
            m.start()
        self.config.FederationGateway.members = [m.entry(self.weights.get(m.name, 1)) for m in self.members.values()]
        self.gateway = FederationGateway(config=self.config)
        self.gateway.setup()
        self.server = self.gateway.make_app().listen(self.port, "127.0.0.1")
        await self.gateway.monitor.check_all(self.gateway.pool, self.gateway.client)
        self.poller = asyncio.ensure_future(self.gateway.monitor.poll_forever(lambda: self.gateway.pool, self.gateway.client))
        return self

    async def stop(self) -> None:
        self.poller.cancel()
        self.server.stop()
        await self.gateway.client.aclose()
        for m in self.members.values():
            await m.kill()

    def member(self, name: str):
        return next(m for m in self.gateway.pool if m.name == name)

    async def launch(self, spec: str, timeout: float = 30) -> list[dict]:
        """One launch through the gateway, to its end: every event."""
        events = []
        async with httpx.AsyncClient(timeout=httpx.Timeout(timeout)) as client:
            async with client.stream("GET", f"{self.url}build/{spec}", headers={"Accept": "text/event-stream"}) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        events.append(json.loads(line[5:]))
                        if events[-1]["phase"] in ("ready", "failed"):
                            break
        return events

    async def wait_for(self, condition, timeout: float = 10) -> None:
        for _ in range(int(timeout / 0.05)):
            if condition():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("condition not met in time")


@pytest.fixture
async def federation():
    """``await federation(members, weights={...}, Section__trait=value)``: a started gateway."""
    started: list[Federation] = []

    async def start(members, weights=None, **config):
        f = await Federation(members, weights, **config).start()
        started.append(f)
        return f

    yield start
    for f in started:
        await f.stop()
