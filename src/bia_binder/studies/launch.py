"""The launch pipeline's study branch: accession → snapshot → notebook → the study environment → a session.

    parse and validate (400 before any request)
    a pinned link whose files are stored: reuse them as they are (no archive request)
    otherwise: snapshot from the archive (404/403/502/504), pin, notebook, store
    the study environment: cached (the usual case: it is prebuilt) or built once from its lock
    → the pipeline starts the session with ``study=<store entry>``; the spawner copies its files in
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from ..builder.base import Environment
from ..events import FETCHING, LaunchError, event
from ..providers.archive import ArchiveProvider
from ..providers.base import ResolvedRepo
from .accessions import Pin, StudySpec, image_parameter
from .environment import StudyEnvironment
from .notebook import DEFAULT_MODEL_WEIGHTS, TEMPLATE_VERSION, notebook_bytes, notebook_name
from .snapshot import canonical, first_ome_zarr, metadata_hash
from .store import StudyStore, entry_name

Emit = Callable[[dict[str, Any]], Awaitable[None]]


def study_files(spec: StudySpec, pin: Pin, snapshot: dict[str, Any], permanent_link: str, image: str = "") -> dict[str, bytes]:
    """``explore-<name>.ipynb`` and ``study.json`` of a study at ``pin``."""
    parameters = {
        "source": spec.source,
        "accession": spec.path,
        "study_version": pin.version,
        "metadata_hash": metadata_hash(snapshot),
        "image": image,
        "biostudies_accession": snapshot["accession"] if spec.source != "idr" else "",
        "max_table_rows": 50,
        "max_thumbnails": 6,
        "viewer_max_size": 2048,
        "model_weights": DEFAULT_MODEL_WEIGHTS,
        "permanent_link": permanent_link,
        "template_version": TEMPLATE_VERSION,
        "environment_lock": pin.lock,
    }
    return {notebook_name(spec.name): notebook_bytes(snapshot, parameters), "study.json": canonical(snapshot)}


@dataclass
class PreparedStudy:
    resolved: ResolvedRepo
    entry: str  # the store entry the spawner copies into the session
    notebook: str
    title: str
    licence: str


async def prepare(
    provider: ArchiveProvider, store: StudyStore, image: str, launch_host: str, emit: Emit
) -> PreparedStudy:
    """The study's files in the store, and what the launch pipeline needs to start its session."""
    spec = provider.study_spec()
    image = image_parameter(image)
    if spec.pin is not None:
        stored = store.lookup(entry_name(spec.name, str(spec.pin), image))
        if stored is not None:  # a permanent link: exactly the files it made, whatever the archive says now
            snapshot = json.loads((stored / "study.json").read_text())
            await emit(event(FETCHING, f"Reusing {spec.path} at {spec.pin} (permanent link)\n", **summary(snapshot)))
            return PreparedStudy(provider.resolved(spec, spec.pin, snapshot), stored.name, notebook_name(spec.name),
                                 snapshot["title"], snapshot["licence"])
    await emit(event(FETCHING, f"Reading {spec.path} from the {provider.archive}...\n"))
    resolved = await provider.resolve()
    snapshot = provider.last_snapshot
    pin = Pin.parse(resolved.ref)
    if image and first_ome_zarr(snapshot, image) is None:
        raise LaunchError(f"image {image} is not among the images listed for {spec.path}: leave out image= to open "
                          "the first one", 404)
    permanent_link = f"{launch_host}v2/{provider.name}/{resolved.persistent_spec}"
    name = entry_name(spec.name, str(pin), image)
    entry = store.publish(name, study_files(spec, pin, snapshot, permanent_link, image))
    await emit(event(FETCHING, f"{snapshot['title'] or spec.path} ({snapshot['licence'] or 'licence not stated'}): "
                     f"wrote {notebook_name(spec.name)}\n", **summary(snapshot)))
    return PreparedStudy(resolved, entry.name, notebook_name(spec.name), snapshot["title"], snapshot["licence"])


def summary(snapshot: dict[str, Any]) -> dict[str, Any]:
    """What the launch page shows while the session starts (an extra field of the event)."""
    return {"study": {"accession": snapshot["accession"], "title": snapshot["title"], "licence": snapshot["licence"]}}


async def environment(service: Any, pin: Pin) -> tuple[str, Environment | None]:
    """The study environment's cache key and the environment if cached; ``pin`` names its lock.

    A permanent link made with an older lock launches only while that environment is still cached.
    """
    settings = StudyEnvironment(parent=service)
    key = settings.key(service.builder, pin.lock)
    cached = service.builder.lookup(key)
    if cached is None and pin.lock != settings.lock_hash():
        raise LaunchError(
            f"the environment of this permanent link (lock {pin.lock}) is no longer kept here; "
            "launch the study without its pin for the current environment", 410
        )
    return key, cached


def studies_dir(data_dir: str) -> Path:
    return Path(data_dir) / "studies"
