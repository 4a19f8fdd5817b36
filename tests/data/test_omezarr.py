"""OME-Zarr reading from a real S3 server (moto) over HTTP, from s3:// URLs and from local paths."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import numpy as np
import pytest
import zarr

from bia_binder.data import MetadataError, NotFoundError, open_ome_zarr
from bia_binder.data._store import HTTPStore
from bia_binder.data.omezarr import Image, Plate

from . import stores
from .conftest import BROKEN_JSON, IDR_PLATE_V04, IDR_PLATE_V05, IDR_V04, IDR_V05, NOT_OME, S3


@pytest.fixture(scope="module")
def expected() -> np.ndarray:
    return stores.image_data()


@pytest.mark.parametrize("location", [IDR_V04, IDR_V05], ids=["0.4-bioformats2raw-big-endian", "0.5-sharded"])
@pytest.mark.parametrize("scheme", ["http", "s3"])
def test_image_levels_match_the_written_pixels(endpoints, s3: S3, location, scheme, expected):
    image = open_ome_zarr(s3.url(location, scheme))
    assert isinstance(image, Image)
    assert image.axes == ["c", "z", "y", "x"]
    assert [level.shape for level in image.levels] == [(2, 3, 128, 128), (2, 3, 64, 64), (2, 3, 32, 32)]
    assert image.levels[0].dtype == np.dtype("uint16") and image.levels[0].dtype.isnative
    np.testing.assert_array_equal(image.levels[0].compute(), expected)
    np.testing.assert_array_equal(image.levels[2].compute(), expected[..., ::4, ::4])


def test_version_and_wrapper(endpoints, s3: S3):
    wrapped = open_ome_zarr(s3.url(IDR_V04))
    assert wrapped.version == "0.4" and wrapped.url.endswith("6001247.zarr/0")
    assert open_ome_zarr(s3.url(IDR_V05)).version == "0.5"


def test_axes_scales_translations_and_channels(endpoints, s3: S3):
    image = open_ome_zarr(s3.url(IDR_V05))
    assert image.scales[0] == [1.0, 0.5, 0.25, 0.25] and image.scales[2] == [1.0, 0.5, 1.0, 1.0]
    assert image.translations[1] == [0.0, 0.0, 10.0, 20.0]
    assert image.axis_units == {"z": "micrometer", "y": "micrometer", "x": "micrometer"}
    assert [(c.name, c.color, c.window) for c in image.channels] == [
        ("DAPI", "0000FF", (0, 1000)), ("GFP", "00FF00", (0, 2000))]


@pytest.mark.parametrize("location", [IDR_V04, IDR_V05])
def test_labels(endpoints, s3: S3, location):
    labels = open_ome_zarr(s3.url(location)).labels
    assert list(labels) == ["nuclei"]
    nuclei = labels["nuclei"].levels[0].compute()
    assert nuclei.shape == (1, 128, 128)
    np.testing.assert_array_equal(nuclei, stores.label_data())


def test_an_image_without_labels_has_none(endpoints, s3: S3):
    from .conftest import BIA_ZARR

    assert open_ome_zarr(s3.url(BIA_ZARR)).labels == {}


def test_to_xarray_has_physical_coordinates(endpoints, s3: S3):
    array = open_ome_zarr(s3.url(IDR_V05)).to_xarray(level=1)
    assert array.dims == ("c", "z", "y", "x")
    assert list(array.coords["c"].values) == ["DAPI", "GFP"]
    np.testing.assert_allclose(array.coords["x"].values[:3], [20.0, 20.5, 21.0])
    assert int(array.sel(c="GFP").isel(z=0, y=10, x=10)) >= 2000  # inside the first disk


@pytest.mark.parametrize("location", [IDR_PLATE_V04, IDR_PLATE_V05])
def test_plate_wells_and_fields(endpoints, s3: S3, location):
    plate = open_ome_zarr(s3.url(location))
    assert isinstance(plate, Plate)
    assert plate.rows == ["A", "B"] and plate.columns == ["1", "2"]
    assert plate.wells == ["A/1", "A/2", "B/1", "B/2"]
    well = plate.well("B", "2")
    assert well.fields == ["0", "1"]
    np.testing.assert_array_equal(well.image(1).levels[0].compute(), stores.image_data(size=64, z=1, seed=31))
    with pytest.raises(NotFoundError, match="no well 'C/3'"):
        plate.well("C/3")


def test_thumbnail_is_rgb_from_the_smallest_level(endpoints, s3: S3, services):
    image = open_ome_zarr(s3.url(IDR_V05))
    thumbnail = image.thumbnail(max_size=16)
    assert thumbnail.shape == (16, 16, 3) and thumbnail.dtype == np.uint8
    # DAPI is blue, GFP green, both saturate inside a disk; red stays empty
    y, x = stores.DISKS[0][0] // 8, stores.DISKS[0][1] // 8
    assert thumbnail[y, x, 2] == 255 and thumbnail[y, x, 1] == 255
    assert thumbnail[..., 0].max() == 0


def test_dask_blocks_span_many_stored_chunks(endpoints, s3: S3):
    # the stored chunks are single 32x32 planes: 96 of them in level 0
    assert open_ome_zarr(s3.url(IDR_V04)).levels[0].numblocks == (1, 1, 1, 1)
    with dask.config.set({"array.chunk-size": "64KiB"}):
        level = open_ome_zarr(s3.url(IDR_V04)).levels[0]
    assert 1 < level.npartitions < 96
    assert all(size % 32 == 0 for size in level.chunks[-1] + level.chunks[-2])  # aligned to stored chunks


def test_on_disk_cache_serves_a_second_read(endpoints, s3: S3, tmp_path: Path, expected, monkeypatch):
    first = open_ome_zarr(s3.url(IDR_V05), cache_dir=tmp_path)
    np.testing.assert_array_equal(first.levels[0].compute(), expected)
    assert any(tmp_path.rglob("*"))

    async def no_network(store: HTTPStore, url: str, headers: dict[str, str]) -> None:
        raise AssertionError(f"{url} was fetched although everything is cached")

    monkeypatch.setattr(HTTPStore, "_fetch", no_network)
    second = open_ome_zarr(s3.url(IDR_V05), cache_dir=tmp_path)
    np.testing.assert_array_equal(second.levels[0].compute(), expected)


def test_old_ebi_s3_hosts_are_rewritten_to_the_configured_endpoint(endpoints, s3: S3, expected):
    bucket, key = IDR_V04
    image = open_ome_zarr(f"https://uk1s3.embassy.ebi.ac.uk/{bucket}/{key}")
    assert image.url.startswith(s3.endpoint)
    np.testing.assert_array_equal(image.levels[1].compute(), expected[..., ::2, ::2])


def test_the_s3_endpoint_can_be_given_per_call(s3: S3, monkeypatch, expected):
    monkeypatch.setenv("BIA_BINDER_S3_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    image = open_ome_zarr(s3.url(IDR_V05, "s3"), s3_endpoint=s3.endpoint)
    np.testing.assert_array_equal(image.levels[2].compute(), expected[..., ::4, ::4])


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_local_paths(tmp_path: Path, version, expected):
    stores.write_image(tmp_path / "local.zarr", expected, version=version)
    image = open_ome_zarr(tmp_path / "local.zarr")
    np.testing.assert_array_equal(image.levels[0].compute(), expected)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_generated_stores_read_the_same_with_ome_zarr_py(tmp_path: Path, version, expected):
    """Our generator writes valid OME-Zarr: the reference reader agrees on pixels and axes."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    stores.write_image(tmp_path / "x.zarr", expected, version=version, sharded=version == "0.5")
    node = next(iter(Reader(parse_url(str(tmp_path / "x.zarr")))()))
    np.testing.assert_array_equal(np.asarray(node.data[0]), expected)
    assert [a["name"] for a in node.metadata["axes"]] == open_ome_zarr(tmp_path / "x.zarr").axes


