"""The BIA integrator API v2 against a local server serving the real S-BIAD609 objects, with the
image's OME-Zarr in a real S3 server under the bucket and key its representation names."""

from __future__ import annotations

import numpy as np
import pytest

from bia_binder.data import NotFoundError, bia

from . import stores
from .fake_services import BIA_DATASET_UUID, BIA_EXTRA_FILE_REFERENCES, BIA_IMAGE_UUID, BIA_STUDY_UUID


def test_study_by_accession_and_by_uuid(endpoints):
    by_accession = bia.study("S-BIAD609")
    assert by_accession.uuid == BIA_STUDY_UUID and by_accession.accession == "S-BIAD609"
    assert bia.study(BIA_STUDY_UUID).accession == "S-BIAD609"


def test_datasets_images_and_representations(endpoints):
    study = bia.study("S-BIAD609")
    assert [d.uuid for d in study.datasets] == [BIA_DATASET_UUID]
    assert study.datasets[0].title == "Fluorescent images"
    images = list(study.images())
    assert [i.uuid for i in images] == [BIA_IMAGE_UUID]
    formats = sorted(r.image_format for r in images[0].representations)
    assert formats == [".ome.zarr", ".tiff"]


def test_the_recommended_ome_zarr_is_read_from_the_configured_s3_endpoint(endpoints, s3):
    image = next(bia.study("S-BIAD609").images())
    assert image.ome_zarr.uuid == "cca7f5db-2c46-4234-8d48-eb431a733007"
    assert image.ome_zarr.urls[0].startswith(s3.endpoint + "/bioimaging-integrator-data/S-BIAD609/")
    level0 = image.to_dask(level=0)
    assert level0.shape == (2, 1, 128, 128) and level0.dtype == np.uint16
    np.testing.assert_array_equal(level0.compute(), stores.image_data()[:, :1])


def test_thumbnail(endpoints):
    image = next(bia.study("S-BIAD609").images())
    thumbnail = image.thumbnail(max_size=64)
    assert thumbnail.shape == (32, 32, 3) and thumbnail.dtype == np.uint8 and thumbnail.max() == 255


def test_file_references_page_by_uuid_cursor(endpoints):
    before = len(endpoints.requests)
    references = list(bia.study("S-BIAD609").file_references())
    assert len(references) == BIA_EXTRA_FILE_REFERENCES + 1
    assert len({r.uuid for r in references}) == len(references)
    pages = [r for r in endpoints.requests[before:] if "/file_reference?" in r]
    assert len(pages) == 3 and "start_from_uuid" in pages[1]


def test_an_image_knows_its_original_files(endpoints):
    image = next(bia.study("S-BIAD609").images())
    [original] = image.file_references()
    assert original.path.endswith("Striatum/Butyrate.tif") and original.size == 5110968


def test_unknown_accession_is_named(endpoints):
    with pytest.raises(NotFoundError, match="BIA study S-BIAD999999 not found"):
        bia.study("S-BIAD999999")


def test_nonsense_is_rejected_before_asking(endpoints):
    with pytest.raises(ValueError, match="neither a BIA accession"):
        bia.study("../../etc/passwd")
