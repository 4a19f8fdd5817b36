"""Fixtures of study launches: the archives' stand-ins (tests/data's, extended), the S3 stand-in with
OME-Zarr stores, and the study environment built from its lock (once per test session)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.data.conftest import IDR_CATALOGUE_KEY, s3  # noqa: F401 - the S3 stand-in fixture, reused
from tests.data.fake_services import FakeServer

from .standins import start_services, upload_thumbnail


@pytest.fixture(scope="session")
def archives(s3) -> Iterator[FakeServer]:  # noqa: F811
    server = start_services()
    server.s3_endpoint = s3.endpoint
    upload_thumbnail(s3.endpoint)
    try:
        yield server
    finally:
        server.stop()


ENDPOINT_VARIABLES = ("BIA_BINDER_BIOSTUDIES_URL", "BIA_BINDER_BIA_API_URL", "BIA_BINDER_IDR_URL",
                      "BIA_BINDER_S3_ENDPOINT", "BIA_BINDER_IDR_CATALOGUE")


def endpoint_environ(archives: FakeServer) -> dict[str, str]:
    return {
        "BIA_BINDER_BIOSTUDIES_URL": f"{archives.url}/biostudies",
        "BIA_BINDER_BIA_API_URL": f"{archives.url}/bia",
        "BIA_BINDER_IDR_URL": f"{archives.url}/idr",
        "BIA_BINDER_S3_ENDPOINT": archives.s3_endpoint,
        "BIA_BINDER_IDR_CATALOGUE": f"{archives.s3_endpoint}/idr/{IDR_CATALOGUE_KEY}",
        "BIA_BINDER_HTTP_TIMEOUT": "10",
        "BIA_BINDER_HTTP_BACKOFF": "0.05",
    }


@pytest.fixture
def endpoints(archives: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """``bia_binder.data`` (in this process and in notebook kernels) pointed at the stand-ins."""
    for name, value in endpoint_environ(archives).items():
        monkeypatch.setenv(name, value)
    archives.faults.clear()
    yield archives
    archives.faults.clear()


@pytest.fixture(scope="session")
def study_environment(tmp_path_factory: pytest.TempPathFactory):
    """The study environment, built from environments/study/pylock.toml as the service builds it."""
    from bia_binder.builder import EnvBuilder
    from bia_binder.studies.environment import StudyEnvironment

    builder = EnvBuilder(cache_dir=str(tmp_path_factory.mktemp("study-envs")))
    lines: list[str] = []
    return asyncio.run(StudyEnvironment().cached_or_built(builder, lines.append))


@pytest.fixture(scope="session")
def study_kernel(study_environment, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A kernelspec running the study environment's Python (found through JUPYTER_PATH)."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "study-env"
    spec.mkdir(parents=True)
    python = str(study_environment.bin_dir / "python")
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "study environment", "language": "python"}))
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(root), *filter(None, [os.environ.get("JUPYTER_PATH")])])
    return "study-env"


@pytest.fixture
def tmp_cwd(tmp_path: Path) -> Path:
    return tmp_path
