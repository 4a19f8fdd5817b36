"""Small generated OME-Zarr stores: 0.4 (zarr v2, big-endian), 0.5 (zarr v3, sharded),
the bioformats2raw ``/0`` wrapper, labels and an HCS plate. Pixels are bright disks on a
dim noisy background, so a threshold segmentation finds a known number of objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

#: disk centres (y, x) and radius in full-resolution pixels; the segmentation notebook counts them
DISKS = ((20, 20), (20, 80), (70, 40), (90, 100))
RADIUS = 9
CHANNELS = (("DAPI", "0000FF", (0, 1000)), ("GFP", "00FF00", (0, 2000)))


def image_data(size: int = 128, channels: int = 2, z: int = 3, seed: int = 0) -> np.ndarray:
    """A ``czyx`` uint16 stack: channel ``i`` has disks of intensity ``1000*(i+1)`` over noise below 100."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    mask = np.zeros((size, size), bool)
    for cy, cx in DISKS:
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= RADIUS**2
    data = rng.integers(0, 100, size=(channels, z, size, size), dtype=np.uint16)
    for c in range(channels):
        data[c, :, mask] += 1000 * (c + 1)
    return data


def label_data(size: int = 128) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((1, size, size), np.uint32)
    for i, (cy, cx) in enumerate(DISKS, start=1):
        labels[0][(yy - cy) ** 2 + (xx - cx) ** 2 <= RADIUS**2] = i
    return labels


def _multiscale(axes: str, levels: int, version: str) -> dict[str, Any]:
    kinds = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
    return {
        "version": version,
        "name": "generated",
        "axes": [
            {"name": a, "type": kinds[a], **({"unit": "micrometer"} if kinds[a] == "space" else {})} for a in axes
        ],
        "datasets": [
            {
                "path": str(level),
                "coordinateTransformations": [
                    {
                        "type": "scale",
                        "scale": [1.0 if a in "tc" else (0.5 if a == "z" else 0.25 * 2**level) for a in axes],
                    },
                    {"type": "translation", "translation": [0.0] * (len(axes) - 2) + [10.0, 20.0]},
                ],
            }
            for level in range(levels)
        ],
    }


def _omero(count: int) -> dict[str, Any]:
    return {
        "channels": [
            {"label": name, "color": color, "active": True, "window": {"start": lo, "end": hi, "min": 0, "max": 65535}}
            for name, color, (lo, hi) in CHANNELS[:count]
        ]
    }


def write_image(
    root: Path | zarr.Group,
    data: np.ndarray,
    *,
    axes: str = "czyx",
    version: str = "0.4",
    levels: int = 3,
    chunk: int = 32,
    sharded: bool = False,
    big_endian: bool = False,
    with_omero: bool = True,
    labels: dict[str, np.ndarray] | None = None,
) -> zarr.Group:
    """An image group; level ``n`` halves y and x ``n`` times by striding."""
    zarr_format = 3 if version == "0.5" else 2
    group = root if isinstance(root, zarr.Group) else zarr.open_group(root, mode="w", zarr_format=zarr_format)
    ome: dict[str, Any] = {"multiscales": [_multiscale(axes, levels, version)]}
    if with_omero and "c" in axes:
        ome["omero"] = _omero(data.shape[axes.index("c")])
    dtype = data.dtype.newbyteorder(">") if big_endian else data.dtype
    for level in range(levels):
        step = 2**level
        pixels = data[(Ellipsis, slice(None, None, step), slice(None, None, step))]
        chunks = tuple(1 if a in "tcz" else chunk for a in axes)
        options: dict[str, Any] = {"chunks": chunks}
        if sharded:
            options["shards"] = tuple(1 if a in "tc" else (pixels.shape[i] if a == "z" else chunk * 2)
                                      for i, a in enumerate(axes))
        if zarr_format == 2:
            options["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        array = group.create_array(str(level), shape=pixels.shape, dtype=dtype, **options)
        array[...] = pixels.astype(dtype)
    if zarr_format == 3:
        ome = {"version": version, **{k: v for k, v in ome.items()}}
        for m in ome["multiscales"]:
            m.pop("version")
        group.attrs["ome"] = ome
    else:
        group.attrs.update(ome)
    for name, label in (labels or {}).items():
        labels_group = group.require_group("labels")
        if zarr_format == 3:
            labels_group.attrs["ome"] = {"version": version, "labels": [*labels_group.attrs.get("ome", {}).get("labels", []), name]}
        else:
            labels_group.attrs["labels"] = [*labels_group.attrs.get("labels", []), name]
        label_group = labels_group.require_group(name)
        write_image(label_group, label, axes=axes.replace("c", ""), version=version, levels=levels, chunk=chunk,
                    sharded=sharded, with_omero=False)
        key = "ome" if zarr_format == 3 else None
        meta = {"image-label": {"version": version, "source": {"image": "../../"}}}
        if key:
            label_group.attrs["ome"] = {**label_group.attrs["ome"], **meta}
        else:
            label_group.attrs.update(meta)
    return group


def write_bioformats2raw(root: Path, data: np.ndarray, **options: Any) -> None:
    """The bioformats2raw layout: a container group whose series 0 is the image."""
    version = options.get("version", "0.4")
    group = zarr.open_group(root, mode="w", zarr_format=3 if version == "0.5" else 2)
    group.attrs["bioformats2raw.layout"] = 3
    write_image(group.require_group("0"), data, **options)


def write_plate(root: Path, *, version: str = "0.4", rows: str = "AB", columns: str = "12", fields: int = 2) -> None:
    """A plate of ``rows x columns`` wells with ``fields`` images each; field ``f`` of well ``w`` has seed ``w*10+f``."""
    zarr_format = 3 if version == "0.5" else 2
    plate = zarr.open_group(root, mode="w", zarr_format=zarr_format)
    wells = [f"{r}/{c}" for r in rows for c in columns]
    meta = {
        "plate": {
            "name": "generated plate",
            "rows": [{"name": r} for r in rows],
            "columns": [{"name": c} for c in columns],
            "wells": [{"path": w, "rowIndex": rows.index(w[0]), "columnIndex": columns.index(w[2])} for w in wells],
            "field_count": fields,
            **({"version": version} if zarr_format == 2 else {}),
        }
    }
    plate.attrs.update({"ome": {"version": version, **meta}} if zarr_format == 3 else meta)
    for w, well_path in enumerate(wells):
        well = plate.require_group(well_path)
        well_meta = {"well": {"images": [{"path": str(f)} for f in range(fields)],
                              **({"version": version} if zarr_format == 2 else {})}}
        well.attrs.update({"ome": {"version": version, **well_meta}} if zarr_format == 3 else well_meta)
        for f in range(fields):
            write_image(well.require_group(str(f)), image_data(size=64, z=1, seed=w * 10 + f), version=version, levels=2)


def write_not_ome(root: Path) -> None:
    """A valid zarr group with an array but no OME metadata."""
    group = zarr.open_group(root, mode="w", zarr_format=2)
    group.attrs["description"] = "just zarr"
    group.create_array("0", shape=(4, 4), dtype="u1")[...] = 1
