"""Finding a study from the home page: search over BIA studies, and their thumbnails through us.

    GET /api/studies/search?q=<text>[&page=N]   BIA's /search/fts (falling back to BioStudies' search)
    GET /api/studies/thumbnail/<accession>      the study's example image (our pages load images from us only)

Results carry title, accession, organism, imaging method, licence, a thumbnail URL and the launch
link. The thumbnail proxy fetches only URLs on the configured S3 endpoint (where the archive keeps
its images), only images, at most ``max_thumbnail_bytes``: it cannot be made to fetch anything else.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

import httpx
from tornado import web
from traitlets import Int, Unicode
from traitlets.config import LoggingConfigurable

from ..studies.accessions import BIA_ACCESSION
from .handlers import BaseHandler

MAX_QUERY = 200


class StudySearch(LoggingConfigurable):
    bia_search_url = Unicode(
        "https://beta.bioimagearchive.org/search/search/fts",
        config=True,
        help="BIA's full-text study search (answers Elasticsearch-style hits, facets, pagination).",
    )
    biostudies_url = Unicode("", config=True, help="BioStudies, for the fallback search (empty: bia_binder.data's default).")
    biostudies_collection = Unicode("BioImages", config=True, help="BioStudies collection the fallback searches ('' for all).")
    page_size = Int(10, config=True, help="Results per page.")
    timeout = Int(10, config=True, help="Seconds a search request may take.")
    max_thumbnail_bytes = Int(2 * 1024**2, config=True, help="Largest thumbnail the proxy relays.")
    s3_endpoint = Unicode("", config=True, help="Where thumbnails may come from (empty: bia_binder.data's S3 endpoint).")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: accession -> thumbnail URL, from recent searches (bounded)
        self.thumbnails: OrderedDict[str, str] = OrderedDict()

    def remember(self, accession: str, url: str) -> None:
        self.thumbnails[accession] = url
        self.thumbnails.move_to_end(accession)
        while len(self.thumbnails) > 2000:
            self.thumbnails.popitem(last=False)

    async def search(self, text: str, page: int, base_url: str) -> dict[str, Any]:
        try:
            return await self.search_bia(text, page, base_url)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            self.log.warning("BIA search failed (%s); falling back to BioStudies", e)
        from ..data._http import DataAccessError  # the data stack only once a search needs it

        try:
            return await asyncio.to_thread(self.search_biostudies, text, page, base_url)
        except DataAccessError as e:
            raise web.HTTPError(502, f"Neither BIA's nor BioStudies' search answered ({e}); try again later") from None

    async def search_bia(self, text: str, page: int, base_url: str) -> dict[str, Any]:
        params = {"query": text, "pagination.page": page, "pagination.page_size": self.page_size}
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=True) as client:
            response = await client.get(self.bia_search_url, params=params)
        response.raise_for_status()
        body = response.json()
        hits = body["hits"]
        listed = hits["hits"] if isinstance(hits, dict) else hits
        total = hits.get("total", {}).get("value", len(listed)) if isinstance(hits, dict) else len(listed)
        results = [self.bia_result(hit.get("_source", hit), base_url) for hit in listed]
        return {"source": "bia", "total": int(total), "page": page, "results": [r for r in results if r]}

    def bia_result(self, doc: dict[str, Any], base_url: str) -> dict[str, Any] | None:
        accession = str(doc.get("accession_id") or doc.get("accession") or "")
        if not BIA_ACCESSION.fullmatch(accession):
            return None  # only what /v2/bia can launch
        datasets = [d for d in doc.get("dataset") or [] if isinstance(d, dict)]
        organisms = sorted({
            str(o.get("scientific_name") or o.get("common_name"))
            for d in datasets for e in d.get("biological_entity") or [] for o in e.get("organism_classification") or []
            if isinstance(o, dict) and (o.get("scientific_name") or o.get("common_name"))
        })
        methods = sorted({
            str(m) for d in datasets for p in d.get("acquisition_process") or [] for m in p.get("imaging_method_name") or []
        })
        example = next((u for d in datasets for u in d.get("example_image_uri") or []), "")
        if example:
            from ..data._endpoints import to_http_url

            self.remember(accession, to_http_url(example))
        return {
            "accession": accession,
            "title": str(doc.get("title") or ""),
            "organism": ", ".join(organisms),
            "imaging_method": ", ".join(methods),
            "licence": str(doc.get("licence") or ""),
            "release_date": str(doc.get("release_date") or ""),
            "thumbnail": f"{base_url}api/studies/thumbnail/{accession}" if example else "",
            "launch": f"{base_url}v2/bia/{accession}",
        }

    def search_biostudies(self, text: str, page: int, base_url: str) -> dict[str, Any]:
        from ..data import biostudies

        hits = list(biostudies.search(text, url=self.biostudies_url or None, collection=self.biostudies_collection or None,
                                      page_size=self.page_size, limit=self.page_size * page))[(page - 1) * self.page_size :]
        results = [
            {"accession": h["accession"], "title": str(h.get("title") or ""), "organism": "", "imaging_method": "",
             "licence": "", "release_date": str(h.get("release_date") or ""), "thumbnail": "",
             "launch": f"{base_url}v2/bia/{h['accession']}"}
            for h in hits if BIA_ACCESSION.fullmatch(str(h.get("accession", "")))
        ]
        return {"source": "biostudies", "total": len(results), "page": page, "results": results}

    def thumbnail_allowed(self, url: str) -> bool:
        from ..data._endpoints import s3_endpoint

        allowed = urlsplit(self.s3_endpoint or s3_endpoint())
        parts = urlsplit(url)
        return (parts.scheme, parts.netloc) == (allowed.scheme, allowed.netloc) and not re.search(r"[\s\\]", url)

    async def thumbnail(self, accession: str) -> tuple[bytes, str]:
        url = self.thumbnails.get(accession)
        if url is None:
            raise web.HTTPError(404, f"No thumbnail known for {accession}: search for it first")
        if not self.thumbnail_allowed(url):
            raise web.HTTPError(404, f"The thumbnail of {accession} is not on the archive's image store")
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
            async with client.stream("GET", url) as response:
                kind = response.headers.get("content-type", "").split(";")[0].strip()
                if response.status_code != 200 or kind not in ("image/png", "image/jpeg", "image/webp", "image/gif"):
                    raise web.HTTPError(502, f"The archive has no image at the thumbnail address of {accession}")
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self.max_thumbnail_bytes:
                        raise web.HTTPError(502, f"The thumbnail of {accession} is too large")
        return body, kind


def searcher(handler: BaseHandler) -> StudySearch:
    service = handler.service
    if not hasattr(service, "_study_search"):
        service._study_search = StudySearch(parent=service)
    return service._study_search


class StudySearchHandler(BaseHandler):
    async def get(self) -> None:
        text = self.get_argument("q", "").strip()
        if not text or len(text) > MAX_QUERY or any(ord(c) < 0x20 for c in text):
            raise web.HTTPError(400, f"Give a search text of 1 to {MAX_QUERY} characters: ?q=brain")
        try:
            page = int(self.get_argument("page", "1"))
        except ValueError:
            raise web.HTTPError(400, "page must be a number") from None
        if not 1 <= page <= 1000:
            raise web.HTTPError(400, "page must be between 1 and 1000")
        self.finish(await searcher(self).search(text, page, self.base_url))


class StudyThumbnailHandler(BaseHandler):
    async def get(self, accession: str) -> None:
        if not BIA_ACCESSION.fullmatch(accession):
            raise web.HTTPError(400, f"{accession[:40]!r} is not a BIA accession such as S-BIAD609")
        body, kind = await searcher(self).thumbnail(accession)
        self.set_header("Content-Type", kind)
        self.set_header("Cache-Control", "public, max-age=3600")
        self.finish(body)


def study_routes(prefix: str) -> list[tuple]:
    return [
        (rf"{prefix}/api/studies/search/?", StudySearchHandler),
        (rf"{prefix}/api/studies/thumbnail/([^/]+)", StudyThumbnailHandler),
    ]
