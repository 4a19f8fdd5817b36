"""The example notebooks run end to end against the local services (nbclient) and show results."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def run(name: str, tmp_path: Path) -> tuple[str, int]:
    """Execute a notebook; return its text output and how many images it displayed."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stdout")
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    return text, images


@pytest.mark.slow
def test_bia_study_to_projection(endpoints, tmp_path):
    text, images = run("bia-study-to-projection.ipynb", tmp_path)
    assert "S-BIAD609" in text and "dataset: Fluorescent images" in text
    assert "representations:" in text and ".ome.zarr" in text
    assert "plane (128, 128) uint16" in text
    assert int(re.search(r"projection max (\d+)", text)[1]) >= 1000  # the disks are bright
    assert images == 2


@pytest.mark.slow
def test_idr_segmentation(endpoints, tmp_path):
    text, images = run("idr-segmentation.ipynb", tmp_path)
    assert "Gene Symbol: AT1G01010, AT1G01020" in text
    assert "found 4 nuclei" in text  # the generated image has four disks
    assert images == 1


@pytest.mark.slow
def test_biostudies_files_download(endpoints, tmp_path):
    text, _ = run("biostudies-files-download.ipynb", tmp_path)
    assert "files on FTP under S-BIAD/609/S-BIAD609" in text
    assert "7 files" in text
    assert re.search(r"downloaded \S+ 300000 bytes", text)
