"""OME-Zarr images, labels, plates and wells (0.4 on zarr v2, 0.5 on zarr v3) as dask arrays.

``open_ome_zarr(url)`` reads only metadata; pixels are fetched when a dask array is computed,
many chunks at a time, so a whole level streams at the link's speed rather than one chunk
per round trip.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, TypeVar, overload

import dask.array as da
import numpy as np
import zarr
import zarr.api.asynchronous as zarr_async
from dask.base import tokenize
from zarr.abc.store import Store
from zarr.core.sync import sync
from zarr.errors import GroupNotFoundError, NodeTypeValidationError
from zarr.storage import LocalStore

from ._dask import level_array
from ._endpoints import to_http_url
from ._http import MalformedResponseError, NotFoundError
from ._store import HTTPStore

#: zarr's default of 10 concurrent requests per read underuses a remote link with 20+ ms latency
REMOTE_CONCURRENCY = 64
ZARR_DEFAULT_CONCURRENCY = 10
#: colours for channels whose metadata names none (red, green, blue, then the mixes)
DEFAULT_COLOURS = ("FF0000", "00FF00", "0000FF", "FFFF00", "FF00FF", "00FFFF", "FFFFFF")

if zarr.config.get("async.concurrency") == ZARR_DEFAULT_CONCURRENCY:  # the user has not chosen one
    zarr.config.set({"async.concurrency": REMOTE_CONCURRENCY})


class MetadataError(MalformedResponseError):
    """The zarr hierarchy is not (valid) OME-Zarr."""


@dataclass(frozen=True)
class Channel:
    name: str
    color: str
    window: tuple[float, float] | None
    active: bool = True

    @property
    def rgb(self) -> tuple[float, float, float]:
        return tuple(int(self.color[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


#: where nearly every writer (bioformats2raw, ome-zarr-py, NGFF converters) puts an image's full
#: resolution: its metadata is asked for in the same round trip as the group's, so that opening an
#: image and reading level 0 waits for one round trip less; a wrong guess costs a few small
#: requests in that round, and the level is then opened as usual
LIKELY_FIRST_LEVEL = "0"

T = TypeVar("T")


class Location:
    """A store plus a path in it; knows how to read a group's attributes."""

    def __init__(self, store: Store, url: str, path: str = "") -> None:
        self.store, self.url, self.path = store, url.rstrip("/"), path.strip("/")

    def child(self, name: str) -> Location:
        return Location(self.store, f"{self.url}/{name}", f"{self.path}/{name}".strip("/"))

    def read_attrs(self) -> tuple[dict[str, Any], int]:
        """The group's OME attributes (0.5 nests them under ``ome``) and its zarr format."""
        return sync(self._read_attrs())

    def read_attrs_and_first_level(self) -> tuple[dict[str, Any], int, asyncio.Task]:
        """``read_attrs()``, while the array at ``LIKELY_FIRST_LEVEL`` is opened in the same round
        trip; the task (on zarr's event loop) gives that array, or None where there is none."""
        return sync(self._read_attrs_and_first_level())

    async def _read_attrs_and_first_level(self) -> tuple[dict[str, Any], int, asyncio.Task]:
        first_level = asyncio.ensure_future(self.child(LIKELY_FIRST_LEVEL)._open_array_or_none())
        try:
            attrs, zarr_format = await self._read_attrs()
        except BaseException:
            first_level.cancel()
            raise
        return attrs, zarr_format, first_level

    async def _read_attrs(self) -> tuple[dict[str, Any], int]:
        try:
            group = await zarr_async.open_group(self.store, path=self.path, mode="r")
        except (GroupNotFoundError, FileNotFoundError, NodeTypeValidationError, KeyError):
            raise NotFoundError(f"no zarr group at {self.url}; check the URL (an OME-Zarr image is a group)") from None
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError, TypeError) as e:
            raise MetadataError(f"unreadable zarr metadata at {self.url}: {e}") from None
        attrs = dict(group.attrs)
        zarr_format = group.metadata.zarr_format
        if zarr_format == 3 and isinstance(attrs.get("ome"), dict):
            attrs = attrs["ome"]
        return attrs, zarr_format

    async def open_array(self, zarr_format: int | None) -> zarr.AsyncArray:
        return await zarr_async.open_array(store=self.store, path=self.path, mode="r", zarr_format=zarr_format)

    async def _open_array_or_none(self) -> zarr.AsyncArray | None:
        try:
            return await self.open_array(zarr_format=None)  # the group's format is not known yet
        except Exception:  # not an array, or unreadable: the real open says why, if it is ever needed
            return None


