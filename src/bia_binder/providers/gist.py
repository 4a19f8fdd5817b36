"""GitHub gists: ``/v2/gist/<user>/<gist-id>[/<ref>]``; ref is HEAD (default) or a sha from the gist's history."""

from __future__ import annotations

import re

from traitlets import Bool, Unicode

from . import upstream
from .base import ProviderError, ResolvedRepo, safe_slug
from .github import GitHubAPIProvider
from .gitrepo import is_sha1

GIST_ID = re.compile(r"^[0-9A-Za-z]+$")
USER = re.compile(r"^[A-Za-z0-9_.-]+$")
LATEST = {"", "HEAD", "main", "master"}


class GistProvider(GitHubAPIProvider):
    name = "gist"
    display_config = {
        "displayName": "GitHub Gist",
        "id": "gist",
        "spec": {"validateRegex": r"[^/]+/[^/]+(/[^/]+)?"},
        "detect": {"regex": r"^(https?://gist\.github\.com/)?(?<repo>[^/\s]+/[0-9A-Za-z]+)(/(?<ref>[0-9a-f]{40}))?/?$"},
        "repo": {"label": "Gist ID (username/gistId) or URL", "placeholder": "", "urlEncode": False},
        "ref": {"enabled": True, "default": "HEAD"},
    }

    html_url = Unicode(
        "https://gist.github.com", config=True, help="Web/clone base URL of gists: cloned from HTML_URL/user/id.git."
    )
    allow_secret_gist = Bool(False, config=True, help="Allow launching secret (unlisted) gists.")

    def parse_spec(self) -> tuple[str, str, str]:
        parts = self.spec.strip("/").split("/")
        if len(parts) not in (2, 3) or not USER.match(parts[0]) or not GIST_ID.match(parts[1]):
            raise ProviderError(f'Spec is not of the form "user/gist-id[/ref]", provided: "{self.spec}"', 400)
        ref = parts[2] if len(parts) == 3 else ""
        if ref not in LATEST and not is_sha1(ref):
            raise ProviderError(f"Invalid gist ref {ref!r}: use HEAD or a full 40-character revision sha", 400)
        return parts[0], parts[1], ref

    async def resolve(self) -> ResolvedRepo:
        user, gist_id, ref = self.parse_spec()
        async with upstream.make_client(self, self.api_headers()) as client:
            response = await self.api_get(client, f"/gists/{gist_id}")
            if response.status_code == 404:
                raise ProviderError(f"Gist {user}/{gist_id} not found", 404)
            if response.status_code != 200:
                raise ProviderError(f"GitHub answered {response.status_code} for gist {gist_id}", 502)
            info = upstream.json_body(response, "GitHub")
        if not info.get("public", True) and not self.allow_secret_gist:
            raise ProviderError(
                f"Gist {gist_id} is secret; launching secret gists is disabled (GistProvider.allow_secret_gist)", 403
            )
        versions = [entry["version"] for entry in info.get("history", []) if "version" in entry]
        if not versions:
            raise ProviderError(f"Gist {gist_id} has no revisions", 404)
        if ref in LATEST:
            sha = versions[0]  # the API lists the newest revision first
        elif ref in versions:
            sha = ref
        else:
            raise ProviderError(f"Revision {ref} not found in gist {user}/{gist_id}", 404)
        base = self.html_url.rstrip("/")
        return ResolvedRepo(
            provider=self.name,
            spec=self.spec,
            repo_url=f"{base}/{user}/{gist_id}",
            ref=sha,
            ref_url=f"{base}/{user}/{gist_id}/{sha}",
            persistent_spec=f"{user}/{gist_id}/{sha}",
            slug=safe_slug(f"gist-{gist_id}"),
        )

    def clone_url(self, resolved: ResolvedRepo) -> str:
        return f"{resolved.repo_url}.git"
