"""Fixtures: a real git server, fake upstream services on 127.0.0.1, and provider helpers."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from traitlets.config import Config, Configurable

from bia_binder.providers import RepoProvider, get_provider
from tests.gitserver import GitServer

from . import fakes


def unique(prefix: str = "r") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def configured(**sections: dict) -> Configurable:
    """A config parent, as the service passes one: ``configured(GitHubProvider={"api_url": ...})``.

    Local repositories are allowed (every fake lives on 127.0.0.1) unless a section says otherwise.
    """
    config = Config({"RepoProvider": {"allow_local_repos": True}})
    for section, values in sections.items():
        config[section] = Config({**config.get(section, {}), **values})
    return Configurable(config=config)


def provider(name: str, spec: str, **sections: dict) -> RepoProvider:
    return get_provider(name, spec, parent=configured(**sections))


class Log(list):
    """Collects the fetch log lines."""

    def __call__(self, line: str) -> None:
        assert line.endswith("\n")
        self.append(line)


def files_in(path: Path) -> dict[str, bytes]:
    """Every regular file under ``path`` (except git's own), relative path → content."""
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(path).parts
    }


@pytest.fixture(scope="session")
def git_server() -> Iterator[GitServer]:
    with GitServer() as server:
        yield server


async def _serve(service: fakes.Service) -> AsyncIterator[fakes.Service]:
    service.start()
    try:
        yield service
    finally:
        await service.stop()


@pytest_asyncio.fixture(scope="session")
async def github_api(git_server: GitServer) -> AsyncIterator[fakes.Service]:
    async for service in _serve(fakes.github_service(fakes.FakeGitHub(git_server))):
        yield service


@pytest_asyncio.fixture(scope="session")
async def gitlab_api(git_server: GitServer) -> AsyncIterator[fakes.Service]:
    async for service in _serve(fakes.gitlab_service(git_server)):
        yield service


@pytest_asyncio.fixture(scope="session")
async def doi_org() -> AsyncIterator[fakes.Service]:
    async for service in _serve(fakes.doi_service({})):
        yield service


@pytest_asyncio.fixture(scope="session")
async def zenodo() -> AsyncIterator[fakes.Service]:
    async for service in _serve(fakes.zenodo_service(fakes.FakeZenodo())):
        yield service


@pytest_asyncio.fixture(scope="session")
async def figshare() -> AsyncIterator[fakes.Service]:
    async for service in _serve(fakes.figshare_service(fakes.FakeFigshare())):
        yield service


@pytest_asyncio.fixture(scope="session")
async def dataverse() -> AsyncIterator[fakes.Service]:
    async for service in _serve(fakes.dataverse_service(fakes.FakeDataverse())):
        yield service


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest_asyncio.fixture
async def silent_server() -> AsyncIterator[str]:
    """A server that accepts connections and never answers (for timeouts)."""
    connections: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()
