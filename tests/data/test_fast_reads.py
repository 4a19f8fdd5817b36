"""What makes whole-level reads fast must not change what they return: a server that ignores
Range (a sharded image's reads are all ranges), a level big enough that its pages are mapped in a
background thread while zarr fills it, and that mapping on its own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import dask
import httpx
import numpy as np
import pytest

from bia_binder.data import _loops, _memory, open_ome_zarr

from . import stores
from .fileserver import serving


@pytest.fixture
def plain_server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """Python's static file server: it answers every GET with the whole file, Range or not."""
    with serving(tmp_path / "served") as served:
        yield served.root, served.url


def test_a_server_that_ignores_range_still_gives_the_right_pixels(plain_server):
    root, url = plain_server
    expected = stores.image_data()
    stores.write_image(root / "sharded.zarr", expected, version="0.5", sharded=True)
    (root / "probe").write_bytes(b"0123456789")
    probe = httpx.get(f"{url}/probe", headers={"Range": "bytes=2-4"})
    assert probe.status_code == 200 and probe.content == b"0123456789"  # the premise: Range is ignored

    image = open_ome_zarr(f"{url}/sharded.zarr")
    np.testing.assert_array_equal(image.levels[0].compute(), expected)
    np.testing.assert_array_equal(image.arrays[1][...], expected[..., ::2, ::2])
    np.testing.assert_array_equal(image.levels[0][1, 2, 40:50, 70:80].compute(), expected[1, 2, 40:50, 70:80])
    with dask.config.set({"array.chunk-size": "16KiB"}):
        blocked = open_ome_zarr(f"{url}/sharded.zarr").levels[0]
    assert blocked.npartitions > 1
    np.testing.assert_array_equal(blocked.max(axis=1).compute(), expected.max(axis=1))


def test_a_level_larger_than_the_mapping_threshold_reads_exactly(plain_server):
    root, url = plain_server
    rng = np.random.default_rng(3)
    expected = rng.integers(0, 65535, size=(1, 3, 2048, 4096), dtype=np.uint16)
    assert expected.nbytes > _memory.MIN_BYTES  # so the pages are mapped in the background
    # sharded: zarr reads it (plain chunks are read on threads, ``test_threaded_read.py``)
    stores.write_image(root / "big.zarr", expected, axes="czyx", version="0.5", levels=1, chunk=256, sharded=True,
                       with_omero=False)
    level = open_ome_zarr(f"{url}/big.zarr").levels[0]
    whole = level.compute()
    np.testing.assert_array_equal(whole, expected)
    assert not any(t.name == "bia-binder-map-pages" for t in threading.enumerate())
    # read as slabs (4 rows of shards) on several loops of our own, not on zarr's one
    assert sum(t.name.startswith("bia-binder-read-") for t in threading.enumerate()) >= 4


@pytest.mark.parametrize("loops", ["1", "3"])
def test_the_number_of_read_loops_changes_nothing_but_speed(plain_server, monkeypatch, loops):
    root, url = plain_server
    expected = stores.image_data(size=96, z=5)
    stores.write_image(root / "v05.zarr", expected, version="0.5", sharded=True, big_endian=False)
    stores.write_image(root / "v04.zarr", expected, big_endian=True)
    monkeypatch.setenv("BIA_BINDER_READ_LOOPS", loops)
    for name in ("v04.zarr", "v05.zarr"):
        whole = open_ome_zarr(f"{url}/{name}").levels[0].compute()
        np.testing.assert_array_equal(whole, expected)
        assert whole.dtype.isnative


@pytest.mark.parametrize(
    ("shape", "stored", "parts", "regions"),
    [
        # planes of chunks: split along z, whole chunks each, the last slab shorter
        ((1, 8, 64, 64), (1, 1, 64, 64), 3, [(0, 3), (3, 6), (6, 8)]),
        # one chunk along the first two axes: split along rows, the last chunk partial
        ((1, 1, 100, 64), (1, 1, 32, 64), 4, [(0, 32), (32, 64), (64, 96), (96, 100)]),
        # fewer chunks than loops: one slab each
        ((2, 64), (1, 64), 4, [(0, 1), (1, 2)]),
    ],
)
def test_slabs_tile_the_array_in_whole_chunks(shape, stored, parts, regions):
    found = _loops.slabs(shape, stored, parts)
    axis = next(i for i, (s, c) in enumerate(zip(shape, stored)) if -(-s // c) > 1)
    assert [(r[axis].start, r[axis].stop) for r in found] == regions
    assert all(r[i] == slice(None) for r in found for i in range(len(shape)) if i != axis)


def test_mapping_pages_keeps_what_is_written_meanwhile():
    array = np.empty(64 * 2**20, np.uint8)
    pattern = np.arange(256, dtype=np.uint8)
    with _memory.pages_mapped_meanwhile(array):
        for start in range(0, array.size, 2**20):  # written while the mapper runs, as zarr does
            array[start : start + 2**20] = np.resize(pattern, 2**20)
    assert not any(t.name == "bia-binder-map-pages" for t in threading.enumerate())
    np.testing.assert_array_equal(array.reshape(-1, 256)[::997], np.broadcast_to(pattern, (array.size // 256,) + (256,))[::997])


def test_small_arrays_are_not_mapped_in_the_background():
    before = threading.active_count()
    with _memory.pages_mapped_meanwhile(np.empty(_memory.MIN_BYTES // 2, np.uint8)):
        assert threading.active_count() == before

