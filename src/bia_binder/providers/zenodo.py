"""Zenodo records: ``/v2/zenodo/<DOI>`` (e.g. ``10.5281/zenodo.3242074``) or a record URL / id.

A concept DOI (all versions) resolves to its latest version; the persistent spec is that version's DOI.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit

import httpx
from traitlets import Unicode, default

from . import upstream
from .base import ProviderError, ResolvedRepo
from .records import RecordProvider, RemoteFile, normalize_doi


class ZenodoProvider(RecordProvider):
    name = "zenodo"
    service = "Zenodo"
    display_config = {
        "displayName": "Zenodo DOI",
        "id": "zenodo",
        "spec": {"validateRegex": r"10\.\d+\/(.)+"},
        "detect": {"regex": r"^((https?://(dx\.)?doi\.org/)|doi:)?(?<repo>10\.\d+/\S+)$"},
        "repo": {"label": "Zenodo DOI", "placeholder": "example: 10.5281/zenodo.3242074", "urlEncode": False},
        "ref": {"enabled": False},
    }

    zenodo_url = Unicode("https://zenodo.org", config=True, help="Base URL of the Zenodo (InvenioRDM) installation.")
    access_token = Unicode(config=True, help="Zenodo API token (optional). Default: $ZENODO_ACCESS_TOKEN.")

    @default("access_token")
    def _access_token_default(self) -> str:
        return os.environ.get("ZENODO_ACCESS_TOKEN", "")

    def client(self) -> httpx.AsyncClient:
        headers = {"Accept": "application/json"}
        if self.access_token:
            headers["Authorization"] = f"Bearer {self.access_token}"
        return upstream.make_client(self, headers)

    def record_id_in_url(self, url: str) -> str | None:
        """The record id in a Zenodo record page or API URL (``/records/123``, ``/record/123``)."""
        base = re.escape(self.zenodo_url.rstrip("/"))
        match = re.match(rf"^{base}/(?:api/)?records?/(\d+)/?(?:[?#].*)?$", url)
        return match.group(1) if match else None

    async def record_id(self, client: httpx.AsyncClient) -> str:
        text = unquote(self.spec).strip()
        if text.isdigit():
            return text
        record_id = self.record_id_in_url(text)
        if record_id:
            return record_id
        base = self.zenodo_url.rstrip("/")
        doi = normalize_doi(text.removeprefix(f"{base}/doi/"))
        if doi is None:
            raise ProviderError(
                f'"{self.spec}" is not a Zenodo DOI (e.g. 10.5281/zenodo.3242074) or record URL', 400
            )
        url = await self.resolve_doi(
            client, doi, lambda u: self.record_id_in_url(u) is not None, {urlsplit(self.zenodo_url).netloc}
        )
        record_id = self.record_id_in_url(url)
        if record_id is None:
            raise ProviderError(f"DOI {doi} is not a Zenodo record (it points to {url})", 400)
        return record_id

    async def get_record(self, client: httpx.AsyncClient, record_id: str) -> dict:
        """The record's JSON; a concept record id is redirected by Zenodo to its latest version."""
        url = f"{self.zenodo_url.rstrip('/')}/api/records/{record_id}"
        response = await upstream.get(client, url, self.service)
        if response.status_code in (404, 410):
            raise ProviderError(f"Zenodo record {record_id} not found (or deleted)", 404)
        if response.status_code in (401, 403):
            raise ProviderError(f"Zenodo record {record_id} is restricted", 403)
        if response.status_code != 200:
            raise ProviderError(f"Zenodo answered {response.status_code} for record {record_id}", 502)
        record = upstream.json_body(response, self.service)
        if "id" not in record:
            raise ProviderError(f"Zenodo sent an unexpected answer for record {record_id}", 502)
        return record

    async def resolve(self) -> ResolvedRepo:
        async with self.client() as client:
            record = await self.get_record(client, await self.record_id(client))
        record_id = str(record["id"])
        doi = record.get("doi") or f"10.5281/zenodo.{record_id}"
        links = record.get("links") or {}
        return ResolvedRepo(
            provider=self.name,
            spec=self.spec,
            repo_url=links.get("self_html") or f"{self.zenodo_url.rstrip('/')}/records/{record_id}",
            ref=record_id,
            ref_url=f"{self.doi_resolver.rstrip('/')}/{doi}",
            persistent_spec=doi,
            slug=f"zenodo-{record_id}",
        )

    async def list_files(self, client: httpx.AsyncClient, resolved: ResolvedRepo) -> list[RemoteFile]:
        record = await self.get_record(client, resolved.ref)
        if str(record["id"]) != resolved.ref:
            raise ProviderError(f"Zenodo record {resolved.ref} changed identity; launch it again", 502)
        files = record.get("files")
        if isinstance(files, list) and files and all("key" in f and "self" in f.get("links", {}) for f in files):
            return [RemoteFile(f["key"], f["links"]["self"], f.get("size")) for f in files]
        # InvenioRDM's other serialisation: the files are listed behind links.files
        files_url = (record.get("links") or {}).get("files")
        if files_url:
            listing = upstream.json_body(await upstream.get(client, files_url, self.service), self.service)
            entries = listing.get("entries") or []
            if entries:
                return [RemoteFile(e["key"], e["links"]["content"], e.get("size")) for e in entries]
        raise ProviderError(f"Zenodo record {resolved.ref} has no files that can be downloaded", 404)
