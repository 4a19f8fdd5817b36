"""BioImage Archive studies: ``/v2/bia/<S-BIADnnn | S-BSSTnnn>`` (integrator API v2)."""

from __future__ import annotations

from .archive import ArchiveProvider


class BIAProvider(ArchiveProvider):
    name = "bia"
    archive = "BioImage Archive"
    display_config = {
        "displayName": "BioImage Archive study",
        "id": "bia",
        "spec": {"validateRegex": r"S-(BIAD|BSST)\d+"},
        "detect": {"regex": r"^(?<repo>S-(BIAD|BSST)\d+)$"},
        "repo": {"label": "BioImage Archive accession", "placeholder": "example: S-BIAD609", "urlEncode": False},
        "ref": {"enabled": False},
    }
