"""The server-side request forgery guard shared by every provider."""

from __future__ import annotations

import pytest

from bia_binder.providers import PROVIDERS, ProviderError, netcheck, upstream

from .conftest import provider


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/repo",
        "https://localhost/repo",
        "http://10.1.2.3/repo",
        "http://192.168.0.10/repo",
        "http://172.16.5.5/repo",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata service (link-local)
        "http://[::1]/repo",
        "http://[::ffff:127.0.0.1]/repo",
        "http://[fe80::1]/repo",
        "http://0.0.0.0/repo",
        "http://100.64.0.1/repo",  # carrier-grade NAT
        "git@127.0.0.1:org/repo.git",
        "file:///etc/passwd",
        "/srv/repos/secret.git",
    ],
)
async def test_non_public_addresses_are_refused(url: str):
    with pytest.raises(ProviderError) as error:
        await netcheck.check_url_allowed(url, allow_local=False)
    assert error.value.status_code == 403
    assert "allow_local_repos" in error.value.message


@pytest.mark.parametrize("url", ["https://8.8.8.8/repo", "http://[2606:4700:4700::1111]/x", "git@1.1.1.1:org/repo"])
async def test_public_addresses_pass(url: str):
    await netcheck.check_url_allowed(url, allow_local=False)


async def test_allow_local_lets_everything_through():
    await netcheck.check_url_allowed("http://127.0.0.1/", allow_local=True)
    await netcheck.check_url_allowed("file:///tmp/x", allow_local=True)


async def test_unresolvable_host_is_502():
    with pytest.raises(ProviderError) as error:
        await netcheck.check_url_allowed("https://no-such-host.invalid/repo", allow_local=False)
    assert error.value.status_code == 502


@pytest.fixture
def localhost_looks_public(monkeypatch):
    """Pretend "localhost" is a public host, so a fake on it passes while 127.0.0.1 does not."""
    real = netcheck.host_addresses

    async def addresses(host: str, port: int | None) -> list[str]:
        return ["93.184.216.34"] if host == "localhost" else await real(host, port)

    monkeypatch.setattr(netcheck, "host_addresses", addresses)


async def test_every_redirect_hop_is_checked(localhost_looks_public, doi_org, zenodo):
    """A public URL that redirects to a private address is refused at the hop (httpx redirects)."""
    doi_org.fake["10.5281/zenodo.77"] = f"{zenodo.url}/doi/10.5281/zenodo.77"
    public_resolver = doi_org.url.replace("127.0.0.1", "localhost")
    p = provider("zenodo", "77", RepoProvider={"allow_local_repos": False})
    async with upstream.make_client(p) as client:
        with pytest.raises(ProviderError) as error:
            await upstream.get(client, f"{public_resolver}/10.5281/zenodo.77", "doi.org")
    assert error.value.status_code == 403
    assert doi_org.paths()[-1] == "/10.5281/zenodo.77"  # the public hop was made, the private one not


async def test_doi_resolution_hops_are_checked(localhost_looks_public, doi_org, zenodo):
    doi_org.fake["10.5281/zenodo.78"] = f"{zenodo.url}/doi/10.5281/zenodo.78"
    config = {
        "RepoProvider": {"allow_local_repos": False},
        "ZenodoProvider": {"doi_resolver": doi_org.url.replace("127.0.0.1", "localhost"), "zenodo_url": zenodo.url},
    }
    before = len(zenodo.requests)
    with pytest.raises(ProviderError) as error:
        await provider("zenodo", "10.5281/zenodo.78", **config).resolve()
    assert error.value.status_code == 403
    assert len(zenodo.requests) == before


def test_repo_provider_options_apply_to_every_provider():
    for name in PROVIDERS:
        p = provider(name, "x", RepoProvider={"allow_local_repos": False, "max_repo_size": 5})
        assert (p.allow_local_repos, p.max_repo_size) == (False, 5), name
