"""What the study providers (``bia``, ``idr``, ``biostudies``) share: resolve an accession to a metadata
snapshot and a permanent pin, fetch the generated notebook.

A study provider resolves like a repository provider: the moving name (``S-BIAD609``) becomes an
immutable ref, here a pin of the study's version and metadata hash, the notebook template version
and the environment lock (``v0-<meta>-t1-e<lock>``), and ``persistent_spec`` is
``<accession>/<pin>``. Metadata come through ``bia_binder.data`` with a client whose timeouts and
retries are bounded by this provider's configuration.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, Callable, ClassVar

from traitlets import Float, Int, Unicode

from ..studies import accessions
from ..studies.accessions import Pin, StudySpec
from ..studies.environment import StudyEnvironment
from .base import ProviderError, RepoProvider, ResolvedRepo, safe_slug

# bia_binder.data (zarr, dask, numpy) and the notebook template are imported where they are used: the hub
# imports every provider, and its start must not wait for the data stack (the service's start neither)
MAX_IMAGES = 24  # = bia_binder.studies.snapshot.MAX_IMAGES


def provider_error(error: Exception, what: str) -> ProviderError:
    """A data-library error as the launch's one-line reason and status (404, 403, 504, 502)."""
    from ..data._http import DataAccessError, NotFoundError
    from ..studies import snapshot as snapshots

    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, snapshots.Unreleased):
        return ProviderError(f"{message}: only released studies can be launched", 403)
    if isinstance(error, NotFoundError):
        return ProviderError(f"{what} not found: check the accession ({message})", 404)
    status = re.search(r"HTTP (\d{3})", message)
    if status and status[1] in ("401", "403"):
        return ProviderError(f"{what} is private or not released yet ({message})", 403)
    if "timed out" in message:
        return ProviderError(f"{what}: the archive did not answer in time; try again later ({message})", 504)
    if isinstance(error, DataAccessError):
        return ProviderError(f"{what}: the archive's API failed ({message}); try again later", 502)
    return ProviderError(f"{what}: unexpected answer from the archive ({message})", 502)


class ArchiveProvider(RepoProvider):
    """Base of the study providers; subclasses set ``name``, ``archive`` and the default of ``api_url``."""

    archive: ClassVar[str] = ""
    display_config: ClassVar[dict] = {}

    api_url = Unicode(
        "", config=True, help="Base URL of the archive's API (empty: bia_binder.data's default or its environment variable)."
    )
    retries = Int(2, config=True, help="Times a failed or slow metadata request is retried (with backoff) before the launch fails.")
    backoff = Float(0.5, config=True, help="Seconds before the first retry; doubled for each next one.")
    max_images = Int(MAX_IMAGES, config=True, help="Images listed in a study's snapshot and notebook table (a larger study is capped, not refused).")

    def study_spec(self) -> StudySpec:
        return accessions.parse(self.name, self.spec)

    def client(self) -> Any:
        from ..data._http import Client, HTTPSettings

        return Client(HTTPSettings(timeout=float(self.timeout), retries=self.retries, backoff=self.backoff, max_connections=16))

    async def snapshot(self, spec: StudySpec) -> dict[str, Any]:
        from ..data._http import DataAccessError
        from ..studies import snapshot as snapshots

        limits = snapshots.Limits(max_images=self.max_images, images_per_dataset=min(self.max_images, snapshots.IMAGES_PER_DATASET))
        client = self.client()
        try:
            return await asyncio.to_thread(snapshots.take, spec, client, self.api_url or None, limits)
        except (DataAccessError, snapshots.Unreleased, ValueError, KeyError, TypeError) as e:
            raise provider_error(e, f"{self.archive} study {spec.path}") from None
        finally:
            client.close()

    def lock_hash(self) -> str:
        return StudyEnvironment(parent=self).lock_hash()

    def pin_for(self, snapshot: dict[str, Any]) -> Pin:
        from ..studies import snapshot as snapshots
        from ..studies.notebook import TEMPLATE_VERSION

        return Pin(int(snapshot["version"]), snapshots.metadata_hash(snapshot)[:12], TEMPLATE_VERSION, self.lock_hash())

    def resolved(self, spec: StudySpec, pin: Pin, snapshot: dict[str, Any]) -> ResolvedRepo:
        links = snapshot.get("links") or {}
        page = next(iter(links.values()), "")
        return ResolvedRepo(
            provider=self.name,
            spec=self.spec,
            repo_url=page,
            ref=str(pin),
            ref_url=page,
            persistent_spec=spec.persistent(pin),
            slug=safe_slug(spec.name),
        )

    async def resolve(self) -> ResolvedRepo:
        spec = self.study_spec()
        snapshot = await self.snapshot(spec)
        pin = self.pin_for(snapshot)
        if spec.pin is not None and spec.pin != pin:
            raise ProviderError(
                f"{spec.path} at {spec.pin} is not available any more (the archive now gives {pin}); "
                f"launch {self.name}/{spec.path} for the current version", 404
            )
        self.last_snapshot = snapshot
        return self.resolved(spec, pin, snapshot)

    async def fetch(self, resolved: ResolvedRepo, dest: Path, log: Callable[[str], None]) -> None:
        """The generated notebook and ``study.json`` (``bia-binder build``/persistent binders)."""
        from ..studies.launch import study_files

        spec = self.study_spec()
        snapshot = getattr(self, "last_snapshot", None) or await self.snapshot(spec)
        pin = self.pin_for(snapshot)
        if str(pin) != resolved.ref:
            raise ProviderError(f"{spec.path} changed while it was launched; launch it again", 502)
        dest.mkdir(parents=True, exist_ok=True)
        for name, content in study_files(spec, pin, snapshot, permanent_link=f"v2/{self.name}/{resolved.persistent_spec}").items():
            (dest / name).write_bytes(content)
            log(f"Wrote {name}\n")
