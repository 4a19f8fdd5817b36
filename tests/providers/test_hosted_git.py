"""gh, gl and gist: refs resolved through (fake) REST APIs, content fetched from a real git server."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest

from bia_binder.providers import ProviderError

from .conftest import Log, files_in, provider, unique


@pytest.fixture
def gh(github_api, git_server):
    """GitHubProvider config pointing at the fakes (base URLs are configurable)."""
    return {"GitHubProvider": {"api_url": github_api.url, "html_url": git_server.url}}


# --- gh ------------------------------------------------------------------------------------------------
async def test_gh_moving_ref_resolves_to_sha_and_fetches_it(gh, git_server, tmp_path: Path):
    org, repo = unique("org"), unique("repo")
    _, first = git_server.create_repo(f"{org}/{repo}", {"requirements.txt": "numpy\n"})
    resolved = await provider("gh", f"{org}/{repo}/HEAD", **gh).resolve()
    assert resolved.ref == first
    assert resolved.persistent_spec == f"{org}/{repo}/{first}"
    assert resolved.repo_url == f"{git_server.url}/{org}/{repo}"
    assert resolved.ref_url == f"{git_server.url}/{org}/{repo}/tree/{first}"
    assert resolved.slug == f"{org}-{repo}"

    second = git_server.commit(f"{org}/{repo}", {"requirements.txt": "numpy\nscipy\n", "extra.txt": "x"})
    moved = await provider("gh", f"{org}/{repo}.git/main", **gh).resolve()
    assert moved.ref == second
    pinned = provider("gh", resolved.persistent_spec, **gh)
    again = await pinned.resolve()
    assert again.ref == first
    await pinned.fetch(again, tmp_path / "repo", Log())
    assert files_in(tmp_path / "repo") == {"requirements.txt": b"numpy\n"}


async def test_gh_tag_and_branch_with_slash(gh, git_server):
    name = f"{unique('org')}/{unique('repo')}"
    _, first = git_server.create_repo(name, {"a": "1"})
    git_server.tag(name, "v1.0", message="release")
    feature = git_server.commit(name, {"a": "2"}, branch="feature/new")
    assert (await provider("gh", f"{name}/v1.0", **gh).resolve()).ref == first
    assert (await provider("gh", f"{name}/feature/new", **gh).resolve()).ref == feature


async def test_gh_missing_repo_and_ref_are_404_with_distinct_messages(gh, git_server):
    name = f"{unique('org')}/{unique('repo')}"
    git_server.create_repo(name, {"a": "1"})
    with pytest.raises(ProviderError) as missing_ref:
        await provider("gh", f"{name}/nosuchref", **gh).resolve()
    assert missing_ref.value.status_code == 404
    assert "nosuchref" in missing_ref.value.message
    with pytest.raises(ProviderError) as missing_repo:
        await provider("gh", f"{unique('org')}/nothere/main", **gh).resolve()
    assert missing_repo.value.status_code == 404
    assert "nothere" in missing_repo.value.message and "not found" in missing_repo.value.message


@pytest.mark.parametrize("spec, hint", [("org/repo", "org/repo/HEAD"), ("org", None), ("org/re po/main", None),
                                        ("org/repo/..", None)])
async def test_gh_malformed_spec_is_400(gh, spec: str, hint: str | None):
    with pytest.raises(ProviderError) as error:
        await provider("gh", spec, **gh).resolve()
    assert error.value.status_code == 400
    if hint:
        assert hint in error.value.message


async def test_gh_rate_limit_is_429_with_wait(gh, github_api):
    org = unique("limited")
    github_api.fake.rate_limited_orgs[org] = "primary"
    with pytest.raises(ProviderError) as error:
        await provider("gh", f"{org}/repo/main", **gh).resolve()
    assert error.value.status_code == 429
    assert re.search(r"try again in (30|31) minutes", error.value.message), error.value.message

    org = unique("limited")
    github_api.fake.rate_limited_orgs[org] = "secondary"
    with pytest.raises(ProviderError) as secondary:
        await provider("gh", f"{org}/repo/main", **gh).resolve()
    assert secondary.value.status_code == 429
    assert "90 seconds" in secondary.value.message


async def test_gh_token_is_sent(gh, github_api, git_server):
    name = f"{unique('org')}/{unique('repo')}"
    git_server.create_repo(name, {"a": "1"})
    gh["GitHubProvider"]["access_token"] = "s3cret"
    await provider("gh", f"{name}/main", **gh).resolve()
    headers = [h for _m, path, h in github_api.requests if path.startswith(f"/repos/{name}/")]
    assert headers and headers[-1]["Authorization"] == "Bearer s3cret"


async def test_gh_unreachable_api_is_502(closed_port: int, git_server):
    config = {"GitHubProvider": {"api_url": f"http://127.0.0.1:{closed_port}", "html_url": git_server.url}}
    with pytest.raises(ProviderError) as error:
        await provider("gh", "org/repo/main", **config).resolve()
    assert error.value.status_code == 502


async def test_gh_api_timeout_is_504(silent_server: str):
    config = {"GitHubProvider": {"api_url": silent_server}, "RepoProvider": {"allow_local_repos": True, "timeout": 1}}
    with pytest.raises(ProviderError) as error:
        await provider("gh", "org/repo/main", **config).resolve()
    assert error.value.status_code == 504


async def test_gh_local_api_refused_unless_allowed(gh):
    gh["RepoProvider"] = {"allow_local_repos": False}
    with pytest.raises(ProviderError) as error:
        await provider("gh", "org/repo/main", **gh).resolve()
    assert error.value.status_code == 403
    assert "allow_local_repos" in error.value.message


# --- gl ------------------------------------------------------------------------------------------------
@pytest.fixture
def gl(gitlab_api, git_server):
    return {"GitLabProvider": {"html_url": git_server.url, "api_url": f"{gitlab_api.url}/api/v4"}}


async def test_gl_resolves_nested_namespace_and_fetches(gl, git_server, tmp_path: Path):
    namespace = f"{unique('group')}/sub/{unique('project')}"
    _, first = git_server.create_repo(namespace, {"environment.yml": "dependencies: [numpy]\n"})
    spec = f"{quote(namespace, safe='')}/main"
    p = provider("gl", spec, **gl)
    resolved = await p.resolve()
    assert resolved.ref == first
    assert resolved.persistent_spec == f"{quote(namespace, safe='')}/{first}"
    assert resolved.ref_url.endswith(f"/{namespace}/-/tree/{first}")
    second = git_server.commit(namespace, {"environment.yml": "dependencies: [scipy]\n"})
    assert (await provider("gl", spec, **gl).resolve()).ref == second
    await p.fetch(resolved, tmp_path / "r", Log())
    assert files_in(tmp_path / "r") == {"environment.yml": b"dependencies: [numpy]\n"}


async def test_gl_missing_project_and_commit(gl, git_server):
    namespace = f"{unique('group')}/{unique('project')}"
    git_server.create_repo(namespace, {"a": "1"})
    with pytest.raises(ProviderError) as missing_ref:
        await provider("gl", f"{quote(namespace, safe='')}/nope", **gl).resolve()
    assert missing_ref.value.status_code == 404 and "ref 'nope'" in missing_ref.value.message
    with pytest.raises(ProviderError) as missing_project:
        await provider("gl", f"{quote('group/absent', safe='')}/main", **gl).resolve()
    assert missing_project.value.status_code == 404 and "project group/absent" in missing_project.value.message


async def test_gl_unquoted_namespace_is_400(gl):
    with pytest.raises(ProviderError) as error:
        await provider("gl", "group/project/main", **gl).resolve()
    assert error.value.status_code == 400
    assert "group%2Fproject" in error.value.message


# --- gist ----------------------------------------------------------------------------------------------
@pytest.fixture
def gist(github_api, git_server):
    return {"GistProvider": {"api_url": github_api.url, "html_url": git_server.url}}


async def test_gist_head_is_latest_revision_and_old_revisions_stay(gist, git_server, tmp_path: Path):
    user, gist_id = unique("user"), unique("abc")
    _, first = git_server.create_repo(f"{user}/{gist_id}", {"requirements.txt": "dask\n"})
    second = git_server.commit(f"{user}/{gist_id}", {"requirements.txt": "dask\ndistributed\n"})
    latest = await provider("gist", f"{user}/{gist_id}", **gist).resolve()
    assert latest.ref == second
    assert latest.persistent_spec == f"{user}/{gist_id}/{second}"
    assert (await provider("gist", f"{user}/{gist_id}/HEAD", **gist).resolve()).ref == second
    p = provider("gist", f"{user}/{gist_id}/{first}", **gist)
    old = await p.resolve()
    assert old.ref == first
    await p.fetch(old, tmp_path / "g", Log())
    assert files_in(tmp_path / "g") == {"requirements.txt": b"dask\n"}


async def test_gist_unknown_revision_missing_gist_and_secret_gist(gist, github_api, git_server):
    user, gist_id = unique("user"), unique("abc")
    git_server.create_repo(f"{user}/{gist_id}", {"a": "1"})
    with pytest.raises(ProviderError) as unknown:
        await provider("gist", f"{user}/{gist_id}/{'f' * 40}", **gist).resolve()
    assert unknown.value.status_code == 404
    with pytest.raises(ProviderError) as missing:
        await provider("gist", f"{user}/{unique('abc')}", **gist).resolve()
    assert missing.value.status_code == 404
    with pytest.raises(ProviderError) as bad_ref:
        await provider("gist", f"{user}/{gist_id}/some-branch", **gist).resolve()
    assert bad_ref.value.status_code == 400

    github_api.fake.secret_gists.add(gist_id)
    with pytest.raises(ProviderError) as secret:
        await provider("gist", f"{user}/{gist_id}", **gist).resolve()
    assert secret.value.status_code == 403 and "allow_secret_gist" in secret.value.message
    gist["GistProvider"]["allow_secret_gist"] = True
    assert (await provider("gist", f"{user}/{gist_id}", **gist).resolve()).ref == git_server.head(f"{user}/{gist_id}")
