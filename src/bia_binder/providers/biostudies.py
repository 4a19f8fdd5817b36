"""BioStudies studies: ``/v2/biostudies/<accession>`` (any released BioStudies study; its files, no images API)."""

from __future__ import annotations

from .archive import ArchiveProvider


class BioStudiesProvider(ArchiveProvider):
    name = "biostudies"
    archive = "BioStudies"
    display_config = {
        "displayName": "BioStudies study",
        "id": "biostudies",
        "spec": {"validateRegex": r"S-[A-Z]+\d+"},
        "detect": {"regex": r"^(?<repo>S-[A-Z]{2,6}\d+)$"},
        "repo": {"label": "BioStudies accession", "placeholder": "example: S-BSST7", "urlEncode": False},
        "ref": {"enabled": False},
    }
