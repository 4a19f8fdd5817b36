"""Figshare articles: ``/v2/figshare/<DOI>`` (``10.6084/m9.figshare.9782777.v1``; unversioned means latest)
or an article URL (``https://figshare.com/articles/dataset/<title>/9782777/1``)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
from traitlets import List, Unicode

from . import upstream
from .base import ProviderError, ResolvedRepo
from .records import RecordProvider, RemoteFile, normalize_doi

#: ...figshare.<article>[.v<version>] at the end of a Figshare DOI
DOI_ARTICLE = re.compile(r"[./](\d+)(?:\.v(\d+))?$")
#: /articles/[<type>/]<title>/<article>[/<version>] in a Figshare page URL
URL_ARTICLE = re.compile(r"/articles/(?:[^/]+/)*?(\d+)(?:/(\d+))?/?$")


class FigshareProvider(RecordProvider):
    name = "figshare"
    service = "Figshare"
    display_config = {
        "displayName": "FigShare DOI",
        "id": "figshare",
        "spec": {"validateRegex": r"10\.\d+\/(.)+"},
        "detect": {"regex": r"^((https?://(dx\.)?doi\.org/)|doi:)?(?<repo>10\.\d+/\S+)$"},
        "repo": {"label": "FigShare DOI", "placeholder": "example: 10.6084/m9.figshare.9782777.v1", "urlEncode": False},
        "ref": {"enabled": False},
    }

    api_url = Unicode("https://api.figshare.com/v2", config=True, help="Base URL of the Figshare API.")
    html_hosts = List(
        Unicode(),
        ["figshare.com"],
        config=True,
        help="Hosts of Figshare article pages (subdomains included, e.g. institutional portals).",
    )

    def article_in_url(self, url: str) -> tuple[str, str | None] | None:
        parts = urlsplit(url)
        host = (parts.netloc or "").lower()
        if not any(host == h or host.endswith(f".{h}") for h in self.html_hosts):
            return None
        match = URL_ARTICLE.search(parts.path)
        return (match.group(1), match.group(2)) if match else None

    async def article_and_version(self, client: httpx.AsyncClient) -> tuple[str, str | None]:
        text = unquote(self.spec).strip()
        from_url = self.article_in_url(text)
        if from_url:
            return from_url
        doi = normalize_doi(text)
        if doi is None:
            raise ProviderError(
                f'"{self.spec}" is not a Figshare DOI (e.g. 10.6084/m9.figshare.9782777.v1) or article URL', 400
            )
        match = DOI_ARTICLE.search(doi.partition("/")[2])
        if match:
            return match.group(1), match.group(2)
        url = await self.resolve_doi(client, doi, lambda u: self.article_in_url(u) is not None, set(self.html_hosts))
        from_doi = self.article_in_url(url)
        if from_doi is None:
            raise ProviderError(f"DOI {doi} is not a Figshare article (it points to {url})", 400)
        return from_doi

    async def api(self, client: httpx.AsyncClient, path: str, what: str, kind: type = dict) -> Any:
        response = await upstream.get(client, f"{self.api_url.rstrip('/')}{path}", self.service)
        if response.status_code in (403, 404):
            raise ProviderError(f"Figshare {what} not found", 404)
        if response.status_code != 200:
            raise ProviderError(f"Figshare answered {response.status_code} for {what}", 502)
        return upstream.json_body(response, self.service, kind)

    async def latest_version(self, client: httpx.AsyncClient, article: str) -> str:
        versions = await self.api(client, f"/articles/{article}/versions", f"article {article}", list)
        numbers = [int(v["version"]) for v in versions if isinstance(v, dict) and "version" in v]
        if not numbers:
            raise ProviderError(f"Figshare article {article} has no published versions", 404)
        return str(max(numbers))

    async def resolve(self) -> ResolvedRepo:
        async with self.client() as client:
            article, version = await self.article_and_version(client)
            version = version or await self.latest_version(client, article)
            info = await self.api(client, f"/articles/{article}/versions/{version}", f"article {article} version {version}")
        doi = info.get("doi")
        if doi and not doi.endswith(f".v{version}"):
            doi = f"{doi}.v{version}"
        page = f"https://{(self.html_hosts or ['figshare.com'])[0]}/articles/{article}/{version}"
        return ResolvedRepo(
            provider=self.name,
            spec=self.spec,
            repo_url=info.get("url_public_html") or page,
            ref=f"{article}.v{version}",
            ref_url=f"{self.doi_resolver.rstrip('/')}/{doi}" if doi else page,
            persistent_spec=doi or quote(page, safe=""),
            slug=f"figshare-{article}-v{version}",
        )

    async def list_files(self, client: httpx.AsyncClient, resolved: ResolvedRepo) -> list[RemoteFile]:
        article, _, version = resolved.ref.partition(".v")
        info = await self.api(client, f"/articles/{article}/versions/{version}", f"article {resolved.ref}")
        files = [f for f in info.get("files") or [] if not f.get("is_link_only")]  # links point elsewhere
        if not files:
            raise ProviderError(f"Figshare article {resolved.ref} has no files that can be downloaded", 404)
        return [RemoteFile(f["name"], f["download_url"], f.get("size")) for f in files]
