"""Every kind of generated starter notebook runs top to bottom in the study environment (nbclient),
against the archives' stand-ins, and shows what it promises: a thumbnail figure, the viewer widget, a CSV."""

from __future__ import annotations

import asyncio
import csv
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from bia_binder.providers import get_provider
from bia_binder.studies.launch import study_files

from .standins import NO_ZARR

pytestmark = pytest.mark.slow

WIDGET = "application/vnd.jupyter.widget-view+json"


def generate(source: str, spec: str, into: Path, image: str = "") -> tuple[str, dict]:
    """The files a launch of ``source/spec`` writes into its session, written to ``into``; the notebook's name."""
    provider = get_provider(source, spec)
    resolved = asyncio.run(provider.resolve())
    study = provider.study_spec()
    from bia_binder.studies.accessions import Pin

    files = study_files(study, Pin.parse(resolved.ref), provider.last_snapshot,
                        f"http://binder.test/v2/{source}/{resolved.persistent_spec}", image)
    for name, content in files.items():
        (into / name).write_bytes(content)
    return next(name for name in files if name.endswith(".ipynb")), provider.last_snapshot


def execute(path: Path, kernel: str) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=180, kernel_name=kernel, resources={"metadata": {"path": str(path.parent)}}).execute()
    return notebook


def outputs(notebook, mime: str) -> int:
    return sum(mime in o.get("data", {}) for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))


def stdout(notebook) -> str:
    return "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")


def check_common(notebook, directory: Path, accession: str) -> tuple[str, int]:
    text = stdout(notebook)
    assert outputs(notebook, "image/png") >= 1, "no thumbnail figure"
    assert outputs(notebook, WIDGET) == 1, "no viewer widget"
    found = re.search(r"(\d+) regions above the Otsu threshold", text)
    assert found, text
    table = directory / f"regions-{accession.replace('/', '-')}.csv"
    rows = list(csv.reader(table.open()))
    assert rows[0][:2] == ["label", "area"] and len(rows) - 1 == int(found[1])
    assert "Permanent link: http://binder.test/v2/" in text
    assert "No model weights at" in text  # the deep-learning cell says in one line how to get them
    return text, int(found[1])


def test_bia_study_with_ome_zarr(endpoints, study_kernel, tmp_path):
    name, snapshot = generate("bia", "S-BIAD609", tmp_path)
    assert name == "explore-S-BIAD609.ipynb" and (tmp_path / "study.json").is_file()
    notebook = execute(tmp_path / name, study_kernel)
    text, regions = check_common(notebook, tmp_path, "S-BIAD609")
    assert regions == 4  # the generated image has four bright disks
    assert "Metadata refreshed from the API: S-BIAD609 is unchanged" in text
    assert "axes czyx" in text and "pixel size" in text and "micrometer" in text
    table = next(o for o in notebook.cells[5].outputs if "text/html" in o.get("data", {}))["data"]["text/html"]
    assert "Fluorescent images" in table and ".ome.zarr" in table
    # the thumbnail figure is in the table's cell: the archive's own 256 px thumbnail (a PNG in S3)
    assert snapshot["datasets"][0]["images"][0]["thumbnail_url"].endswith(".png")
    assert any("image/png" in o.get("data", {}) for o in notebook.cells[5].outputs)


def test_bia_study_without_ome_zarr(endpoints, study_kernel, tmp_path):
    name, snapshot = generate("bia", NO_ZARR, tmp_path)
    assert all(not i["ome_zarr_url"] for d in snapshot["datasets"] for i in d["images"])
    notebook = execute(tmp_path / name, study_kernel)
    text, regions = check_common(notebook, tmp_path, NO_ZARR)
    assert regions == 4
    assert re.search(r"downloaded images/cells.tif to downloads/cells.tif \(\d+ bytes\)", text)
    assert f"rclone copy 'biostudies:S-BIAD/000/{NO_ZARR}/Files/images/cells.tif'" in text
    assert (tmp_path / "downloads" / "cells.tif").stat().st_size > 1000


def test_idr_image(endpoints, study_kernel, tmp_path):
    name, _ = generate("idr", "image/6001247", tmp_path)
    assert name == "explore-idr-image-6001247.ipynb"
    notebook = execute(tmp_path / name, study_kernel)
    text, regions = check_common(notebook, tmp_path, "image/6001247")
    assert regions == 4
    assert "{'name': 'B4_C3.tif'}" in text  # refreshed from IDR's API


def test_idr_screen(endpoints, study_kernel, tmp_path):
    name, snapshot = generate("idr", "screen/2851", tmp_path)
    assert snapshot["title"] == "idr0010/screenA"
    assert snapshot["datasets"][0]["images"][0]["ome_zarr_url"]
    notebook = execute(tmp_path / name, study_kernel)
    check_common(notebook, tmp_path, "screen/2851")
