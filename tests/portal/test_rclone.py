"""rclone with our generated remotes against a local S3 server (moto) and a local HTTP mirror."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from jupyterhub.spawner import Spawner
from traitlets.config import Config

from bia_binder.portal.rclone import RCLONE_CONFIG_ENV, RcloneRemotes, configure_rclone
from tests.s3server import MotoServer

pytestmark = pytest.mark.skipif(shutil.which("rclone") is None, reason="rclone not installed (make install)")


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    with MotoServer() as server:
        yield server.endpoint


@pytest.fixture
def http_mirror(tmp_path: Path) -> Iterator[str]:
    """A directory served with HTML index pages, as ftp.ebi.ac.uk serves /biostudies/."""
    root = tmp_path / "mirror"
    (root / "fire" / "S-BIAD" / "609" / "S-BIAD609" / "Files").mkdir(parents=True)
    (root / "fire" / "S-BIAD" / "609" / "S-BIAD609" / "Files" / "readme.txt").write_text("study files")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def rclone(config: Path, *args: str) -> subprocess.CompletedProcess:
    # As in a session (JupyterHub passes sessions no AWS_* variables): rclone 1.60 fails on
    # an AWS_CA_BUNDLE the host may set for other tools.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        ["rclone", "--config", str(config), "--contimeout", "10s", "--timeout", "30s", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )


def test_default_remotes_point_at_ebi() -> None:
    sections = RcloneRemotes().sections()
    assert sections["biostudies"] == {"type": "http", "url": "https://ftp.ebi.ac.uk/biostudies/"}
    assert sections["ebi-s3"]["endpoint"] == "https://livingobjects.ebi.ac.uk"
    assert "access_key_id" not in sections["ebi-s3"]
    assert sections["bia"] == {"type": "alias", "remote": "ebi-s3:bioimaging-integrator-data"}


def test_configure_rclone_gives_sessions_the_config(tmp_path: Path) -> None:
    c = Config()
    c.Spawner.environment = {"OTHER": "1"}
    c.RcloneRemotes.extra_remotes = {"lab": {"type": "s3", "provider": "Minio", "endpoint": "http://10.0.0.1:9000"}}
    path = configure_rclone(c, tmp_path / "etc" / "rclone.conf")
    assert Spawner(config=c).environment == {"OTHER": "1", RCLONE_CONFIG_ENV: str(path)}
    listed = subprocess.run(["rclone", "--config", str(path), "listremotes"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) == {"biostudies:", "ebi-s3:", "bia:", "idr:", "lab:"}


def test_rclone_copy_from_s3_and_http_into_a_home(tmp_path: Path, s3_endpoint: str, http_mirror: str) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    s3.create_bucket(Bucket="bioimaging-integrator-data")
    zarr_files = {"S-BIAD609/image.zarr/.zattrs": b'{"multiscales": []}', "S-BIAD609/image.zarr/0/0.0": bytes(range(256)) * 64}
    for key, body in zarr_files.items():
        s3.put_object(Bucket="bioimaging-integrator-data", Key=key, Body=body, ACL="public-read")  # as at EBI

    config = RcloneRemotes(s3_endpoint=s3_endpoint, biostudies_url=http_mirror).write(tmp_path / "rclone.conf")
    home = tmp_path / "home"

    direct = rclone(config, "copy", "ebi-s3:bioimaging-integrator-data/S-BIAD609", str(home / "direct"))
    assert direct.returncode == 0, direct.stderr
    via_alias = rclone(config, "copy", "bia:S-BIAD609/image.zarr", str(home / "alias" / "image.zarr"))
    assert via_alias.returncode == 0, via_alias.stderr
    for key, body in zarr_files.items():
        relative = key.removeprefix("S-BIAD609/")
        assert (home / "direct" / relative).read_bytes() == body
        assert (home / "alias" / relative).read_bytes() == body

    from_http = rclone(config, "copy", "biostudies:fire/S-BIAD/609/S-BIAD609/Files", str(home / "study"))
    assert from_http.returncode == 0, from_http.stderr
    assert (home / "study" / "readme.txt").read_text() == "study files"

    # Requests are unsigned: moto refuses anonymous reads of a private object.
    s3.put_object(Bucket="bioimaging-integrator-data", Key="S-BIAD609/private.bin", Body=b"x")
    private = rclone(config, "copy", "--retries", "1", "bia:S-BIAD609", str(home / "private"))
    assert private.returncode != 0 and "403" in private.stderr
    assert not (home / "private" / "private.bin").exists()