def cancel_unused(first_level: asyncio.Task) -> None:
    first_level.get_loop().call_soon_threadsafe(first_level.cancel)  # the task lives on zarr's loop


def open_ome_zarr(
    url: str | os.PathLike[str],
    *,
    series: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    s3_endpoint: str | None = None,
) -> Image | Plate | Well:
    """Open an OME-Zarr image, plate or well from ``https://``, ``s3://`` (anonymous) or a local path.

    A bioformats2raw container opens its image ``series`` (default the first). ``cache_dir``
    keeps fetched chunks on disk so a second read of the same data costs no network.
    ``s3://`` URLs and EBI's S3 hosts go to ``s3_endpoint`` (default ``BIA_BINDER_S3_ENDPOINT``,
    else https://livingobjects.ebi.ac.uk).
    """
    url = os.fspath(url)
    if "://" in url:
        http_url = to_http_url(url, s3_endpoint)
        store: Store = HTTPStore(http_url, cache_dir=cache_dir)
    else:
        if not os.path.isdir(url):
            raise NotFoundError(f"no such directory {url!r}; pass the path of an OME-Zarr folder or an http(s)/s3 URL")
        http_url = url
        store = LocalStore(url, read_only=True)
    return open_location(Location(store, http_url), series=series)


def open_location(location: Location, *, series: int = 0) -> Image | Plate | Well:
    attrs, zarr_format, first_level = location.read_attrs_and_first_level()
    if "multiscales" in attrs:
        return Image(location, attrs, zarr_format, first_level=first_level)
    cancel_unused(first_level)
    if "plate" in attrs:
        return Plate(location, attrs, zarr_format)
    if "well" in attrs:
        return Well(location, attrs, zarr_format)
    if "bioformats2raw.layout" in attrs:
        return open_location(location.child(str(series)))
    raise MetadataError(
        f"{location.url} is a zarr group without OME-Zarr metadata (multiscales, plate, well or "
        "bioformats2raw.layout); point at the image, plate or well group"
    )


