"""Repository providers by BinderHub prefix: ``/v2/<prefix>/<spec>``.

``get_provider("gh", "org/repo/main", parent=app)`` gives a configured provider for one request;
``repoproviders_api()`` is the body of BinderHub's ``GET /api/repoproviders``.
"""

from __future__ import annotations

from traitlets.config import Configurable

from .base import ProviderError, RepoProvider, ResolvedRepo
from .dataverse import DataverseProvider
from .figshare import FigshareProvider
from .gist import GistProvider
from .git import GitProvider
from .github import GitHubProvider
from .gitlab import GitLabProvider
from .zenodo import ZenodoProvider

PROVIDERS: dict[str, type[RepoProvider]] = {
    cls.name: cls
    for cls in (
        GitHubProvider,
        GistProvider,
        GitProvider,
        GitLabProvider,
        ZenodoProvider,
        FigshareProvider,
        DataverseProvider,
    )
}


def get_provider(name: str, spec: str, parent: Configurable | None = None) -> RepoProvider:
    """A provider instance for ``spec``; ProviderError(404) for an unknown prefix."""
    cls = PROVIDERS.get(name)
    if cls is None:
        raise ProviderError(
            f"Unknown repository provider {name!r}: use one of {', '.join(sorted(PROVIDERS))}", 404
        )
    return cls(spec=spec, parent=parent)


def repoproviders_api(parent: Configurable | None = None) -> list[dict]:
    """BinderHub's ``/api/repoproviders`` answer: a JSON list of each provider's display config,
    with the configured hosts (GitHub Enterprise, self-hosted GitLab) in the ``detect`` regexes."""
    return [cls(parent=parent).repoprovider_config() for cls in PROVIDERS.values()]


__all__ = ["PROVIDERS", "ProviderError", "RepoProvider", "ResolvedRepo", "get_provider", "repoproviders_api"]
