"""A study's metadata snapshot: what the archive says about it now, in one JSON object.

The snapshot is what the starter notebook is made from and what goes into the session as
``study.json``. It holds no time stamp or other moving part, so its hash changes exactly when the
archive's metadata change: that hash is part of a permanent link.

Everything is fetched through ``bia_binder.data`` (the same clients notebooks use), with a client
whose timeouts and retries the provider bounds. Listings are capped, never fatal: a study with
100 000 images gets a snapshot of its first few, marked ``truncated``.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from itertools import islice
from typing import Any

from ..data import bia, biostudies, idr
from ..data._endpoints import to_http_url
from ..data._http import Client
from ..data.omezarr import Image as OMEZarrImage
from .accessions import StudySpec

#: images per dataset the snapshot lists, and in total
IMAGES_PER_DATASET = 12
MAX_IMAGES = 24
MAX_DATASETS = 10
MAX_FILES = 50
MAX_CONTAINERS = 5  # IDR plates of a screen, datasets of a project...
#: requests for image details in flight at once (each image has its own representation listing)
CONCURRENCY = 8


class Unreleased(Exception):
    """The study exists but is not public (yet)."""


@dataclass(frozen=True)
class Limits:
    images_per_dataset: int = IMAGES_PER_DATASET
    max_images: int = MAX_IMAGES
    max_datasets: int = MAX_DATASETS
    max_files: int = MAX_FILES


def canonical(snapshot: dict[str, Any]) -> bytes:
    """The snapshot's bytes as hashed and written to ``study.json`` (sorted keys: a stable order)."""
    return (json.dumps(snapshot, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


def metadata_hash(snapshot: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(snapshot)).hexdigest()


def first(items, n: int) -> tuple[list, bool]:
    """The first ``n`` items of an iterator (fetching only as many pages as that takes) and whether there were more."""
    taken = list(islice(items, n + 1))
    return taken[:n], len(taken) > n


# --- BioImage Archive -----------------------------------------------------------------------------


def bia_snapshot(spec: StudySpec, client: Client, url: str | None, limits: Limits = Limits()) -> dict[str, Any]:
    study = bia.study(spec.identifier, url=url, client=client)
    meta = study.json
    released = str(meta.get("release_date") or "")
    if released and released[:10] > date.today().isoformat():
        raise Unreleased(f"BIA study {spec.identifier} is not released until {released[:10]}")
    datasets, more_datasets = first(iter(study.api.children("study", study.uuid, "dataset")), limits.max_datasets)
    listed: list[dict[str, Any]] = []
    budget = limits.max_images
    for dataset_json in datasets:
        dataset = bia.Dataset(dataset_json, study.api)
        wanted = min(limits.images_per_dataset, budget)
        images, more = first(dataset.images(), wanted) if wanted > 0 else ([], True)
        budget -= len(images)
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            entries = list(pool.map(bia_image_entry, images))
        files: list[dict[str, Any]] = []
        files_truncated = False
        if not any(e["ome_zarr_url"] for e in entries):
            references, files_truncated = first(dataset.file_references(), limits.max_files)
            files = [{"path": f.path, "size": f.size, "url": f.uri} for f in references]
        listed.append(
            {
                "id": dataset.uuid,
                "title": dataset.title,
                "description": str(dataset_json.get("description") or ""),
                "example_image_urls": [to_http_url(u) for u in dataset_json.get("example_image_uri") or []],
                "images": entries,
                "images_truncated": more,
                "files": files,
                "files_truncated": files_truncated,
            }
        )
    accession = study.accession
    return {
        "source": "bia",
        "kind": "study",
        "accession": accession,
        "id": study.uuid,
        "version": int(meta.get("version") or 0),
        "title": study.title,
        "description": str(meta.get("description") or ""),
        "authors": [str(a.get("display_name", "")) for a in meta.get("author") or [] if isinstance(a, dict)],
        "licence": str(meta.get("licence") or ""),
        "doi": bia_doi(meta),
        "release_date": released,
        "keywords": [str(k) for k in meta.get("keyword") or []],
        "links": {
            "BioImage Archive": f"https://www.ebi.ac.uk/bioimage-archive/galleries/{accession}.html",
            "BioStudies": f"https://www.ebi.ac.uk/biostudies/studies/{accession}",
        },
        "datasets": listed,
        "datasets_truncated": more_datasets,
    }


def bia_doi(meta: dict[str, Any]) -> str:
    for publication in meta.get("related_publication") or []:
        if isinstance(publication, dict) and publication.get("doi"):
            return str(publication["doi"])
    return ""


def bia_image_entry(image: bia.Image) -> dict[str, Any]:
    representations = image.representations
    zarr = next((r for r in representations if r.is_ome_zarr and r.urls), None)
    try:
        zarr = image.ome_zarr  # the recommended one where the archive says which
    except bia.NotFoundError:
        pass
    described = zarr or (representations[0] if representations else None)
    dims = {}
    if described is not None:
        dims = {axis: described.json.get(f"size_{axis}") for axis in "tczyx" if described.json.get(f"size_{axis}")}
    thumbnails = image.additional("image_thumbnail_uri") or {}
    thumbnail = ""
    if isinstance(thumbnails, dict) and thumbnails:
        smallest = min(thumbnails.values(), key=lambda t: int(t.get("size") or 0) if isinstance(t, dict) else 0)
        thumbnail = to_http_url(str(smallest.get("uri", ""))) if isinstance(smallest, dict) else ""
    pattern = (image.additional("file_pattern") or {}).get("file_pattern", "")
    return {
        "id": image.uuid,
        "name": str(pattern).rsplit("/", 1)[-1] or image.uuid,
        "formats": sorted({r.image_format for r in representations if r.image_format}),
        "dimensions": dims,
        "size_bytes": max((int(r.json.get("total_size_in_bytes") or 0) for r in representations), default=0) or None,
        "thumbnail_url": thumbnail,
        "ome_zarr_url": zarr.urls[0] if zarr is not None else "",
    }


# --- IDR ------------------------------------------------------------------------------------------

IDR_WEB = "https://idr.openmicroscopy.org/webclient/?show"


def idr_image_entry(image: idr.Image, dataset: str = "") -> dict[str, Any]:
    pixels = image.json.get("Pixels") or {}
    dims = {axis.lower(): pixels.get(f"Size{axis}") for axis in "TCZYX" if pixels.get(f"Size{axis}")}
    try:
        zarr = image.zarr_url
    except idr.NotFoundError:
        zarr = ""
    return {
        "id": str(image.id),
        "name": image.name,
        "dataset": dataset,
        "formats": [".ome.zarr"] if zarr else [],
        "dimensions": dims,
        "size_bytes": None,
        "thumbnail_url": "",  # IDR's render service is not part of its JSON API: the notebook uses the pyramid
        "ome_zarr_url": zarr,
    }


def idr_containers(spec: StudySpec, client: Client, url: str | None, limits: Limits) -> tuple[str, list[tuple[str, list]], bool]:
    """The study's title and its groups of images: (group name, images) pairs, and whether any listing was capped."""
    kind, ident = spec.kind, spec.identifier
    if kind == "image":
        image = idr.image(ident, url=url, client=client)
        return image.name, [("", [image])], False
    if kind == "dataset":
        dataset = idr.dataset(ident, url=url, client=client)
        images, more = first(dataset.images(), limits.images_per_dataset)
        return dataset.name, [(dataset.name, images)], more
    if kind == "plate":
        plate = idr.plate(ident, url=url, client=client)
        return plate.name, *plate_images(plate, limits)
    if kind == "project":
        return idr_project_groups(idr.project(ident, url=url, client=client), limits)
    if kind == "screen":
        return idr_screen_groups(idr.screen(ident, url=url, client=client), limits)
    return idr_study_groups(spec.identifier, client, url, limits)


def plate_images(plate: idr.Plate, limits: Limits) -> tuple[list[tuple[str, list]], bool]:
    wells, more = first(plate.wells(), limits.images_per_dataset)
    return [(plate.name, [image for well in wells for image in well.images()[:1]])], more


def idr_project_groups(project: idr.Project, limits: Limits) -> tuple[str, list[tuple[str, list]], bool]:
    datasets, more = first(project.datasets(), MAX_CONTAINERS)
    groups = []
    for dataset in datasets:
        images, capped = first(dataset.images(), limits.images_per_dataset)
        groups.append((dataset.name, images))
        more = more or capped
    return project.name, groups, more


def idr_screen_groups(screen: idr.Screen, limits: Limits) -> tuple[str, list[tuple[str, list]], bool]:
    plates, more = first(screen.plates(), MAX_CONTAINERS)
    groups = []
    for plate in plates:
        plate_groups, capped = plate_images(plate, limits)
        groups += plate_groups
        more = more or capped
    return screen.name, groups, more


def idr_study_groups(name: str, client: Client, url: str | None, limits: Limits) -> tuple[str, list[tuple[str, list]], bool]:
    """``idr0062A``: the projects and screens named ``idr0062-...`` (``.../experimentA``, ``.../screenA``)."""
    number, letter = name[:7], name[7:]

    def matches(object_name: str) -> bool:
        if not object_name.startswith(f"{number}-"):
            return False
        return not letter or object_name.endswith((f"experiment{letter}", f"screen{letter}"))

    found = [p for p in idr.projects(url=url, client=client) if matches(p.name)]
    found += [s for s in idr.screens(url=url, client=client) if matches(s.name)]
    if not found:
        raise idr.NotFoundError(f"IDR study {name} not found: no project or screen is named {number}-...")
    title, groups, more = "", [], False
    for container in found[:MAX_CONTAINERS]:
        make = idr_project_groups if isinstance(container, idr.Project) else idr_screen_groups
        container_title, container_groups, capped = make(container, limits)
        title = title or container_title
        groups += container_groups
        more = more or capped
    return title, groups, more or len(found) > MAX_CONTAINERS


def idr_snapshot(spec: StudySpec, client: Client, url: str | None, limits: Limits = Limits()) -> dict[str, Any]:
    title, groups, truncated = idr_containers(spec, client, url, limits)
    budget = limits.max_images
    datasets = []
    for group_name, images in groups[: limits.max_datasets]:
        images = images[: max(budget, 0)]
        budget -= len(images)
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            entries = list(pool.map(lambda im: idr_image_entry(im, group_name), images))
        datasets.append({"id": group_name, "title": group_name, "description": "", "example_image_urls": [],
                         "images": entries, "images_truncated": truncated, "files": [], "files_truncated": False})
    web_kind = "image" if spec.kind == "study" else spec.kind
    link = f"{IDR_WEB}={web_kind}-{spec.identifier}" if spec.kind != "study" else "https://idr.openmicroscopy.org/search/?query=Name:" + spec.identifier[:7]
    return {
        "source": "idr",
        "kind": spec.kind,
        "accession": spec.identifier if spec.kind == "study" else f"{spec.kind}/{spec.identifier}",
        "id": spec.identifier,
        "version": 0,  # IDR objects have no version: the metadata hash tells versions apart
        "title": title,
        "description": "",
        "authors": [],
        "licence": "",
        "doi": "",
        "release_date": "",
        "keywords": [],
        "links": {"IDR": link},
        "datasets": datasets,
        "datasets_truncated": len(groups) > limits.max_datasets,
    }


# --- BioStudies -----------------------------------------------------------------------------------


def pagetab_attributes(section: dict[str, Any]) -> dict[str, str]:
    return {a["name"]: str(a.get("value", "")) for a in section.get("attributes", []) if isinstance(a, dict) and "name" in a}


def pagetab_authors(pagetab: dict[str, Any]) -> list[str]:
    authors = []
    for sub in (pagetab.get("section") or {}).get("subsections", []):
        for item in sub if isinstance(sub, list) else [sub]:
            if isinstance(item, dict) and str(item.get("type", "")).lower() == "author":
                name = pagetab_attributes(item).get("Name")
                if name:
                    authors.append(name)
    return authors


def biostudies_snapshot(spec: StudySpec, client: Client, url: str | None, limits: Limits = Limits()) -> dict[str, Any]:
    study = biostudies.study(spec.identifier, url=url, client=client)
    pagetab = study.json
    attributes = {**pagetab_attributes(pagetab), **pagetab_attributes(pagetab.get("section") or {})}
    released = attributes.get("ReleaseDate", "")
    if released and released[:10] > date.today().isoformat():
        raise Unreleased(f"BioStudies study {spec.identifier} is not released until {released[:10]}")
    files, more = first(study.files(page_size=limits.max_files), limits.max_files)
    entries = [{"path": f.path, "size": f.size, "url": study.file_url(f.path)} for f in files if f.type == "file"]
    accession = spec.identifier
    return {
        "source": "biostudies",
        "kind": "study",
        "accession": accession,
        "id": accession,
        "version": 0,
        "title": attributes.get("Title", ""),
        "description": attributes.get("Description", ""),
        "authors": pagetab_authors(pagetab),
        "licence": attributes.get("License", attributes.get("Licence", "")),
        "doi": attributes.get("DOI", ""),
        "release_date": released,
        "keywords": [],
        "links": {"BioStudies": f"https://www.ebi.ac.uk/biostudies/studies/{accession}"},
        "datasets": [{"id": accession, "title": "Files", "description": "", "example_image_urls": [], "images": [],
                      "images_truncated": False, "files": entries, "files_truncated": more}],
        "datasets_truncated": False,
    }


SNAPSHOTS = {"bia": bia_snapshot, "idr": idr_snapshot, "biostudies": biostudies_snapshot}


def take(spec: StudySpec, client: Client, url: str | None = None, limits: Limits = Limits()) -> dict[str, Any]:
    """The snapshot of ``spec`` (blocking: call it in a thread). Raises the data library's errors or Unreleased."""
    return SNAPSHOTS[spec.source](spec, client, url, limits)


def first_ome_zarr(snapshot: dict[str, Any], image: str = "") -> dict[str, Any] | None:
    """The image entry to open first: ``image`` if given and listed, else the first with an OME-Zarr."""
    images = [i for d in snapshot["datasets"] for i in d["images"]]
    if image:
        return next((i for i in images if i["id"] == image), None)
    return next((i for i in images if i["ome_zarr_url"]), None)


__all__ = ["Limits", "OMEZarrImage", "Unreleased", "canonical", "first_ome_zarr", "metadata_hash", "take"]
