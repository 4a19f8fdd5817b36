"""Dataverse datasets: ``/v2/dataverse/<DOI>`` (e.g. ``10.7910/DVN/TJCLKP``) or a dataset/file URL of a known
installation (``https://dataverse.harvard.edu/dataset.xhtml?persistentId=doi:...[&version=1.0]``, ``/citation?...``,
``/file.xhtml?...``, ``/api/access/datafile/<id>``).

DOIs name a dataset, not a version, so the persistent spec is the URL-quoted dataset URL with ``&version=M.m``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import httpx
from traitlets import Bool, List, Unicode

from . import upstream
from .base import ProviderError, ResolvedRepo, safe_slug
from .records import RecordProvider, RemoteFile, normalize_doi

#: A few large installations; BinderHub/repo2docker use the full list at
#: https://iqss.github.io/dataverse-installations/data/data.json (add hosts with DataverseProvider.hosts).
DEFAULT_HOSTS = [
    "dataverse.harvard.edu",
    "demo.dataverse.org",
    "dataverse.nl",
    "dataverse.no",
    "borealisdata.ca",
    "data.goettingen-research-online.de",
    "recherche.data.gouv.fr",
    "entrepot.recherche.data.gouv.fr",
    "darus.uni-stuttgart.de",
    "dataverse.unc.edu",
    "dataverse.tdl.org",
    "heidata.uni-heidelberg.de",
]
VERSION = re.compile(r"^\d+(\.\d+)?$")


class DataverseProvider(RecordProvider):
    name = "dataverse"
    service = "Dataverse"
    display_config = {
        "displayName": "Dataverse DOI",
        "id": "dataverse",
        "spec": {"validateRegex": r"10\.\d+\/(.)+"},
        "detect": {"regex": r"^((https?://(dx\.)?doi\.org/)|doi:)?(?<repo>10\.\d+/\S+)$"},
        "repo": {"label": "Dataverse DOI", "placeholder": "example: 10.7910/DVN/TJCLKP", "urlEncode": False},
        "ref": {"enabled": False},
    }

    hosts = List(
        Unicode(),
        DEFAULT_HOSTS,
        config=True,
        help="Dataverse installations (host or host:port) whose datasets may be launched.",
    )
    unzip_single_zip = Bool(False, config=True, help="Unpack a dataset's only .zip file (repo2docker does not).")

    def is_installation(self, url: str) -> bool:
        return urlsplit(url).netloc.lower() in {h.lower() for h in self.hosts}

    async def landing_url(self, client: httpx.AsyncClient) -> str:
        text = unquote(self.spec).strip()
        if text.startswith(("http://", "https://")) and not normalize_doi(text):
            if not self.is_installation(text):
                raise ProviderError(
                    f"{urlsplit(text).netloc} is not a known Dataverse installation (DataverseProvider.hosts)", 400
                )
            return text
        doi = normalize_doi(text)
        if doi is None:
            raise ProviderError(f'"{self.spec}" is not a Dataverse DOI (e.g. 10.7910/DVN/TJCLKP) or dataset URL', 400)
        url = await self.resolve_doi(client, doi, self.is_installation, set(self.hosts))
        if not self.is_installation(url):
            raise ProviderError(
                f"DOI {doi} does not point to a known Dataverse installation (it points to {url}; "
                "an operator can add its host to DataverseProvider.hosts)",
                400,
            )
        return url

    async def api(self, client: httpx.AsyncClient, url: str, what: str, missing_ok: bool = False) -> dict | None:
        response = await upstream.get(client, url, self.service)
        if response.status_code in (403, 404):
            if missing_ok:
                return None
            raise ProviderError(f"Dataverse {what} not found (or not public)", 404)
        if response.status_code != 200:
            raise ProviderError(f"Dataverse answered {response.status_code} for {what}", 502)
        body = upstream.json_body(response, self.service)
        if body.get("status") != "OK" or not isinstance(body.get("data"), dict):
            raise ProviderError(f"Dataverse sent an unexpected answer for {what}", 502)
        return body["data"]

    async def dataset_of_file(self, client: httpx.AsyncClient, base: str, file_id: str) -> str:
        if file_id.isdigit():
            url = f"{base}/api/files/{file_id}?returnDatasetVersion=true"
        else:
            url = f"{base}/api/files/:persistentId?{urlencode({'persistentId': file_id, 'returnDatasetVersion': 'true'})}"
        data = await self.api(client, url, f"file {file_id}")
        return data["datasetVersion"]["datasetPersistentId"]

    async def dataset_pid(self, client: httpx.AsyncClient, url: str) -> tuple[str, str, str | None, dict]:
        """(base URL, dataset persistent id, requested version or None, dataset JSON) for a landing URL."""
        parts = urlsplit(url)
        base = f"{parts.scheme}://{parts.netloc}"
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        pid, version = query.get("persistentId"), query.get("version")
        if version is not None and not VERSION.match(version):
            raise ProviderError(f"Invalid Dataverse version {version!r}: use a number like 1.0", 400)
        if parts.path.startswith("/api/access/datafile/"):
            pid = await self.dataset_of_file(client, base, parts.path.rsplit("/", 1)[1])
        elif parts.path.startswith("/file.xhtml") and pid:
            pid = await self.dataset_of_file(client, base, pid)
        elif not (parts.path.startswith(("/dataset.xhtml", "/citation")) and pid):
            raise ProviderError(f"Could not find a dataset in the Dataverse URL {url}", 400)
        dataset = await self.api(client, self.dataset_url(base, pid), f"dataset {pid}", missing_ok=True)
        if dataset is None and parts.path.startswith("/citation"):
            # a citation URL can name a file as well as a dataset
            pid = await self.dataset_of_file(client, base, pid)
            dataset = await self.api(client, self.dataset_url(base, pid), f"dataset {pid}", missing_ok=True)
        if dataset is None:
            raise ProviderError(f"Dataverse dataset {pid} not found (or not public)", 404)
        return base, pid, version, dataset

    @staticmethod
    def dataset_url(base: str, pid: str, version: str | None = None) -> str:
        suffix = f"/versions/{version}" if version else ""
        return f"{base}/api/datasets/:persistentId{suffix}?{urlencode({'persistentId': pid})}"

    async def resolve(self) -> ResolvedRepo:
        async with self.client() as client:
            base, pid, version, dataset = await self.dataset_pid(client, await self.landing_url(client))
            if version:
                info = await self.api(client, self.dataset_url(base, pid, version), f"dataset {pid} version {version}")
            else:
                info = dataset.get("latestVersion") or {}
        if "versionNumber" not in info:
            raise ProviderError(f"Dataverse dataset {pid} has no published version", 404)
        number = f"{info['versionNumber']}.{info.get('versionMinorNumber', 0)}"
        page = f"{base}/dataset.xhtml?{urlencode({'persistentId': pid})}"
        pinned = f"{page}&version={number}"
        return ResolvedRepo(
            provider=self.name,
            spec=self.spec,
            repo_url=page,
            ref=f"{dataset['id']}.v{number}",
            ref_url=pinned,
            persistent_spec=quote(pinned, safe=""),
            slug=safe_slug(f"dataverse-{dataset.get('identifier', dataset['id'])}"),
        )

    async def list_files(self, client: httpx.AsyncClient, resolved: ResolvedRepo) -> list[RemoteFile]:
        parts = urlsplit(resolved.ref_url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        base, pid = f"{parts.scheme}://{parts.netloc}", query["persistentId"]
        info = await self.api(client, self.dataset_url(base, pid, query["version"]), f"dataset {pid}")
        files = []
        for entry in info.get("files") or []:
            if entry.get("restricted"):
                continue  # needs a login; anonymous launches cannot get it
            data_file = entry["dataFile"]
            original = data_file.get("originalFileName")
            # tabular files are served in an archival format unless the original is asked for
            url = f"{base}/api/access/datafile/{data_file['id']}" + ("?format=original" if original else "")
            name = original or entry["label"]
            path = f"{entry['directoryLabel']}/{name}" if entry.get("directoryLabel") else name
            size = data_file.get("originalFileSize") if original else data_file.get("filesize")
            files.append(RemoteFile(path, url, size))
        if not files:
            raise ProviderError(f"Dataverse dataset {pid} has no public files", 404)
        return files
