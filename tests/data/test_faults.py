"""Flaky, slow and broken services: retried with backoff, then a clear error; never a hang."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bia_binder.data import DataAccessError, MalformedResponseError, bia, biostudies, idr, open_ome_zarr

from . import stores
from .conftest import IDR_V05

STUDY = "/biostudies/api/v1/studies/S-BIADTEST"


def test_5xx_is_retried_until_it_succeeds(endpoints):
    endpoints.faults.plan(STUDY, ("status", 503), ("status", 502))
    assert biostudies.study("S-BIADTEST").json["accno"] == "S-BIADTEST"
    assert endpoints.faults.hits[STUDY] == 3


def test_persistent_5xx_gives_up_with_a_clear_error(endpoints, monkeypatch):
    monkeypatch.setenv("BIA_BINDER_HTTP_RETRIES", "2")
    endpoints.faults.plan(STUDY, *[("status", 500)] * 3)
    with pytest.raises(DataAccessError, match=r"failed after 3 attempts \(HTTP 500 Internal Server Error\)"):
        _ = biostudies.study("S-BIADTEST").json
    assert endpoints.faults.hits[STUDY] == 3


def test_a_hanging_service_times_out_then_gives_up(endpoints, monkeypatch):
    monkeypatch.setenv("BIA_BINDER_HTTP_TIMEOUT", "0.5")
    monkeypatch.setenv("BIA_BINDER_HTTP_RETRIES", "1")
    path = f"/idr/api/v0/m/images/{6001247}/"
    endpoints.faults.plan(path, ("hang", 3), ("hang", 3))
    started = time.monotonic()
    with pytest.raises(DataAccessError, match="failed after 2 attempts \\(timed out\\)"):
        idr.image(6001247)
    assert time.monotonic() - started < 10


def test_a_hang_once_is_survived(endpoints, monkeypatch):
    monkeypatch.setenv("BIA_BINDER_HTTP_TIMEOUT", "1")
    path = "/bia/v2/search/study/accession"
    endpoints.faults.plan(path, ("hang", 3))
    assert bia.study("S-BIAD609").accession == "S-BIAD609"


@pytest.mark.parametrize("call", [
    lambda: idr.image(6001247),
    lambda: bia.study("S-BIAD609"),
    lambda: list(biostudies.study("S-BIADTEST").files()),
], ids=["idr", "bia", "biostudies-files"])
def test_malformed_json_is_a_clear_error(endpoints, call):
    for path in ("/idr/api/v0/m/images/6001247/", "/bia/v2/search/study/accession", f"{STUDY}/files"):
        endpoints.faults.plan(path, ("garbage", None))
    with pytest.raises(MalformedResponseError, match="did not answer with JSON"):
        call()


def test_chunk_reads_are_retried(endpoints):
    bucket, key = IDR_V05
    base = f"{endpoints.url}/s3proxy/{bucket}/{key}"
    image = open_ome_zarr(base)
    endpoints.faults.plan(f"/s3proxy/{bucket}/{key}/0/c/0/0/0/0", ("status", 503), ("status", 504))
    np.testing.assert_array_equal(image.levels[0].compute(), stores.image_data())
    assert endpoints.faults.hits[f"/s3proxy/{bucket}/{key}/0/c/0/0/0/0"] >= 3


def test_a_chunk_that_keeps_failing_fails_the_read_clearly(endpoints, monkeypatch):
    monkeypatch.setenv("BIA_BINDER_HTTP_RETRIES", "1")
    bucket, key = IDR_V05
    image = open_ome_zarr(f"{endpoints.url}/s3proxy/{bucket}/{key}")
    endpoints.faults.plan(f"/s3proxy/{bucket}/{key}/2/c/0/0/0/0", ("status", 500), ("status", 500))
    with pytest.raises(DataAccessError, match="2/c/0/0/0/0 failed after 2 attempts"):
        image.levels[2].compute()


def test_a_bad_setting_is_named(endpoints, monkeypatch):
    monkeypatch.setenv("BIA_BINDER_HTTP_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="BIA_BINDER_HTTP_TIMEOUT must be a non-negative float, not 'soon'"):
        _ = biostudies.study("S-BIADTEST").info