class Image:
    """One multiscale image: ``levels`` (dask arrays, full resolution first), axes, scales, channels."""

    def __init__(
        self, location: Location, attrs: dict[str, Any], zarr_format: int, *, first_level: asyncio.Task | None = None
    ) -> None:
        self.location, self.attrs, self.zarr_format = location, attrs, zarr_format
        try:
            self.multiscale: dict[str, Any] = attrs["multiscales"][0]
            self.dataset_paths: list[str] = [d["path"] for d in self.multiscale["datasets"]]
        except (KeyError, IndexError, TypeError):
            raise MetadataError(f"{self.url}: 'multiscales' must list datasets with a 'path' each") from None
        if not self.dataset_paths:
            raise MetadataError(f"{self.url}: 'multiscales' lists no datasets")
        if first_level is not None and self.dataset_paths[0].strip("/") != LIKELY_FIRST_LEVEL:
            cancel_unused(first_level)  # the guess missed: level 0 is opened where the metadata says
            first_level = None
        self._first_level = first_level

    def __repr__(self) -> str:
        shape = self.arrays[0].shape
        return f"<OME-Zarr {self.version} image {self.url} axes={''.join(self.axes)} shape={shape} levels={len(self.arrays)}>"

    @property
    def url(self) -> str:
        return self.location.url

    @property
    def version(self) -> str:
        return str(self.attrs.get("version") or self.multiscale.get("version") or "")

    @cached_property
    def arrays(self) -> Levels[zarr.Array]:
        """Every resolution level as a zarr array, full resolution first, each opened on first use
        (several at once, as in a slice or a loop, in one round trip)."""
        return Levels(len(self.dataset_paths), lambda indices: [zarr.Array(a) for a in sync(self._open_arrays(indices))])

    @cached_property
    def levels(self) -> Levels[da.Array]:
        """Every resolution level as a dask array, full resolution first, each opened on first use."""
        return Levels(
            len(self.dataset_paths),
            lambda indices: [self._to_dask(self.dataset_paths[i], a) for i, a in zip(indices, self.arrays.get(indices))],
        )

    async def _open_arrays(self, indices: list[int]) -> list[zarr.AsyncArray]:
        try:
            return list(await asyncio.gather(*(self._open_array(i) for i in indices)))
        except (FileNotFoundError, KeyError):
            raise MetadataError(f"{self.url}: a dataset listed in 'multiscales' is missing ({self.dataset_paths})") from None

    async def _open_array(self, index: int) -> zarr.AsyncArray:
        if index == 0 and self._first_level is not None:
            guessed, self._first_level = await self._first_level, None
            if guessed is not None and guessed.metadata.zarr_format == self.zarr_format:
                return guessed
        return await self.location.child(self.dataset_paths[index]).open_array(self.zarr_format)

    def _to_dask(self, path: str, array: zarr.Array) -> da.Array:
        return level_array(array, name=f"ome-zarr-{tokenize(self.url, path)}")

    @property
    def axes(self) -> list[str]:
        """Axis names, e.g. ``['c', 'z', 'y', 'x']`` (0.1/0.2 images have no names: ``tczyx``)."""
        named = self.multiscale.get("axes")
        if named is None:
            return list("tczyx")
        return [a["name"] if isinstance(a, dict) else str(a) for a in named]

    @property
    def axis_units(self) -> dict[str, str]:
        return {a["name"]: a["unit"] for a in self.multiscale.get("axes", []) if isinstance(a, dict) and "unit" in a}

    def _transforms(self, kind: str, level: int, neutral: float) -> list[float]:
        values = [neutral] * len(self.axes)
        datasets = self.multiscale["datasets"]
        for transforms in (datasets[level].get("coordinateTransformations", []),
                           self.multiscale.get("coordinateTransformations", [])):
            for t in transforms:
                if t.get("type") == kind and kind in t:
                    values = [v * s if kind == "scale" else v + s for v, s in zip(values, t[kind])]
        return values

    @property
    def scales(self) -> list[list[float]]:
        """Pixel size per axis for each level (physical units in ``axis_units``)."""
        return [self._transforms("scale", i, 1.0) for i in range(len(self.dataset_paths))]

    @property
    def translations(self) -> list[list[float]]:
        return [self._transforms("translation", i, 0.0) for i in range(len(self.dataset_paths))]

    @property
    def channels(self) -> list[Channel]:
        """Names, colours (hex RGB) and display windows from the ``omero`` block, else defaults."""
        described = (self.attrs.get("omero") or {}).get("channels") or []
        count = self.arrays[0].shape[self.axes.index("c")] if "c" in self.axes else 1
        channels = []
        for i in range(count):
            meta = described[i] if i < len(described) else {}
            window = meta.get("window") or {}
            channels.append(
                Channel(
                    name=str(meta.get("label") or f"channel {i}"),
                    color=str(meta.get("color") or DEFAULT_COLOURS[i % len(DEFAULT_COLOURS)]).upper(),
                    window=(window["start"], window["end"]) if "start" in window and "end" in window else None,
                    active=bool(meta.get("active", True)),
                )
            )
        return channels

    @cached_property
    def labels(self) -> dict[str, Image]:
        """Label images by name (from the ``labels`` group); empty when the image has none."""
        group = self.location.child("labels")
        try:
            attrs, _ = group.read_attrs()
        except NotFoundError:
            return {}
        return {name: _open_image(group.child(name)) for name in attrs.get("labels", [])}

    def to_dask(self, level: int = 0) -> da.Array:
        return self.levels[level]

    def to_xarray(self, level: int = 0) -> Any:
        """An ``xarray.DataArray`` with named dims and physical coordinates (needs xarray)."""
        try:
            import xarray as xr
        except ImportError:
            raise ImportError("to_xarray needs xarray: pip install xarray") from None
        data = self.levels[level]
        scale, offset = self.scales[level], self.translations[level]
        coords = {
            axis: offset[i] + scale[i] * np.arange(data.shape[i])
            for i, axis in enumerate(self.axes)
            if axis not in ("c",)
        }
        if "c" in self.axes:
            coords["c"] = [c.name for c in self.channels]
        return xr.DataArray(data, dims=self.axes, coords=coords, attrs={"units": self.axis_units, "url": self.url})

    def thumbnail(self, max_size: int = 256) -> np.ndarray:
        """An RGB ``uint8`` preview of the middle z plane at t=0, from the smallest level.

        Read with zarr directly: a first dask compute costs more than the whole read (dask
        imports ``distributed`` to look for a cluster).
        """
        level = self.arrays[-1]
        index = tuple(
            slice(None) if axis in ("c", "y", "x") else (level.shape[i] // 2 if axis == "z" else 0)
            for i, axis in enumerate(self.axes)
        )
        plane = np.asarray(level[index])
        if "c" not in self.axes:
            plane = plane[np.newaxis]
        step = max(1, math.ceil(max(plane.shape[-2:]) / max_size))
        plane = plane[:, ::step, ::step].astype(np.float32)
        rgb = np.zeros(plane.shape[1:] + (3,), np.float32)
        for channel, values in zip(self.channels, plane):
            if not channel.active:
                continue
            low, high = channel.window or (float(values.min()), float(values.max()))
            scaled = np.clip((values - low) / ((high - low) or 1.0), 0, 1)
            rgb += scaled[..., np.newaxis] * np.array(channel.rgb, np.float32)
        return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _open_image(location: Location) -> Image:
    attrs, zarr_format, first_level = location.read_attrs_and_first_level()
    return Image(location, attrs, zarr_format, first_level=first_level)


class Levels(Sequence[T], Generic[T]):
    """One item per resolution level, opened on first use and kept: ``levels[0]`` fetches the
    metadata of level 0 only, a slice or a loop fetches the levels it needs at once."""

    def __init__(self, count: int, open_many: Callable[[list[int]], list[T]]) -> None:
        self._count, self._open_many = count, open_many
        self._opened: dict[int, T] = {}

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return self.get(range(self._count)[index])
        return self.get([range(self._count)[index]])[0]  # range: negative indexes, IndexError

    def __iter__(self) -> Iterator[T]:
        return iter(self.get(range(self._count)))

    def get(self, indices: Iterable[int]) -> list[T]:
        """The levels at ``indices``, opening those not yet open together."""
        indices = list(indices)
        missing = [i for i in dict.fromkeys(indices) if i not in self._opened]
        if missing:
            self._opened.update(zip(missing, self._open_many(missing)))
        return [self._opened[i] for i in indices]

    def __repr__(self) -> str:
        return f"<{self._count} levels, {len(self._opened)} open>"


class Well:
    """A well of an HCS plate: its fields of view are images."""

    def __init__(self, location: Location, attrs: dict[str, Any], zarr_format: int) -> None:
        self.location, self.attrs, self.zarr_format = location, attrs, zarr_format
        try:
            self.fields: list[str] = [image["path"] for image in attrs["well"]["images"]]
        except (KeyError, TypeError):
            raise MetadataError(f"{location.url}: 'well' must list images with a 'path' each") from None

    def __repr__(self) -> str:
        return f"<OME-Zarr well {self.location.url} fields={len(self.fields)}>"

    def image(self, field: int = 0) -> Image:
        return _open_image(self.location.child(self.fields[field]))


class Plate:
    """An HCS plate: rows, columns, wells (``'A/1'``) and each well's fields."""

    def __init__(self, location: Location, attrs: dict[str, Any], zarr_format: int) -> None:
        self.location, self.zarr_format = location, zarr_format
        try:
            self.plate: dict[str, Any] = attrs["plate"]
            self.rows: list[str] = [r["name"] for r in self.plate["rows"]]
            self.columns: list[str] = [c["name"] for c in self.plate["columns"]]
            self.wells: list[str] = [w["path"] for w in self.plate["wells"]]
        except (KeyError, TypeError):
            raise MetadataError(f"{location.url}: 'plate' must have rows, columns and wells with names/paths") from None

    def __repr__(self) -> str:
        return f"<OME-Zarr plate {self.location.url} {len(self.rows)}x{len(self.columns)} wells={len(self.wells)}>"

    @property
    def name(self) -> str:
        return str(self.plate.get("name", ""))

    def well(self, row: str, column: str | None = None) -> Well:
        """``plate.well('A', '1')`` or ``plate.well('A/1')``."""
        path = row if column is None else f"{row}/{column}"
        if path not in self.wells:
            raise NotFoundError(f"plate {self.location.url} has no well {path!r}; its wells are {self.wells[:8]}...")
        location = self.location.child(path)
        return Well(location, *location.read_attrs())

    def image(self, well: str, field: int = 0) -> Image:
        return self.well(well).image(field)


__all__ = ["Channel", "Image", "Levels", "MetadataError", "Plate", "Well", "open_ome_zarr"]
