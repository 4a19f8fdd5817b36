"""The generated notebook as text: parameters are literals only, archive text never becomes code, the bytes
are reproducible, and what a link names is checked (unit tests: no kernel, no archive)."""

from __future__ import annotations

import ast
import copy
import json

import pytest

from bia_binder.events import LaunchError
from bia_binder.studies import accessions, notebook
from bia_binder.studies.accessions import Pin

SNAPSHOT = {
    "source": "bia", "kind": "study", "accession": "S-BIAD1", "id": "u", "version": 3,
    "title": 'Evil """ title\nimport os; os.system("id") <script>alert(1)</script> [x](javascript:alert(1))',
    "description": "*bold* `code`", "authors": ["A. <b>Author</b>"], "licence": "javascript:alert(1)", "doi": "",
    "release_date": "2024-01-01", "keywords": [], "links": {"BioImage Archive": "javascript:alert(1)"},
    "datasets": [{"id": "d", "title": "'); import os #", "description": "", "example_image_urls": [],
                  "images": [{"id": "i", "name": "x\"; import os", "formats": [".ome.zarr"], "dimensions": {"x": 1},
                              "size_bytes": 1, "thumbnail_url": "", "ome_zarr_url": "http://s3/x.zarr"}],
                  "images_truncated": False, "files": [], "files_truncated": False}],
    "datasets_truncated": False,
}
PARAMETERS = {"source": "bia", "accession": "S-BIAD1", "study_version": 3, "image": "", "permanent_link": "http://x/"}


def code_cells(nb) -> list[str]:
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def test_archive_text_never_reaches_code_cells():
    nb = notebook.make_notebook(SNAPSHOT, PARAMETERS)
    fixed = {notebook.METADATA, notebook.TABLE, notebook.OPEN_OME_ZARR, notebook.VIEWER, notebook.ANALYSIS,
             notebook.DEEP_LEARNING, notebook.PROVENANCE}
    cells = code_cells(nb)
    assert cells[0] == notebook.parameters_source(PARAMETERS)
    assert set(cells[1:]) <= fixed  # every other code cell is the template's own text
    header = nb.cells[0].source
    assert "<script>" not in header and "\\<script\\>" in header
    assert "](javascript:" not in header  # a non-http link is shown as text
    assert "\n" not in header.splitlines()[0]


def test_parameters_cell_is_literals_that_read_back():
    source = notebook.parameters_source({"accession": 'x"; import os', "n": 3, "flag": True})
    tree = ast.parse(source)
    assert all(isinstance(s, ast.Assign) and isinstance(s.value, ast.Constant) for s in tree.body)
    values = {s.targets[0].id: s.value.value for s in tree.body}
    assert values == {"accession": 'x"; import os', "n": 3, "flag": True}


@pytest.mark.parametrize("value", [["list"], {"a": 1}, 1.5, None, b"bytes"])
def test_parameters_refuse_anything_but_str_int_bool(value):
    with pytest.raises(ValueError):
        notebook.parameters_source({"x": value})


def test_same_snapshot_same_bytes_new_version_other_bytes():
    first = notebook.notebook_bytes(SNAPSHOT, PARAMETERS)
    assert notebook.notebook_bytes(copy.deepcopy(SNAPSHOT), dict(PARAMETERS)) == first
    assert [c["id"] for c in json.loads(first)["cells"]][:2] == ["cell-00", "cell-01"]
    changed = {**SNAPSHOT, "version": 4}
    assert notebook.notebook_bytes(changed, {**PARAMETERS, "study_version": 4}) != first


def test_no_ome_zarr_gives_files_and_download_cells():
    snapshot = copy.deepcopy(SNAPSHOT)
    snapshot["datasets"][0]["images"][0]["ome_zarr_url"] = ""
    cells = code_cells(notebook.make_notebook(snapshot, PARAMETERS))
    assert notebook.FILES in cells and notebook.OPEN_DOWNLOADED in cells and notebook.OPEN_OME_ZARR not in cells


@pytest.mark.parametrize("source, spec, kind, identifier", [
    ("bia", "S-BIAD609", "study", "S-BIAD609"),
    ("bia", "S-BSST7", "study", "S-BSST7"),
    ("idr", "idr0062A", "study", "idr0062A"),
    ("idr", "idr0010", "study", "idr0010"),
    ("idr", "image/6001247", "image", "6001247"),
    ("idr", "screen/2851", "screen", "2851"),
    ("biostudies", "S-BSST7", "study", "S-BSST7"),
    ("biostudies", "E-MTAB-123", "study", "E-MTAB-123"),
])
def test_accepted_specs(source, spec, kind, identifier):
    parsed = accessions.parse(source, spec)
    assert (parsed.kind, parsed.identifier, parsed.pin) == (kind, identifier, None)
    pin = Pin(2, "0123456789ab", 1, "ba9876543210")
    assert accessions.parse(source, parsed.persistent(pin)).pin == pin


@pytest.mark.parametrize("source, spec", [
    ("bia", "S-BIAD"), ("bia", "s-biad609"), ("bia", "S-BIAD609%22"), ("bia", "S-BIAD609/x"), ("bia", "S-EPMC1"),
    ("bia", "S-BIAD609/v1-0123456789ab-t1-e0123456789aZ"), ("idr", "idr0062AB"), ("idr", "image/0"),
    ("idr", "image/1e5"), ("idr", "image"), ("idr", "image/1/2/3"), ("biostudies", "S-B 1"), ("bia", ""),
])
def test_refused_specs(source, spec):
    with pytest.raises(LaunchError) as refused:
        accessions.parse(source, spec)
    assert refused.value.status_code == 400


@pytest.mark.parametrize("value, ok", [
    ("71fb4f2d-6cff-495f-ae21-d1c6ab068de7", True), ("6001247", True), ("", True),
    ("71FB4F2D-6cff-495f-ae21-d1c6ab068de7", False), ("1 or 1", False), ("'", False), ("1\n", False),
])
def test_image_parameter(value, ok):
    if ok:
        assert accessions.image_parameter(value) == value
    else:
        with pytest.raises(LaunchError):
            accessions.image_parameter(value)


def test_store_entries_are_written_once_and_names_are_checked(tmp_path):
    from bia_binder.studies.store import StudyStore, entry_name

    store = StudyStore(tmp_path)
    name = entry_name("S-BIAD1", "v0-0123456789ab-t1-e0123456789ab")
    entry = store.publish(name, {"study.json": b"{}\n", "explore-S-BIAD1.ipynb": b"first"})
    assert store.publish(name, {"study.json": b"other", "explore-S-BIAD1.ipynb": b"second"}) == entry
    assert (entry / "explore-S-BIAD1.ipynb").read_bytes() == b"first"  # never rewritten
    assert store.lookup(name) == entry
    for bad in ("../" + name, name + "/..", ".building-x", "S-BIAD1@v0", f"{name}/x"):
        assert store.lookup(bad) is None
    for study, pin in (("S-BIAD1/..", "v0-0123456789ab-t1-e0123456789ab"), ("S-BIAD1", "v0-x")):
        with pytest.raises(ValueError):
            entry_name(study, pin)
