"""The Image Data Resource: its JSON API objects, ``imgData``, map annotations and OME-Zarr exports.

>>> im = image(6001247)
>>> im.name, im.img_data["size"], im.map_annotations()
>>> im.to_dask(level=0)
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from ._endpoints import endpoint, to_http_url
from ._http import Client, MalformedResponseError, NotFoundError, shared_client
from .omezarr import Image as OMEZarrImage
from .omezarr import open_ome_zarr

PAGE_SIZE = 500  # IDR's ``maxLimit``
#: IDR's published catalogue of its OME-Zarr exports (github.com/IDR/ome-ngff-samples); a path or
#: URL in BIA_BINDER_IDR_CATALOGUE replaces it (a mirror, or a local copy for offline use)
CATALOGUE_URL = "https://raw.githubusercontent.com/IDR/ome-ngff-samples/main/_data/table.csv"


class API:
    def __init__(self, url: str | None = None, client: Client | None = None) -> None:
        self.base = endpoint("BIA_BINDER_IDR_URL", url)
        self.client = client or shared_client()

    def object(self, kind: str, obj_id: int) -> dict[str, Any]:
        """One object from ``/api/v0/m/{kind}/{id}/`` (the API wraps it in ``data``)."""
        label = f"IDR {kind[:-1]} {obj_id}"
        answer = self.client.get_json(f"{self.base}/api/v0/m/{kind}/{obj_id}/", what=label)
        if not isinstance(answer, dict) or not isinstance(answer.get("data"), dict):
            raise MalformedResponseError(f"{label}: the answer has no 'data' object")
        return answer["data"]

    def pages(self, path: str, what: str, page_size: int = PAGE_SIZE) -> Iterator[dict[str, Any]]:
        """Every item of a list endpoint, following ``meta.totalCount`` with ``limit``/``offset``."""
        offset = 0
        while True:
            answer = self.client.get_json(
                f"{self.base}/api/v0/m/{path}", what=what, params={"limit": page_size, "offset": offset}
            )
            try:
                items, total = answer["data"], int(answer["meta"]["totalCount"])
            except (KeyError, TypeError, ValueError):
                raise MalformedResponseError(f"{what}: the answer lacks 'data' or 'meta.totalCount'") from None
            yield from items
            offset += len(items)
            if not items or offset >= total:
                return


class Object:
    """An IDR object: ``id``, ``name`` and the JSON-LD-ish dict the API returns."""

    kind = ""
    children_kind = ""

    def __init__(self, json: dict[str, Any], api: API) -> None:
        self.json, self.api = json, api

    def __repr__(self) -> str:
        return f"<IDR {self.kind[:-1]} {self.id} {self.name!r}>"

    @property
    def id(self) -> int:
        return int(self.json["@id"])

    @property
    def name(self) -> str:
        return str(self.json.get("Name", ""))

    def _children(self) -> Iterator[dict[str, Any]]:
        return self.api.pages(
            f"{self.kind}/{self.id}/{self.children_kind}/", what=f"{self.children_kind} of IDR {self.kind[:-1]} {self.id}"
        )


class Image(Object):
    kind = "images"

    @cached_property
    def img_data(self) -> dict[str, Any]:
        """The webclient's ``imgData``: sizes, pixel sizes, channels with colours and windows."""
        answer = self.api.client.get_json(f"{self.api.base}/webclient/imgData/{self.id}/", what=f"IDR imgData {self.id}")
        if not isinstance(answer, dict) or "size" not in answer:
            raise MalformedResponseError(f"IDR imgData {self.id}: no 'size' in the answer")
        return answer

    def map_annotations(self) -> list[dict[str, Any]]:
        """Key-value annotations: dicts with ``ns`` and ``values`` (a list of ``[key, value]``)."""
        answer = self.api.client.get_json(
            f"{self.api.base}/webclient/api/annotations/",
            what=f"IDR annotations of image {self.id}",
            params={"type": "map", "image": self.id},
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("annotations"), list):
            raise MalformedResponseError(f"IDR annotations of image {self.id}: no 'annotations' list")
        return answer["annotations"]

    def key_values(self) -> dict[str, list[str]]:
        """All map annotations merged: key -> values (a key such as 'Gene Symbol' may repeat)."""
        merged: dict[str, list[str]] = {}
        for annotation in self.map_annotations():
            for key, value in annotation.get("values", []):
                merged.setdefault(key, []).append(value)
        return merged

    @property
    def zarr_url(self) -> str:
        """The image's OME-Zarr export (from IDR's catalogue), on the configured S3 endpoint."""
        url = ome_zarr_exports().get(self.id)
        if url is None:
            raise NotFoundError(
                f"IDR image {self.id} has no OME-Zarr export in IDR's catalogue; "
                "pass its URL to bia_binder.data.open_ome_zarr instead"
            )
        return to_http_url(url)

    @cached_property
    def _opened(self) -> OMEZarrImage:
        opened = open_ome_zarr(self.zarr_url)
        if not isinstance(opened, OMEZarrImage):
            raise MalformedResponseError(f"IDR image {self.id}: {self.zarr_url} is a plate or well, not an image")
        return opened

    def open(self) -> OMEZarrImage:
        return self._opened

    def to_dask(self, level: int = 0) -> da.Array:
        return self._opened.levels[level]

    def thumbnail(self, max_size: int = 256) -> np.ndarray:
        return self._opened.thumbnail(max_size)


