"""Where the public services live: defaults, overridable per call and by environment variable."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

DEFAULTS = {
    "BIA_BINDER_BIOSTUDIES_URL": "https://www.ebi.ac.uk/biostudies",
    "BIA_BINDER_BIA_API_URL": "https://wwwdev.ebi.ac.uk/bioimage-archive/api",
    "BIA_BINDER_IDR_URL": "https://idr.openmicroscopy.org",
    "BIA_BINDER_S3_ENDPOINT": "https://livingobjects.ebi.ac.uk",
}

#: EBI's S3 hosts before the 2026 move; URLs in older metadata still name them
FORMER_S3_HOSTS = ("uk1s3.embassy.ebi.ac.uk", "s3.embassy.ebi.ac.uk", "livingobjects.ebi.ac.uk")


def endpoint(variable: str, override: str | None = None) -> str:
    """The base URL: the argument if given, else the environment variable, else the public service."""
    return (override or os.environ.get(variable) or DEFAULTS[variable]).rstrip("/")


def s3_endpoint(override: str | None = None) -> str:
    return endpoint("BIA_BINDER_S3_ENDPOINT", override)


def to_http_url(url: str, s3: str | None = None) -> str:
    """An HTTP(S) URL for ``url``: ``s3://bucket/key`` and EBI's S3 hosts point at the configured endpoint.

    Anonymous S3 reads are plain path-style GETs, so one HTTP client serves both and sessions
    need no AWS SDK.
    """
    parts = urlsplit(url)
    base = s3_endpoint(s3)
    if parts.scheme == "s3":
        return f"{base}/{parts.netloc}{parts.path}"
    if parts.scheme in ("http", "https") and parts.hostname in FORMER_S3_HOSTS:
        return f"{base}{parts.path}"
    return url
