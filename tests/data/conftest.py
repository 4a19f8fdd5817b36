"""Session fixtures: the fake services, a real S3 server (moto) holding generated OME-Zarr stores,
and the environment that points ``bia_binder.data`` at them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from . import stores
from .fake_services import BIA_ZARR_KEY, FakeServer

#: where each generated store lives in S3 (bucket, key prefix)
IDR_V04 = ("idr", "zarr/v0.4/idr0062A/6001247.zarr")  # bioformats2raw wrapper, big-endian, labels
IDR_V05 = ("idr", "zarr/v0.5/test/sharded.ome.zarr")  # zarr v3, sharded, labels
IDR_PLATE_V04 = ("idr", "zarr/v0.4/test/plate.zarr")
IDR_PLATE_V05 = ("idr", "zarr/v0.5/idr0010/76-45.ome.zarr")  # the catalogue's entry for image 1921421
BIA_ZARR = ("bioimaging-integrator-data", BIA_ZARR_KEY)
NOT_OME = ("idr", "zarr/bad/not-ome.zarr")
BROKEN_JSON = ("idr", "zarr/bad/broken-json.zarr")


@dataclass
class S3:
    endpoint: str

    def url(self, location: tuple[str, str], scheme: str = "http") -> str:
        bucket, key = location
        return f"s3://{bucket}/{key}" if scheme == "s3" else f"{self.endpoint}/{bucket}/{key}"


def _public_bucket(client, name: str) -> None:
    client.create_bucket(Bucket=name)
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{name}/*"}]}
    client.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))


def _upload(client, folder: Path, location: tuple[str, str]) -> None:
    bucket, prefix = location
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(folder).as_posix()}", Body=path.read_bytes())


def _generate(root: Path) -> dict[tuple[str, str], Path]:
    data = stores.image_data()
    labels = {"nuclei": stores.label_data()}
    written = {
        IDR_V04: root / "v04.zarr",
        IDR_V05: root / "v05.zarr",
        IDR_PLATE_V04: root / "plate04.zarr",
        IDR_PLATE_V05: root / "plate05.zarr",
        BIA_ZARR: root / "bia.zarr",
        NOT_OME: root / "not-ome.zarr",
        BROKEN_JSON: root / "broken.zarr",
    }
    stores.write_bioformats2raw(written[IDR_V04], data, big_endian=True, labels=labels)
    stores.write_image(written[IDR_V05], data, version="0.5", sharded=True, labels=labels)
    stores.write_plate(written[IDR_PLATE_V04])
    stores.write_plate(written[IDR_PLATE_V05], version="0.5")
    stores.write_bioformats2raw(written[BIA_ZARR], data[:, :1], big_endian=True, chunk=64)
    stores.write_not_ome(written[NOT_OME])
    written[BROKEN_JSON].mkdir()
    (written[BROKEN_JSON] / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {')
    return written


IDR_CATALOGUE_KEY = "catalogue/table.csv"
_CATALOGUE_COLUMNS = "OME-NGFF version,File Path,Study,Representative Image ID,Thumbnail"


def _idr_catalogue(endpoint: str) -> str:
    """A small catalogue with the columns of IDR's ome-ngff-samples table, naming the stores above.

    Image 1921421 has two exports (0.4 plate and 0.5 plate): the newest version must win.
    """
    rows = [
        f"0.4,https://livingobjects.ebi.ac.uk/{IDR_V04[0]}/{IDR_V04[1]},idr0062A,6001247,",
        f"0.4,https://livingobjects.ebi.ac.uk/{IDR_PLATE_V04[0]}/{IDR_PLATE_V04[1]},idr0010,1921421,",
        f"0.5,https://livingobjects.ebi.ac.uk/{IDR_PLATE_V05[0]}/{IDR_PLATE_V05[1]},idr0010,1921421,"
        f"https://livingobjects.ebi.ac.uk/{IDR_PLATE_V05[0]}/{IDR_PLATE_V05[1]}/A/2/0/",
    ]
    return "\n".join([_CATALOGUE_COLUMNS, *rows]) + "\n"


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server._server.server_port}"
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        for bucket in ("idr", "bioimaging-integrator-data"):
            _public_bucket(client, bucket)
        for location, folder in _generate(tmp_path_factory.mktemp("stores")).items():
            _upload(client, folder, location)
        client.put_object(Bucket="idr", Key=IDR_CATALOGUE_KEY, Body=_idr_catalogue(endpoint).encode())
        yield S3(endpoint)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def services() -> Iterator[FakeServer]:
    server = FakeServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def endpoints(services: FakeServer, s3: S3, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """Point the library (and notebook kernels, which inherit the environment) at the local servers."""
    monkeypatch.setenv("BIA_BINDER_BIOSTUDIES_URL", f"{services.url}/biostudies")
    monkeypatch.setenv("BIA_BINDER_BIA_API_URL", f"{services.url}/bia")
    monkeypatch.setenv("BIA_BINDER_IDR_URL", f"{services.url}/idr")
    monkeypatch.setenv("BIA_BINDER_S3_ENDPOINT", s3.endpoint)
    monkeypatch.setenv("BIA_BINDER_IDR_CATALOGUE", f"{s3.endpoint}/idr/{IDR_CATALOGUE_KEY}")
    monkeypatch.setenv("BIA_BINDER_HTTP_TIMEOUT", "10")
    monkeypatch.setenv("BIA_BINDER_HTTP_BACKOFF", "0.05")
    services.faults.clear()
    services.s3_endpoint = s3.endpoint
    yield services
    services.faults.clear()