class Dataset(Object):
    kind, children_kind = "datasets", "images"

    def images(self) -> Iterator[Image]:
        return (Image(i, self.api) for i in self._children())


class Project(Object):
    kind, children_kind = "projects", "datasets"

    def datasets(self) -> Iterator[Dataset]:
        return (Dataset(d, self.api) for d in self._children())


class Well(Object):
    kind = "wells"

    def images(self) -> list[Image]:
        """One image per field (the API embeds them in ``WellSamples``)."""
        return [Image(sample["Image"], self.api) for sample in self.json.get("WellSamples", []) if "Image" in sample]


class Plate(Object):
    kind, children_kind = "plates", "wells"

    def wells(self) -> Iterator[Well]:
        return (Well(w, self.api) for w in self._children())


class Screen(Object):
    kind, children_kind = "screens", "plates"

    def plates(self) -> Iterator[Plate]:
        return (Plate(p, self.api) for p in self._children())


def _get(cls: type[Object], obj_id: int | str, url: str | None, client: Client | None = None) -> Any:
    try:
        number = int(obj_id)
    except (TypeError, ValueError):
        raise ValueError(f"IDR {cls.kind[:-1]} ids are numbers, not {obj_id!r}") from None
    api = API(url, client)
    return cls(api.object(cls.kind, number), api)


def image(image_id: int | str, *, url: str | None = None, client: Client | None = None) -> Image:
    """An IDR image by id; ``url`` (or ``BIA_BINDER_IDR_URL``) overrides the public IDR."""
    return _get(Image, image_id, url, client)


def dataset(dataset_id: int | str, *, url: str | None = None, client: Client | None = None) -> Dataset:
    return _get(Dataset, dataset_id, url, client)


def project(project_id: int | str, *, url: str | None = None, client: Client | None = None) -> Project:
    return _get(Project, project_id, url, client)


def screen(screen_id: int | str, *, url: str | None = None, client: Client | None = None) -> Screen:
    return _get(Screen, screen_id, url, client)


def plate(plate_id: int | str, *, url: str | None = None, client: Client | None = None) -> Plate:
    return _get(Plate, plate_id, url, client)


def well(well_id: int | str, *, url: str | None = None, client: Client | None = None) -> Well:
    return _get(Well, well_id, url, client)


def projects(*, url: str | None = None, client: Client | None = None) -> Iterator[Project]:
    api = API(url, client)
    return (Project(p, api) for p in api.pages("projects/", what="IDR projects"))


def screens(*, url: str | None = None, client: Client | None = None) -> Iterator[Screen]:
    api = API(url, client)
    return (Screen(s, api) for s in api.pages("screens/", what="IDR screens"))


def ome_zarr_exports() -> dict[int, str]:
    """Image id -> URL of its newest OME-Zarr export (a plate's entry points at its first field)."""
    return _exports_from(os.environ.get("BIA_BINDER_IDR_CATALOGUE") or CATALOGUE_URL)


@cache
def _exports_from(source: str) -> dict[int, str]:
    newest: dict[int, tuple[tuple[int, ...], str]] = {}
    for row in csv.DictReader(io.StringIO(_read_catalogue(source))):
        image_id = row.get("Representative Image ID", "").strip()
        if not image_id.isdigit():
            continue
        version = tuple(int(p) for p in row["OME-NGFF version"].split("."))
        url = (row.get("Thumbnail") or "").strip() or row["File Path"].strip()
        if int(image_id) not in newest or version > newest[int(image_id)][0]:
            newest[int(image_id)] = (version, url.rstrip("/"))
    return {image_id: url for image_id, (_, url) in newest.items()}


def _read_catalogue(source: str) -> str:
    if source.startswith(("http://", "https://")):
        return shared_client().get(source, what="IDR's OME-Zarr catalogue").text
    return Path(source).read_text(encoding="utf-8")


__all__ = [
    "Dataset",
    "Image",
    "Plate",
    "Project",
    "Screen",
    "Well",
    "dataset",
    "image",
    "ome_zarr_exports",
    "plate",
    "project",
    "projects",
    "screen",
    "screens",
    "well",
]
