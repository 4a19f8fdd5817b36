"""Any git repository: ``/v2/git/<url-quoted clone URL>/<ref>`` (BinderHub's form)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable
from urllib.parse import quote, unquote, urlsplit

from traitlets import Set, Unicode

from .base import ProviderError, RepoProvider, ResolvedRepo, safe_slug
from .github import check_ref_syntax
from .gitrepo import NETWORK_TRANSPORTS, check_git_url, fetch_commit, normalize_git_url, resolve_ref


class GitProvider(RepoProvider):
    name = "git"
    display_config = {
        "displayName": "Git repository",
        "id": "git",
        "spec": {"validateRegex": r"[^/]+/.+"},
        "repo": {
            "label": "Arbitrary git repository URL",
            "placeholder": "example: http://git.example.com/repo",
            "urlEncode": True,
        },
        "ref": {"enabled": True, "default": "HEAD"},
    }

    allowed_protocols = Set(
        Unicode(),
        default_value=set(NETWORK_TRANSPORTS),
        config=True,
        help="URL schemes a git repository may use (BinderHub's option). file:// only with allow_local_repos.",
    )

    def parse_spec(self) -> tuple[str, str]:
        quoted_url, _, ref = self.spec.partition("/")
        url = normalize_git_url(unquote(quoted_url))
        if not ref or (not urlsplit(url).netloc and urlsplit(url).scheme != "file"):
            raise ProviderError(
                f'Spec is not of the form "url-quoted-repository-URL/ref" '
                f'(e.g. "https%3A%2F%2Fgit.example.org%2Frepo.git/main"), provided: "{self.spec}"',
                400,
            )
        check_git_url(url, self.allowed_protocols, self.allow_local_repos)
        return url, check_ref_syntax(unquote(ref))

    async def resolve(self) -> ResolvedRepo:
        url, ref = self.parse_spec()
        sha = await resolve_ref(url, ref, allow_local=self.allow_local_repos, timeout=self.timeout)
        parts = urlsplit(url)
        return ResolvedRepo(
            provider=self.name,
            spec=self.spec,
            repo_url=url,
            ref=sha,
            ref_url=url,  # an unknown host has no standard page for one commit
            persistent_spec=f"{quote(url, safe='')}/{sha}",
            slug=safe_slug(f"{parts.hostname or ''}-{parts.path.removesuffix('.git')}"),
        )

    async def fetch(self, resolved: ResolvedRepo, dest: Path, log: Callable[[str], None]) -> None:
        check_git_url(resolved.repo_url, self.allowed_protocols, self.allow_local_repos)
        await fetch_commit(
            resolved.repo_url,
            resolved.ref,
            dest,
            log,
            allow_local=self.allow_local_repos,
            timeout=self.fetch_timeout,
            max_size=self.max_repo_size,
        )
