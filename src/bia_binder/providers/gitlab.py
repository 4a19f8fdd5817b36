"""GitLab projects: ``/v2/gl/<url-quoted namespace>/<ref>``, e.g. ``group%2Fsub%2Fproject/main`` (BinderHub's form)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable
from urllib.parse import quote, unquote, urlsplit

from traitlets import Unicode, default

from . import upstream
from .base import ProviderError, RepoProvider, ResolvedRepo, safe_slug
from .github import check_ref_syntax
from .gitrepo import fetch_commit

SEGMENT = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$")


class GitLabProvider(RepoProvider):
    name = "gl"
    display_config = {
        "displayName": "GitLab",
        "id": "gl",
        "spec": {"validateRegex": r"[^/]+/.+"},
        "detect": {"regex": r"^(https?://gitlab\.com/)?(?<repo>[^\s/]+(/[^\s/]+)+?)(\.git)?(/-/tree/(?<ref>.+?))?/?$"},
        "repo": {
            "label": "GitLab repository name or URL",
            "placeholder": "example: https://gitlab.com/mosaik/examples/mosaik-tutorials-on-binder or mosaik/examples/mosaik-tutorials-on-binder",
            "urlEncode": True,
        },
        "ref": {"enabled": True, "default": "HEAD"},
    }

    hostname = Unicode("gitlab.com", config=True, help="Host of the GitLab instance (BinderHub's option).")
    html_url = Unicode(config=True, help="Web/clone base URL; default https://HOSTNAME. Cloned from HTML_URL/namespace.git.")
    api_url = Unicode(config=True, help="Base URL of the GitLab REST API; default HTML_URL/api/v4.")
    access_token = Unicode(config=True, help="OAuth2 token for the GitLab API. Default: $GITLAB_ACCESS_TOKEN.")
    private_token = Unicode(config=True, help="Personal access token for the GitLab API. Default: $GITLAB_PRIVATE_TOKEN.")

    @default("html_url")
    def _html_url_default(self) -> str:
        return f"https://{self.hostname}"

    @default("api_url")
    def _api_url_default(self) -> str:
        return f"{self.html_url.rstrip('/')}/api/v4"

    @default("access_token")
    def _access_token_default(self) -> str:
        return os.environ.get("GITLAB_ACCESS_TOKEN", "")

    @default("private_token")
    def _private_token_default(self) -> str:
        return os.environ.get("GITLAB_PRIVATE_TOKEN", "")

    def repoprovider_config(self) -> dict:
        config = super().repoprovider_config()
        host = re.escape(urlsplit(self.html_url).netloc)
        config["detect"]["regex"] = config["detect"]["regex"].replace(r"gitlab\.com", host)
        return config

    def api_headers(self) -> dict[str, str]:
        headers = {}
        if self.access_token:
            headers["Authorization"] = f"Bearer {self.access_token}"
        if self.private_token:
            headers["PRIVATE-TOKEN"] = self.private_token
        return headers

    def parse_spec(self) -> tuple[str, str]:
        quoted_namespace, _, ref = self.spec.partition("/")
        namespace = unquote(quoted_namespace)
        segments = namespace.split("/")
        if not ref or len(segments) < 2 or not all(SEGMENT.match(s) for s in segments):
            raise ProviderError(
                f'Spec is not of the form "url-quoted-namespace/ref" (e.g. "group%2Fproject/main"), provided: "{self.spec}"',
                400,
            )
        return namespace.removesuffix(".git"), check_ref_syntax(unquote(ref))

    async def resolve(self) -> ResolvedRepo:
        namespace, ref = self.parse_spec()
        project = quote(namespace, safe="")
        url = f"{self.api_url.rstrip('/')}/projects/{project}/repository/commits/{quote(ref, safe='')}"
        async with upstream.make_client(self, self.api_headers()) as client:
            response = await upstream.get(client, url, "GitLab")
        if response.status_code in (401, 403, 404):
            # GitLab says which is missing: {"message": "404 Project Not Found"} or "404 Commit Not Found"
            if "commit not found" in response.text.lower():
                raise ProviderError(f"Could not find ref {ref!r} in GitLab project {namespace}", 404)
            raise ProviderError(f"GitLab project {namespace} not found (or it is private)", 404)
        if response.status_code != 200:
            raise ProviderError(f"GitLab answered {response.status_code} resolving {namespace}/{ref}", 502)
        sha = upstream.json_body(response, "GitLab").get("id")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{40}", sha):
            raise ProviderError(f"GitLab sent no commit sha for {namespace}/{ref}", 502)
        base = self.html_url.rstrip("/")
        return ResolvedRepo(
            provider=self.name,
            spec=self.spec,
            repo_url=f"{base}/{namespace}",
            ref=sha,
            ref_url=f"{base}/{namespace}/-/tree/{sha}",
            persistent_spec=f"{project}/{sha}",
            slug=safe_slug(namespace.replace("/", "-")),
        )

    async def fetch(self, resolved: ResolvedRepo, dest: Path, log: Callable[[str], None]) -> None:
        await fetch_commit(
            f"{resolved.repo_url}.git",
            resolved.ref,
            dest,
            log,
            allow_local=self.allow_local_repos,
            timeout=self.fetch_timeout,
            max_size=self.max_repo_size,
        )
