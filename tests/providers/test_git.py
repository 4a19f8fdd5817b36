"""The plain ``git`` provider against a real git server (git http-backend)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import pytest

from bia_binder.providers import ProviderError

from tests.gitserver import GitServer

from .conftest import Log, files_in, provider, unique


def git_spec(url: str, ref: str) -> str:
    return f"{quote(url, safe='')}/{ref}"


async def test_moving_branch_resolves_to_current_commit_and_sha_stays(git_server, tmp_path: Path):
    name = unique()
    url, first = git_server.create_repo(name, {"requirements.txt": "numpy\n"})
    resolved = await provider("git", git_spec(url, "main")).resolve()
    assert resolved.ref == first
    assert resolved.persistent_spec == git_spec(url, first)

    second = git_server.commit(name, {"requirements.txt": "numpy\nscipy\n"})
    assert (await provider("git", git_spec(url, "main")).resolve()).ref == second
    assert (await provider("git", git_spec(url, "HEAD")).resolve()).ref == second
    # the persistent spec from before the push still names the first commit, and fetches its content
    pinned = provider("git", resolved.persistent_spec)
    again = await pinned.resolve()
    assert again.ref == first
    log = Log()
    await pinned.fetch(again, tmp_path / "repo", log)
    assert files_in(tmp_path / "repo") == {"requirements.txt": b"numpy\n"}
    assert any(first in line for line in log)


async def test_tags_resolve_to_the_tagged_commit(git_server):
    name = unique()
    url, first = git_server.create_repo(name, {"a.txt": "1"})
    git_server.tag(name, "v1.0", message="annotated release")
    git_server.tag(name, "light")
    second = git_server.commit(name, {"a.txt": "2"})
    git_server.tag(name, "v2.0")
    assert (await provider("git", git_spec(url, "v1.0")).resolve()).ref == first  # peeled, not the tag object
    assert (await provider("git", git_spec(url, "light")).resolve()).ref == first
    assert (await provider("git", git_spec(url, "v2.0")).resolve()).ref == second
    assert (await provider("git", git_spec(url, "refs/tags/v1.0")).resolve()).ref == first


async def test_branch_with_slash_and_url_without_dot_git(git_server, tmp_path: Path):
    name = unique()
    git_server.create_repo(name, {"a.txt": "main"})
    feature = git_server.commit(name, {"a.txt": "feature"}, branch="feature/x")
    url = f"{git_server.url}/{name}"
    resolved = await provider("git", git_spec(url, quote("feature/x", safe=""))).resolve()
    assert resolved.ref == feature
    await provider("git", resolved.persistent_spec).fetch(resolved, tmp_path / "r", Log())
    assert files_in(tmp_path / "r") == {"a.txt": b"feature"}


async def test_missing_repo_and_missing_ref_are_404(git_server):
    url, _ = git_server.create_repo(unique(), {"a.txt": "x"})
    with pytest.raises(ProviderError) as missing_ref:
        await provider("git", git_spec(url, "no-such-branch")).resolve()
    assert missing_ref.value.status_code == 404
    assert "no-such-branch" in missing_ref.value.message

    with pytest.raises(ProviderError) as missing_repo:
        await provider("git", git_spec(f"{git_server.url}/{unique()}.git", "main")).resolve()
    assert missing_repo.value.status_code == 404


async def test_missing_commit_is_404_on_fetch(git_server, tmp_path: Path):
    url, _ = git_server.create_repo(unique(), {"a.txt": "x"})
    p = provider("git", git_spec(url, "0" * 40))
    resolved = await p.resolve()
    with pytest.raises(ProviderError) as error:
        await p.fetch(resolved, tmp_path / "r", Log())
    assert error.value.status_code == 404


@pytest.mark.parametrize(
    "spec",
    [
        "just-one-part",
        "https%3A%2F%2Fexample.org%2Frepo/",  # empty ref
        "https:/example.org/repo/main",  # not URL-quoted
        "https%3A%2F%2Fexample.org%2Frepo/bad..ref",
        "https%3A%2F%2Fexample.org%2Frepo/-x",
    ],
)
async def test_malformed_specs_are_400(spec: str):
    with pytest.raises(ProviderError) as error:
        await provider("git", spec).resolve()
    assert error.value.status_code == 400
    assert "\n" not in error.value.message


@pytest.mark.parametrize(
    "url",
    [
        "ext::sh -c touch% /tmp/pwned",
        "fd::17",
        "--upload-pack=touch /tmp/pwned",
        "-oProxyCommand=touch /tmp/pwned",
    ],
)
async def test_dangerous_transports_and_option_injection_are_refused(url: str, tmp_path: Path):
    with pytest.raises(ProviderError) as error:
        await provider("git", git_spec(url, "main")).resolve()
    assert error.value.status_code in (400, 403)
    assert not Path("/tmp/pwned").exists()


async def test_local_addresses_refused_unless_allowed(git_server):
    url, sha = git_server.create_repo(unique(), {"a.txt": "x"})
    strict = {"RepoProvider": {"allow_local_repos": False}}
    with pytest.raises(ProviderError) as error:
        await provider("git", git_spec(url, "main"), **strict).resolve()
    assert error.value.status_code == 403
    assert "allow_local_repos" in error.value.message
    # a pinned sha needs no ls-remote, but fetching it must be refused too
    p = provider("git", git_spec(url, sha), **strict)
    resolved = await p.resolve()
    with pytest.raises(ProviderError) as fetch_error:
        await p.fetch(resolved, Path("/nonexistent-never-created"), Log())
    assert fetch_error.value.status_code == 403

    with pytest.raises(ProviderError) as file_error:
        await provider("git", git_spec(f"file://{git_server.repo_path('x')}", "main"), **strict).resolve()
    assert file_error.value.status_code == 403
    assert "allow_local_repos" in file_error.value.message


async def test_file_urls_work_when_local_repos_are_allowed(git_server, tmp_path: Path):
    name = unique()
    _, sha = git_server.create_repo(name, {"a.txt": "local", "postBuild": "#!/bin/sh\n"}, executable=["postBuild"])
    p = provider("git", git_spec(f"file://{git_server.repo_path(name)}", "main"))
    resolved = await p.resolve()
    assert resolved.ref == sha
    await p.fetch(resolved, tmp_path / "r", Log())
    assert files_in(tmp_path / "r") == {"a.txt": b"local", "postBuild": b"#!/bin/sh\n"}
    assert os.access(tmp_path / "r" / "postBuild", os.X_OK) and not os.access(tmp_path / "r" / "a.txt", os.X_OK)


async def test_unreachable_host_is_502(closed_port: int):
    with pytest.raises(ProviderError) as error:
        await provider("git", git_spec(f"http://127.0.0.1:{closed_port}/repo.git", "main")).resolve()
    assert error.value.status_code == 502
    assert f"127.0.0.1:{closed_port}" in error.value.message


async def test_slow_server_is_504(silent_server: str):
    p = provider("git", git_spec(f"{silent_server}/repo.git", "main"), RepoProvider={"allow_local_repos": True, "timeout": 2})
    with pytest.raises(ProviderError) as error:
        await p.resolve()
    assert error.value.status_code == 504


async def test_oversized_repository_is_413(git_server, tmp_path: Path):
    url, _ = git_server.create_repo(unique(), {"random.bin": os.urandom(3 * 1024 * 1024)})  # incompressible
    p = provider("git", git_spec(url, "main"), RepoProvider={"allow_local_repos": True, "max_repo_size": 1024 * 1024})
    resolved = await p.resolve()
    with pytest.raises(ProviderError) as error:
        await p.fetch(resolved, tmp_path / "r", Log())
    assert error.value.status_code == 413
    assert "max_repo_size" in error.value.message


async def test_server_refusing_sha_fetch_falls_back_to_full_fetch(tmp_path: Path):
    with GitServer(protocol_v2=False) as old_server:
        name = unique()
        url, first = old_server.create_repo(name, {"a.txt": "first"}, allow_sha_fetch=False)
        old_server.commit(name, {"a.txt": "second"})
        p = provider("git", git_spec(url, first))
        log = Log()
        await p.fetch(await p.resolve(), tmp_path / "r", log)
    assert files_in(tmp_path / "r") == {"a.txt": b"first"}
    assert any("whole repository" in line for line in log)


async def test_credentials_in_urls_are_not_repeated_in_errors(closed_port: int):
    url = f"http://user:hunter2@127.0.0.1:{closed_port}/repo.git"
    with pytest.raises(ProviderError) as error:
        await provider("git", git_spec(url, "main")).resolve()
    assert "hunter2" not in error.value.message
    assert "user:***@" in error.value.message
