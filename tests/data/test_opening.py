"""Opening an image over HTTP: the first level's metadata travels with the group's (one round trip
to level 0, not two), levels open on first use, and a wrong guess of where level 0 lives costs
nothing but a few small requests."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bia_binder.data import open_ome_zarr
from bia_binder.data.omezarr import Image, Levels

from . import stores
from .fileserver import FaultyServer, serving

#: zarr's metadata document of a group and of an array, per zarr format
GROUP_KEY = {"0.4": ".zattrs", "0.5": "zarr.json"}
ARRAY_KEY = {"0.4": ".zarray", "0.5": "zarr.json"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FaultyServer]:
    with serving(tmp_path / "served") as served:
        yield served


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_level_0_metadata_is_asked_for_in_the_same_round_trip_as_the_group(server: FaultyServer, version: str):
    data = stores.image_data(size=64)
    stores.write_image(server.root / "img.zarr", data, version=version)
    group_doc, level_doc = f"/img.zarr/{GROUP_KEY[version]}", f"/img.zarr/0/{ARRAY_KEY[version]}"
    # the group's answer waits for the level's request: were they asked one after the other, it
    # would wait the whole 5 s and find no request for level 0 meanwhile
    server.faults[group_doc] = [("after", (level_doc, 5.0))]

    image = open_ome_zarr(f"{server.url}/img.zarr")
    np.testing.assert_array_equal(image.levels[0].compute(), data)

    assert server.released_by == {group_doc: True}
    assert server.hits[level_doc] == 1  # the guessed open is the one used, not repeated


def test_levels_open_on_first_use_and_together_in_a_loop(server: FaultyServer):
    data = stores.image_data(size=64)
    stores.write_image(server.root / "img.zarr", data, levels=3)
    image = open_ome_zarr(f"{server.url}/img.zarr")

    assert isinstance(image.levels, Levels) and len(image.levels) == 3
    assert image.levels[-1].shape == (2, 3, 16, 16)
    assert server.hits["/img.zarr/2/.zarray"] == 1 and server.hits["/img.zarr/1/.zarray"] == 0

    assert [level.shape for level in image.levels] == [(2, 3, 64, 64), (2, 3, 32, 32), (2, 3, 16, 16)]
    assert [level.shape for level in image.levels[1:]] == [(2, 3, 32, 32), (2, 3, 16, 16)]
    assert all(server.hits[f"/img.zarr/{n}/.zarray"] == 1 for n in range(3))  # each opened once
    np.testing.assert_array_equal(image.arrays[1][...], data[..., ::2, ::2])
    with pytest.raises(IndexError):
        image.levels[3]


def test_an_image_whose_first_level_is_not_at_0_opens_it_where_the_metadata_says(server: FaultyServer):
    data = stores.image_data(size=64)
    root = server.root / "img.zarr"
    stores.write_image(root, data, levels=2)
    attrs = json.loads((root / ".zattrs").read_text())
    for level, dataset in enumerate(attrs["multiscales"][0]["datasets"]):
        (root / str(level)).rename(root / f"s{level}")
        dataset["path"] = f"s{level}"
    (root / ".zattrs").write_text(json.dumps(attrs))

    image = open_ome_zarr(f"{server.url}/img.zarr")
    np.testing.assert_array_equal(image.levels[0].compute(), data)
    assert server.hits["/img.zarr/0/.zarray"] == 1  # the guess: one small request that missed
    assert server.hits["/img.zarr/s0/.zarray"] == 1


def test_a_guess_that_lands_on_a_group_or_is_never_used_leaves_nothing_behind(server: FaultyServer, caplog):
    caplog.set_level(logging.WARNING, logger="asyncio")
    container = stores.image_data(size=64, seed=3)
    stores.write_bioformats2raw(server.root / "c.zarr", container)
    stores.write_plate(server.root / "plate.zarr")

    image = open_ome_zarr(f"{server.url}/c.zarr")  # "0" is the series group; its "0" is level 0
    np.testing.assert_array_equal(image.levels[0].compute(), container)
    assert server.hits["/c.zarr/0/0/.zarray"] == 1

    plate = open_ome_zarr(f"{server.url}/plate.zarr")  # a plate's "0" is nothing: the guess is dropped
    field = plate.image("A/1", 1)
    assert isinstance(field, Image)
    np.testing.assert_array_equal(field.levels[0].compute(), stores.image_data(size=64, z=1, seed=1))
    thumbnail_only = open_ome_zarr(f"{server.url}/c.zarr")
    assert thumbnail_only.thumbnail().shape[-1] == 3
    del thumbnail_only  # its guessed level 0 was opened and never used

    assert not [r for r in caplog.records if r.name == "asyncio"], [r.getMessage() for r in caplog.records]
