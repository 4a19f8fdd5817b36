"""IDR's JSON API, imgData and map annotations against a local server in IDR's wire format; the
image's OME-Zarr export is the catalogue's path, served by a real S3 server."""

from __future__ import annotations

import numpy as np
import pytest

from bia_binder.data import NotFoundError, idr

from . import stores
from .fake_services import (
    IDR_DATASET,
    IDR_DATASET_IMAGES,
    IDR_IMAGE,
    IDR_PLATE,
    IDR_PLATE_IMAGE,
    IDR_PROJECT,
    IDR_SCREEN,
)


def test_image_object(endpoints):
    image = idr.image(IDR_IMAGE)
    assert image.id == IDR_IMAGE and image.name == "B4_C3.tif"
    assert image.json["Pixels"]["Type"]["value"] == "uint16"


def test_img_data_and_map_annotations(endpoints):
    image = idr.image(IDR_IMAGE)
    assert image.img_data["size"] == {"width": 128, "height": 128, "z": 3, "t": 1, "c": 2}
    assert [c["label"] for c in image.img_data["channels"]] == ["DAPI", "GFP"]
    namespaces = [a["ns"] for a in image.map_annotations()]
    assert namespaces == ["openmicroscopy.org/omero/client/mapAnnotation", "openmicroscopy.org/mapr/gene"]
    assert image.key_values()["Gene Symbol"] == ["AT1G01010", "AT1G01020"]


def test_projects_datasets_images_with_meta_paging(endpoints):
    [project] = [p for p in idr.projects() if p.id == IDR_PROJECT]
    [dataset] = list(project.datasets())
    assert dataset.id == IDR_DATASET
    before = len(endpoints.requests)
    images = list(dataset.images())
    assert len(images) == IDR_DATASET_IMAGES and images[0].id == IDR_IMAGE
    pages = [r for r in endpoints.requests[before:] if "/images/?" in r]
    assert len(pages) == 2 and "offset=500" in pages[1]


def test_screens_plates_wells(endpoints):
    [screen] = list(idr.screens())
    assert screen.id == IDR_SCREEN
    [plate] = list(screen.plates())
    assert plate.id == IDR_PLATE and plate.name == "76-45"
    wells = list(plate.wells())
    assert len(wells) == 3 and wells[0].images()[0].id == IDR_PLATE_IMAGE
    assert idr.well(2).json["Row"] == 0


def test_image_to_dask_reads_the_ome_zarr_export(endpoints, s3):
    image = idr.image(IDR_IMAGE)
    assert image.zarr_url == f"{s3.endpoint}/idr/zarr/v0.4/idr0062A/6001247.zarr"
    data = stores.image_data()
    np.testing.assert_array_equal(image.to_dask(level=1).compute(), data[..., ::2, ::2])
    assert image.thumbnail().shape == (32, 32, 3)


def test_a_plate_image_opens_its_field_in_the_plate_export(endpoints):
    image = idr.image(IDR_PLATE_IMAGE)
    assert image.zarr_url.endswith("/idr/zarr/v0.5/idr0010/76-45.ome.zarr/A/2/0")
    np.testing.assert_array_equal(image.to_dask().compute(), stores.image_data(size=64, z=1, seed=10))


def test_an_image_without_export_says_so(endpoints):
    image = idr.image(100005)
    with pytest.raises(NotFoundError, match="IDR image 100005 has no OME-Zarr export"):
        image.to_dask()


def test_unknown_id_is_named(endpoints):
    with pytest.raises(NotFoundError, match="IDR image 999 not found"):
        idr.image(999)
    with pytest.raises(ValueError, match="ids are numbers"):
        idr.image("abc")
