"""What the data-record providers (Zenodo, Figshare, Dataverse) share: DOIs, downloads, unzipping."""

from __future__ import annotations

import asyncio
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable
from urllib.parse import unquote, urljoin, urlsplit

import httpx
from traitlets import Bool, Unicode

from . import upstream
from .base import ProviderError, RepoProvider, ResolvedRepo

DOI = re.compile(r"^10\.\d{4,9}/\S+$")
DOI_PREFIXES = re.compile(r"^(doi:|https?://(dx\.)?doi\.org/)", re.IGNORECASE)
MAX_DOI_HOPS = 10


def normalize_doi(text: str) -> str | None:
    """``10.x/y`` from ``doi:10.x/y``, ``https://doi.org/10.x/y`` or ``10.x/y``; None if it is not a DOI."""
    doi = DOI_PREFIXES.sub("", unquote(text).strip())
    return doi if DOI.match(doi) else None


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative path inside the record
    url: str
    size: int | None = None


def safe_target(dest: Path, relative: str) -> Path:
    """``dest/relative``, refusing absolute paths and ``..`` (a record must not write outside ``dest``)."""
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
        raise ProviderError(f"The record contains a file with an unsafe name {relative!r}; it cannot be fetched", 400)
    return dest.joinpath(*parts)


class RecordProvider(RepoProvider):
    """A provider whose content is a list of files behind an HTTP API, identified by a DOI."""

    #: Name used in messages ("Zenodo")
    service: str = ""

    doi_resolver = Unicode("https://doi.org", config=True, help="DOI resolver that redirects a DOI to its landing page.")
    unzip_single_zip = Bool(
        True, config=True, help="When a record holds exactly one .zip file, unpack it (as repo2docker does)."
    )

    async def resolve_doi(
        self, client: httpx.AsyncClient, doi: str, is_target: Callable[[str], bool], service_hosts: set[str]
    ) -> str:
        """Follow the resolver's redirects for ``doi`` until a URL ``is_target`` accepts.

        Redirects are only followed on the resolver's and the service's own hosts: a DOI of some
        other site ends at its first foreign URL, which the caller reports. Hand-rolled instead of
        httpx's follow_redirects so that landing pages (HTML, possibly large) are never downloaded.
        """
        url = f"{self.doi_resolver.rstrip('/')}/{doi}"
        followable = {urlsplit(self.doi_resolver).netloc.lower(), *(h.lower() for h in service_hosts)}
        for _ in range(MAX_DOI_HOPS):
            if is_target(url) or urlsplit(url).netloc.lower() not in followable:
                return url
            response = await upstream.get(client, url, "The DOI resolver", follow_redirects=False)
            if response.is_redirect:
                url = urljoin(url, response.headers["location"])
            elif response.status_code == 200:
                return url
            elif response.status_code == 404:
                raise ProviderError(f"DOI {doi} not found: check the DOI", 404)
            else:
                raise ProviderError(f"Resolving DOI {doi} failed: {url} answered {response.status_code}", 502)
        raise ProviderError(f"DOI {doi} redirects too many times", 502)

    async def list_files(self, client: httpx.AsyncClient, resolved: ResolvedRepo) -> list[RemoteFile]:
        """The files of exactly ``resolved.ref``."""
        raise NotImplementedError

    def client(self) -> httpx.AsyncClient:
        return upstream.make_client(self, {"Accept": "application/json"})

    async def fetch(self, resolved: ResolvedRepo, dest: Path, log: Callable[[str], None]) -> None:
        try:
            async with asyncio.timeout(self.fetch_timeout):
                await self._fetch(resolved, dest, log)
        except TimeoutError:
            raise ProviderError(
                f"Fetching {resolved.repo_url} took longer than {self.fetch_timeout} s and was stopped", 504
            ) from None

    async def _fetch(self, resolved: ResolvedRepo, dest: Path, log: Callable[[str], None]) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        budget = upstream.SizeBudget(self.max_repo_size, f"{self.service} record {resolved.ref}")
        async with self.client() as client:
            files = await self.list_files(client, resolved)
            log(f"Fetching {self.service} record {resolved.ref} ({len(files)} files)\n")
            if sum(f.size or 0 for f in files) > self.max_repo_size:
                raise budget.too_large()
            for remote in files:
                target = safe_target(dest, remote.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                log(f"Fetching {remote.path}\n")
                await upstream.download(client, remote.url, target, budget, self.service)
        if self.unzip_single_zip and len(files) == 1 and zipfile.is_zipfile(target):
            log(f"Extracting {files[0].path}\n")
            await asyncio.to_thread(unpack_zip, target, dest, budget)
        log(f"Fetched {self.service} record {resolved.ref}\n")


def unpack_zip(archive: Path, dest: Path, budget: upstream.SizeBudget) -> None:
    """Extract ``archive`` into ``dest``, delete it, and lift a single top-level directory (repo2docker's layout)."""
    with zipfile.ZipFile(archive) as zf:
        if sum(info.file_size for info in zf.infolist()) > budget.limit:  # refuse zip bombs before writing
            raise budget.too_large()
        zf.extractall(dest)  # zipfile drops absolute paths and '..' components
    archive.unlink()
    for parent in list(archive.relative_to(dest).parents)[:-1]:
        if not any((dest / parent).iterdir()):
            (dest / parent).rmdir()
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        lifted = entries[0]
        temporary = lifted.rename(dest / f".unzip-{lifted.name}")
        for child in temporary.iterdir():
            shutil.move(str(child), dest / child.name)
        temporary.rmdir()
