"""GitHub repositories: ``/v2/gh/<org>/<repo>/<ref>`` (ref may contain ``/``), as in BinderHub."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable
from urllib.parse import quote, unquote, urlsplit

import httpx
from traitlets import Unicode, default

from . import upstream
from .base import ProviderError, RepoProvider, ResolvedRepo, safe_slug
from .gitrepo import fetch_commit

NAME_PART = re.compile(r"^[A-Za-z0-9_.-]+$")
BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|^-|^/|/$|@\{")


def check_ref_syntax(ref: str) -> str:
    """``ref`` if it could be a git ref name or sha (git check-ref-format rules), else 400."""
    if not ref or BAD_REF.search(ref):
        raise ProviderError(f"Invalid git ref {ref!r}: give a branch, a tag, HEAD or a commit sha", 400)
    return ref


class GitHubAPIProvider(RepoProvider):
    """What GitHub and gist providers share: the GitHub REST API, its token and rate-limit handling."""

    api_url = Unicode(
        "https://api.github.com",
        config=True,
        help="Base URL of the GitHub REST API (GitHub Enterprise: https://HOST/api/v3).",
    )
    access_token = Unicode(
        config=True,
        help="GitHub token sent with API requests (raises the rate limit). Default: $GITHUB_ACCESS_TOKEN.",
    )

    @default("access_token")
    def _access_token_default(self) -> str:
        return os.environ.get("GITHUB_ACCESS_TOKEN", "")

    def api_headers(self) -> dict[str, str]:
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if self.access_token:
            headers["Authorization"] = f"Bearer {self.access_token}"
        return headers

    async def api_get(self, client: httpx.AsyncClient, path: str) -> httpx.Response:
        hint = "" if self.access_token else " (the operator can raise the limit with GITHUB_ACCESS_TOKEN)"
        return await upstream.get(client, f"{self.api_url.rstrip('/')}{path}", "GitHub", token_hint=hint)

    async def fetch(self, resolved: ResolvedRepo, dest: Path, log: Callable[[str], None]) -> None:
        await fetch_commit(
            self.clone_url(resolved),
            resolved.ref,
            dest,
            log,
            allow_local=self.allow_local_repos,
            timeout=self.fetch_timeout,
            max_size=self.max_repo_size,
        )

    def clone_url(self, resolved: ResolvedRepo) -> str:
        return resolved.repo_url


class GitHubProvider(GitHubAPIProvider):
    """``org/repo/ref``: the ref is resolved to a commit with GitHub's commits API, content is fetched with git."""

    name = "gh"
    display_config = {
        "displayName": "GitHub",
        "id": "gh",
        "spec": {"validateRegex": r"[^/]+/[^/]+/.+"},
        "detect": {"regex": r"^(https?://github\.com/)?(?<repo>[^/\s]+/[^/\s]+?)(\.git)?(/tree/(?<ref>.+?))?/?$"},
        "repo": {
            "label": "GitHub repository name or URL",
            "placeholder": "example: binder-examples/requirements or https://github.com/binder-examples/requirements",
            "urlEncode": False,
        },
        "ref": {"enabled": True, "default": "HEAD"},
    }

    html_url = Unicode(
        "https://github.com",
        config=True,
        help="Web/clone base URL of GitHub (GitHub Enterprise: https://HOST); repositories are cloned from HTML_URL/org/repo.",
    )

    def repoprovider_config(self) -> dict:
        config = super().repoprovider_config()
        host = re.escape(urlsplit(self.html_url).netloc)
        config["detect"]["regex"] = config["detect"]["regex"].replace(r"github\.com", host)
        return config

    def parse_spec(self) -> tuple[str, str, str]:
        parts = self.spec.split("/", 2)
        if len(parts) != 3 or not parts[2]:
            hint = f' Did you mean "{self.spec.rstrip("/")}/HEAD"?' if len(parts) == 2 else ""
            raise ProviderError(f'Spec is not of the form "org/repo/ref", provided: "{self.spec}".{hint}', 400)
        org, repo, ref = parts[0], parts[1].removesuffix(".git"), unquote(parts[2])
        if not (NAME_PART.match(org) and NAME_PART.match(repo)):
            raise ProviderError(f"Invalid GitHub repository {org}/{repo!s}: use letters, digits, '-', '_' and '.'", 400)
        return org, repo, check_ref_syntax(ref)

    async def resolve(self) -> ResolvedRepo:
        org, repo, ref = self.parse_spec()
        async with upstream.make_client(self, self.api_headers()) as client:
            response = await self.api_get(client, f"/repos/{org}/{repo}/commits/{quote(ref, safe='/')}")
            if response.status_code in (404, 422):
                # GitHub answers 422 for a missing ref, 404 for a missing repo (or, sometimes, ref)
                repo_response = await self.api_get(client, f"/repos/{org}/{repo}")
                if repo_response.status_code == 200:
                    raise ProviderError(f"Could not find ref {ref!r} in GitHub repository {org}/{repo}", 404)
                raise ProviderError(f"GitHub repository {org}/{repo} not found (or it is private)", 404)
            if response.status_code != 200:
                raise ProviderError(f"GitHub answered {response.status_code} resolving {org}/{repo}/{ref}", 502)
            sha = upstream.json_body(response, "GitHub").get("sha")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{40}", sha):
            raise ProviderError(f"GitHub sent no commit sha for {org}/{repo}/{ref}", 502)
        base = self.html_url.rstrip("/")
        return ResolvedRepo(
            provider=self.name,
            spec=self.spec,
            repo_url=f"{base}/{org}/{repo}",
            ref=sha,
            ref_url=f"{base}/{org}/{repo}/tree/{sha}",
            persistent_spec=f"{org}/{repo}/{sha}",
            slug=safe_slug(f"{org}-{repo}"),
        )
