"""The BioImage Archive's integrator API (v2): studies, datasets, images, representations, files.

>>> s = study("S-BIAD609")
>>> image = next(s.images())
>>> image.to_dask(level=0), image.thumbnail()
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cached_property
from typing import Any

import dask.array as da
import numpy as np

from ._endpoints import endpoint, to_http_url
from ._http import Client, MalformedResponseError, NotFoundError, shared_client
from .omezarr import Image as OMEZarrImage
from .omezarr import open_ome_zarr

PAGE_SIZE = 100
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


class API:
    """Paths and paging of the v2 API."""

    def __init__(self, url: str | None = None, client: Client | None = None) -> None:
        self.base = endpoint("BIA_BINDER_BIA_API_URL", url)
        self.client = client or shared_client()

    def get(self, model: str, uuid: str) -> dict[str, Any]:
        found = self.client.get_json(f"{self.base}/v2/{model}/{uuid}", what=f"BIA {model} {uuid}")
        if not isinstance(found, dict) or "uuid" not in found:
            raise MalformedResponseError(f"BIA {model} {uuid}: the answer is not a {model} object")
        return found

    def children(self, model: str, uuid: str, child: str, page_size: int = PAGE_SIZE) -> Iterator[dict[str, Any]]:
        """Objects linking to ``model/uuid``, paged by the last uuid seen (``start_from_uuid``)."""
        params: dict[str, Any] = {"page_size": page_size}
        while True:
            page = self.client.get_json(
                f"{self.base}/v2/{model}/{uuid}/{child}", what=f"BIA {child}s of {model} {uuid}", params=params
            )
            if not isinstance(page, list):
                raise MalformedResponseError(f"BIA {child}s of {model} {uuid}: expected a JSON list")
            for item in page:
                if item.get("uuid") != params.get("start_from_uuid"):  # tolerate an inclusive cursor
                    yield item
            if len(page) < page_size:
                return
            params["start_from_uuid"] = page[-1]["uuid"]


class Record:
    """An API object: its JSON plus typed accessors for what notebooks use."""

    model = ""

    def __init__(self, json: dict[str, Any], api: API) -> None:
        self.json, self.api = json, api

    def __repr__(self) -> str:
        title = self.json.get("title") or self.json.get("accession_id") or ""
        return f"<BIA {self.model} {self.uuid} {title}>".replace("  ", " ")

    @property
    def uuid(self) -> str:
        return str(self.json["uuid"])

    def additional(self, name: str) -> Any:
        """The value of an ``additional_metadata`` entry, or None."""
        for entry in self.json.get("additional_metadata", []):
            if entry.get("name") == name:
                return entry.get("value")
        return None


class FileReference(Record):
    model = "file_reference"

    @property
    def path(self) -> str:
        return str(self.json.get("file_path", ""))

    @property
    def uri(self) -> str:
        return to_http_url(str(self.json.get("uri", "")))

    @property
    def size(self) -> int | None:
        return self.json.get("size_in_bytes")


class Representation(Record):
    model = "image_representation"

    @property
    def image_format(self) -> str:
        return str(self.json.get("image_format", ""))

    @property
    def urls(self) -> list[str]:
        """Where the representation is, on the configured S3 endpoint where it is in EBI's S3."""
        return [to_http_url(uri) for uri in self.json.get("file_uri", [])]

    @property
    def is_ome_zarr(self) -> bool:
        return self.image_format == ".ome.zarr" or any(".zarr" in url for url in self.urls)


class Image(Record):
    model = "image"

    @cached_property
    def representations(self) -> list[Representation]:
        return [Representation(r, self.api) for r in self.api.children("image", self.uuid, "image_representation")]

    @property
    def ome_zarr(self) -> Representation:
        """The OME-Zarr representation (the one recommended for viewing, else the first)."""
        recommended = (self.additional("recommended_vizarr_representation") or {}).get(
            "recommended_vizarr_representation"
        )
        zarrs = [r for r in self.representations if r.is_ome_zarr and r.urls]
        for representation in zarrs:
            if representation.uuid == recommended:
                return representation
        if not zarrs:
            raise NotFoundError(f"BIA image {self.uuid} has no OME-Zarr representation yet (only its original files)")
        return zarrs[0]

    def open(self, cache_dir: str | None = None) -> OMEZarrImage:
        opened = open_ome_zarr(self.ome_zarr.urls[0], cache_dir=cache_dir)
        if not isinstance(opened, OMEZarrImage):
            raise MalformedResponseError(f"BIA image {self.uuid}: {self.ome_zarr.urls[0]} is not a single image")
        return opened

    @cached_property
    def _opened(self) -> OMEZarrImage:
        return self.open()

    def to_dask(self, level: int = 0) -> da.Array:
        return self._opened.levels[level]

    def thumbnail(self, max_size: int = 256) -> np.ndarray:
        return self._opened.thumbnail(max_size)

    def file_references(self) -> list[FileReference]:
        """The submitted files this image was made from."""
        return [
            FileReference(self.api.get("file_reference", uuid), self.api)
            for uuid in self.json.get("original_file_reference_uuid", [])
        ]


class Dataset(Record):
    model = "dataset"

    @property
    def title(self) -> str:
        return str(self.json.get("title", ""))

    def images(self) -> Iterator[Image]:
        return (Image(i, self.api) for i in self.api.children("dataset", self.uuid, "image"))

    def file_references(self) -> Iterator[FileReference]:
        return (FileReference(f, self.api) for f in self.api.children("dataset", self.uuid, "file_reference"))


class Study(Record):
    model = "study"

    @property
    def accession(self) -> str:
        return str(self.json.get("accession_id", ""))

    @property
    def title(self) -> str:
        return str(self.json.get("title", ""))

    @cached_property
    def datasets(self) -> list[Dataset]:
        return [Dataset(d, self.api) for d in self.api.children("study", self.uuid, "dataset")]

    def images(self) -> Iterator[Image]:
        for dataset in self.datasets:
            yield from dataset.images()

    def file_references(self) -> Iterator[FileReference]:
        for dataset in self.datasets:
            yield from dataset.file_references()


def study(accession: str, *, url: str | None = None, client: Client | None = None) -> Study:
    """A study by accession (``S-BIAD609``) or uuid; ``url`` (or ``BIA_BINDER_BIA_API_URL``) overrides the API,
    ``client`` the shared HTTP client (its timeouts and retries)."""
    api = API(url, client)
    if _UUID.match(accession):
        return Study(api.get("study", accession), api)
    if not re.match(r"^S-[A-Z]+[A-Z0-9]+$", accession):
        raise ValueError(f"{accession!r} is neither a BIA accession (like S-BIAD609) nor a study uuid")
    found = api.client.get_json(
        f"{api.base}/v2/search/study/accession", what=f"BIA study {accession}", params={"accession_id": accession}
    )
    if isinstance(found, list):
        found = found[0] if found else None
    if not found:
        raise NotFoundError(f"BIA study {accession} not found; check the accession (is it released?)")
    if not isinstance(found, dict) or "uuid" not in found:
        raise MalformedResponseError(f"BIA study {accession}: the search answer is not a study object")
    return Study(found, api)


__all__ = ["Dataset", "FileReference", "Image", "Representation", "Study", "study"]
