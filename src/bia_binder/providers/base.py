"""The repository provider interface: one subclass per source (gh, gl, git, gist, zenodo, ...).

A provider turns a BinderHub spec (the part of ``/v2/<provider>/<spec>`` after the provider
name) into an immutable :class:`ResolvedRepo`, then fetches exactly that version's content.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, asdict
from pathlib import Path
from typing import Callable, ClassVar

from traitlets import Bool, Int, Unicode
from traitlets.config import LoggingConfigurable

from ..events import LaunchError


class ProviderError(LaunchError):
    """Bad spec, missing repository/ref, rate limit, unreachable host, too large..."""


@dataclass(frozen=True)
class ResolvedRepo:
    provider: str  # provider prefix, e.g. "gh"
    spec: str  # the spec as requested (may name a moving ref)
    repo_url: str  # human/clone URL of the repository or record
    ref: str  # immutable: commit sha, or record id/version
    ref_url: str  # URL of exactly this version (BinderHub's binder_ref_url)
    persistent_spec: str  # spec pinned to ``ref``: /v2/<provider>/<persistent_spec> never moves
    slug: str  # short filesystem/username-safe name, e.g. "org-repo"

    def to_dict(self) -> dict:
        return asdict(self)


def safe_slug(text: str, max_length: int = 40) -> str:
    """Lower-case [a-z0-9-] slug, used in user names and directory names."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_length].strip("-") or "repo"


class RepoProvider(LoggingConfigurable):
    """Base class. Subclasses set ``name`` etc. and implement ``resolve`` and ``fetch``.

    Instances are created per request: ``GitHubProvider(spec="org/repo/main", parent=config_parent)``.
    Configuration (API base URLs, tokens) comes from traitlets config, e.g.
    ``c.GitHubProvider.api_url = "https://github.example.org/api/v3"``.
    """

    #: BinderHub provider prefix used in URLs (gh, gl, git, gist, zenodo, figshare, dataverse)
    name: ClassVar[str] = ""
    #: Shown in the UI and /api/repoproviders
    display_name: ClassVar[str] = ""
    #: For /api/repoproviders: {"regex": JS regex with named groups `repo` and `ref`?, ...}
    #: (BinderHub's `detect` entries so the front end recognises pasted URLs)
    detect: ClassVar[dict | None] = None
    #: UI labels: {"text": ..., "tag_text": ..., "ref_prop_disabled": bool, "label_prop_disabled": bool}
    labels: ClassVar[dict] = {}
    #: BinderHub's ``display_config`` (its /api/repoproviders entry): displayName, id, spec.validateRegex,
    #: detect.regex, repo {label, placeholder, urlEncode}, ref {enabled, default}. When a subclass sets it,
    #: ``display_name``, ``detect`` and ``labels`` are derived from it.
    display_config: ClassVar[dict] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        config = cls.__dict__.get("display_config")
        if not config:
            return
        ref_enabled = config.get("ref", {}).get("enabled", False)
        cls.display_name = config["displayName"]
        cls.detect = config.get("detect")
        cls.labels = {
            "text": config["repo"]["label"],
            "tag_text": "Git ref (branch, tag, or commit)" if ref_enabled else "",
            "ref_prop_disabled": not ref_enabled,
            "label_prop_disabled": False,
        }

    def repoprovider_config(self) -> dict:
        """This provider's entry in ``/api/repoproviders`` (subclasses put configured hosts into ``detect``)."""
        return copy.deepcopy(self.display_config)

    spec = Unicode(help="The spec as it appears in the URL after the provider name").tag(config=False)

    allow_local_repos = Bool(
        False,
        config=True,
        help="Allow repository URLs that resolve to loopback/private/link-local addresses or file:// "
        "(development and tests only: otherwise a launch could make the server fetch from its own network).",
    )
    timeout = Int(30, config=True, help="Seconds to wait for the upstream service to answer one request.")
    fetch_timeout = Int(
        600, config=True, help="Seconds one fetch (git clone, or download of all a record's files) may take; then 504."
    )
    max_repo_size = Int(
        1024**3, config=True, help="Largest repository or record (bytes) that will be fetched; larger ones fail with 413."
    )

    async def resolve(self) -> ResolvedRepo:
        """Parse ``self.spec`` and resolve any moving ref to an immutable one. Raise ProviderError."""
        raise NotImplementedError

    async def fetch(self, resolved: ResolvedRepo, dest: Path, log: Callable[[str], None]) -> None:
        """Put exactly ``resolved.ref``'s content into the empty directory ``dest``.

        ``log`` receives human-readable progress lines (each ending in a newline). Raise ProviderError.
        """
        raise NotImplementedError