def test_missing_local_path_names_it(tmp_path: Path):
    with pytest.raises(NotFoundError, match="no such directory .*nowhere.zarr"):
        open_ome_zarr(tmp_path / "nowhere.zarr")


def test_missing_remote_store_names_it(endpoints, s3: S3):
    with pytest.raises(NotFoundError, match="no zarr group at .*missing.zarr"):
        open_ome_zarr("s3://idr/zarr/missing.zarr")


def test_zarr_without_ome_metadata_is_a_clear_error(endpoints, s3: S3):
    with pytest.raises(MetadataError, match="without OME-Zarr metadata"):
        open_ome_zarr(s3.url(NOT_OME))


def test_broken_metadata_json_is_a_clear_error(endpoints, s3: S3):
    with pytest.raises(MetadataError, match="unreadable zarr metadata"):
        open_ome_zarr(s3.url(BROKEN_JSON))


def test_multiscales_without_datasets_is_a_clear_error(tmp_path: Path):
    group = zarr.open_group(tmp_path / "bad.zarr", mode="w", zarr_format=2)
    group.attrs["multiscales"] = [{"version": "0.4", "axes": []}]
    with pytest.raises(MetadataError, match="must list datasets"):
        open_ome_zarr(tmp_path / "bad.zarr")
    assert json.loads((tmp_path / "bad.zarr" / ".zattrs").read_text())["multiscales"]


def test_a_missing_level_is_a_clear_error(tmp_path: Path):
    group = zarr.open_group(tmp_path / "x.zarr", mode="w", zarr_format=2)
    group.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": "y"}, {"name": "x"}], "datasets": [{"path": "0"}]}]
    with pytest.raises(MetadataError, match="a dataset listed in 'multiscales' is missing"):
        _ = open_ome_zarr(tmp_path / "x.zarr").levels[0]
