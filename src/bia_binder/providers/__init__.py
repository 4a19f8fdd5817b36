"""Repository providers by BinderHub prefix: ``/v2/<prefix>/<spec>``.

``get_provider("gh", "org/repo/main", parent=app)`` gives a configured provider for one request;
``repoproviders_api()`` is the body of BinderHub's ``GET /api/repoproviders``.
"""

from __future__ import annotations

from traitlets.config import Configurable

from .archive import ArchiveProvider
from .base import ProviderError, RepoProvider, ResolvedRepo
from .bia import BIAProvider
from .biostudies import BioStudiesProvider
from .dataverse import DataverseProvider
from .figshare import FigshareProvider
from .gist import GistProvider
from .git import GitProvider
from .github import GitHubProvider
from .gitlab import GitLabProvider
from .idr import IDRProvider
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

#: study providers (``/v2/bia/S-BIAD609``...): launched like repositories, but their content is a notebook
#: generated from the archive's metadata, run in the one prebuilt study environment (bia_binder.studies)
STUDY_PROVIDERS: dict[str, type[ArchiveProvider]] = {cls.name: cls for cls in (BIAProvider, IDRProvider, BioStudiesProvider)}


def get_provider(name: str, spec: str, parent: Configurable | None = None) -> RepoProvider:
    """A provider instance for ``spec``; ProviderError(404) for an unknown prefix."""
    cls = PROVIDERS.get(name) or STUDY_PROVIDERS.get(name)
    if cls is None:
        raise ProviderError(
            f"Unknown repository provider {name!r}: use one of {', '.join(sorted([*PROVIDERS, *STUDY_PROVIDERS]))}", 404
        )
    return cls(spec=spec, parent=parent)


def repoproviders_api(parent: Configurable | None = None) -> list[dict]:
    """BinderHub's ``/api/repoproviders`` answer: a JSON list of each provider's display config,
    with the configured hosts (GitHub Enterprise, self-hosted GitLab) in the ``detect`` regexes."""
    return [cls(parent=parent).repoprovider_config() for cls in PROVIDERS.values()]


__all__ = ["STUDY_PROVIDERS", "ArchiveProvider", "PROVIDERS", "ProviderError", "RepoProvider", "ResolvedRepo", "get_provider", "repoproviders_api"]
