"""BioStudies: a study's PageTab JSON, its ``/info``, its files (paged), search, downloads.

>>> s = study("S-BIAD609")
>>> s.title, s.info["relPath"], next(s.files()).path
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ._endpoints import endpoint
from ._http import Client, MalformedResponseError, NotFoundError, shared_client

#: the API answers at most this many files per page
MAX_PAGE = 1000
DEFAULT_FTP_HTTP = "https://ftp.ebi.ac.uk/biostudies/fire"
_NUMBERED = re.compile(r"^(?P<prefix>[A-Z]+-[A-Z]+-?)(?P<number>\d+)$")
_LETTERED = re.compile(r"^(?P<prefix>S-[A-Z]{4})(?P<rest>[A-Z0-9]+)$")


def rel_path(accession: str) -> str:
    """Where a study's files live under the BioStudies file tree (the ``relPath`` of ``/info``).

    Studies are bucketed by the last three digits (``S-BIAD/609/S-BIAD609``); one- and
    two-digit accessions share a ``0-99`` bucket (``S-BSST/S-BSST0-99/S-BSST7``); accessions
    ending in letters use them as the bucket (``S-BIAD/TEST/S-BIADTEST``).
    """
    if numbered := _NUMBERED.match(accession):
        prefix, number = numbered["prefix"], numbered["number"]
        bucket = f"{prefix}0-99" if len(number) <= 2 else number[-3:]
        return f"{prefix}/{bucket}/{accession}"
    if lettered := _LETTERED.match(accession):
        return f"{lettered['prefix']}/{lettered['rest']}/{accession}"
    raise ValueError(f"{accession!r} is not a BioStudies accession (like S-BIAD609 or S-BSST7)")


@dataclass(frozen=True)
class File:
    path: str
    size: int | None
    type: str = "file"
    attributes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> File:
        try:
            path = entry.get("path") or entry["filePath"]
        except (KeyError, AttributeError):
            raise MalformedResponseError(f"a BioStudies file entry without 'path': {str(entry)[:200]}") from None
        attributes = {a["name"]: a.get("value", "") for a in entry.get("attributes", []) if "name" in a}
        return cls(path=path, size=entry.get("size"), type=entry.get("type", "file"), attributes=attributes)


class Study:
    """One BioStudies study; every answer is fetched once, on first use."""

    def __init__(self, accession: str, *, url: str | None = None, client: Client | None = None) -> None:
        if not accession or not isinstance(accession, str) or "/" in accession:
            raise ValueError(f"{accession!r} is not a BioStudies accession (like S-BIAD609)")
        self.accession = accession
        self.base = endpoint("BIA_BINDER_BIOSTUDIES_URL", url)
        self.client = client or shared_client()

    def __repr__(self) -> str:
        return f"<BioStudies study {self.accession}>"

    @property
    def api(self) -> str:
        return f"{self.base}/api/v1/studies/{self.accession}"

    @cached_property
    def json(self) -> dict[str, Any]:
        """The study as PageTab JSON (following the ``ftpHttp_link`` indirection when the API uses it)."""
        what = f"BioStudies study {self.accession}"
        document = self.client.get_json(self.api, what=what)
        if isinstance(document, dict) and "ftpHttp_link" in document and "section" not in document:
            link = str(document["ftpHttp_link"]).rstrip("/")
            document = self.client.get_json(f"{link}/{self.accession}.json", what=what)
        if not isinstance(document, dict) or "section" not in document:
            raise MalformedResponseError(f"{what}: the answer from {self.api} is not a PageTab study (no 'section')")
        return document

    @cached_property
    def info(self) -> dict[str, Any]:
        """``/info``: file count, ``relPath``, ``httpLink``/``ftpLink``, release dates."""
        info = self.client.get_json(f"{self.api}/info", what=f"BioStudies study {self.accession} info")
        if not isinstance(info, dict):
            raise MalformedResponseError(f"BioStudies /info for {self.accession} is not a JSON object")
        return info

    @property
    def attributes(self) -> dict[str, str]:
        """Study-level attributes (root and section; repeated names keep the first value)."""
        merged: dict[str, str] = {}
        for attribute in [*self.json.get("attributes", []), *self.json["section"].get("attributes", [])]:
            merged.setdefault(attribute.get("name", ""), attribute.get("value", ""))
        return merged

    @property
    def title(self) -> str:
        return self.attributes.get("Title", "")

    @property
    def rel_path(self) -> str:
        return str(self.info.get("relPath") or rel_path(self.accession))

    def files(self, *, page_size: int = MAX_PAGE) -> Iterator[File]:
        """Every file of the study, fetched a page (at most 1000) at a time."""
        page_size = min(page_size, MAX_PAGE)
        offset = 0
        while True:
            page = self.client.get_json(
                f"{self.api}/files",
                what=f"files of BioStudies study {self.accession}",
                params={"limit": page_size, "offset": offset},
            )
            entries = page.get("files", page.get("data")) if isinstance(page, dict) else page
            if not isinstance(entries, list):
                raise MalformedResponseError(f"BioStudies files of {self.accession}: expected a list of files")
            yield from (File.from_json(entry) for entry in entries)
            if len(entries) < page_size:
                return
            offset += len(entries)

    def file_url(self, path: str) -> str:
        """The HTTP URL of one of the study's files."""
        return f"{self.base}/files/{self.accession}/{quote(path)}"

    def ftp_url(self, path: str) -> str:
        """The file's URL on EBI's FTP-over-HTTP tree (``{httpLink}/Files/{path}``), built from ``relPath``."""
        link = self.info.get("httpLink") or f"{DEFAULT_FTP_HTTP}/{self.rel_path}"
        return f"{str(link).rstrip('/')}/Files/{quote(path)}"

    def stream(self, path: str | File, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The file's bytes, a block at a time, without saving it."""
        path = path.path if isinstance(path, File) else path
        response = self.client.get(self.file_url(path), what=f"{self.accession} file {path!r}", stream=True)
        try:
            yield from response.iter_bytes(chunk_size)
        finally:
            response.close()

    def download(self, path: str | File, dest: str | Path = ".", *, progress: bool = True) -> Path:
        """Save one file under ``dest`` (a directory) with a progress bar; returns the local path."""
        path = path.path if isinstance(path, File) else path
        target = Path(dest) / Path(path).name
        return self.client.download(self.file_url(path), target, what=f"{self.accession} file {path!r}", progress=progress)


def study(accession: str, *, url: str | None = None, client: Client | None = None) -> Study:
    """A BioStudies study; ``url`` (or ``BIA_BINDER_BIOSTUDIES_URL``) overrides the public service."""
    return Study(accession, url=url, client=client)


def search(
    query: str, *, url: str | None = None, collection: str | None = None, page_size: int = 100, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """Search hits (dicts with ``accession``, ``title``...), following pages or the answer's cursor."""
    client = shared_client()
    base = endpoint("BIA_BINDER_BIOSTUDIES_URL", url)
    api = f"{base}/api/v1/{collection}/search" if collection else f"{base}/api/v1/search"
    params: dict[str, Any] = {"query": query, "pageSize": page_size, "page": 1}
    seen = 0
    while True:
        answer = client.get_json(api, what=f"BioStudies search {query!r}", params=params)
        hits = answer.get("hits") if isinstance(answer, dict) else None
        if not isinstance(hits, list):
            raise MalformedResponseError(f"BioStudies search {query!r}: the answer from {api} has no 'hits' list")
        for hit in hits:
            if limit is not None and seen >= limit:
                return
            seen += 1
            yield hit
        total = answer.get("totalHits")
        if not hits or (total is not None and seen >= int(total)):
            return
        if answer.get("cursor"):
            params = {"query": query, "pageSize": page_size, "cursor": answer["cursor"]}
        else:
            params["page"] = int(params.get("page", 1)) + 1


__all__ = ["File", "NotFoundError", "Study", "rel_path", "search", "study"]
