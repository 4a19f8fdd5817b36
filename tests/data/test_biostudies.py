"""BioStudies against a local server answering in its wire format (PageTab, /info, files, search)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bia_binder.data import MalformedResponseError, NotFoundError, biostudies

from .fake_services import BIG_STUDY, BIG_STUDY_FILES, CURSOR_QUERY, SEARCH_HITS, file_bytes


@pytest.mark.parametrize(
    ("accession", "style"),
    [("S-BIADTEST", "direct"), ("S-BSSTTEST", "ftpHttp_link"), (BIG_STUDY, "302")],
)
def test_study_json_in_every_answer_style(endpoints, accession, style):
    study = biostudies.study(accession)
    assert study.json["accno"] == accession
    assert "section" in study.json
    assert study.title  # every fixture has one


def test_title_and_attributes_come_from_pagetab(endpoints):
    study = biostudies.study("S-BIADTEST")
    assert study.title == "A test submission with title greater than 25 characters"
    assert study.attributes["ReleaseDate"] == "2024-02-13"


def test_info_and_rel_path(endpoints):
    study = biostudies.study("S-BIADTEST")
    assert study.info["relPath"] == "S-BIAD/TEST/S-BIADTEST"
    assert study.rel_path == "S-BIAD/TEST/S-BIADTEST"
    assert study.ftp_url("a b/c.tif").endswith("/ftp/biostudies/fire/S-BIAD/TEST/S-BIADTEST/Files/a%20b/c.tif")


@pytest.mark.parametrize(
    ("accession", "expected"),
    [
        ("S-BIAD609", "S-BIAD/609/S-BIAD609"),
        ("S-BIAD1234", "S-BIAD/234/S-BIAD1234"),
        ("S-BSST7", "S-BSST/S-BSST0-99/S-BSST7"),
        ("S-BSST42", "S-BSST/S-BSST0-99/S-BSST42"),
        ("S-BIADTEST", "S-BIAD/TEST/S-BIADTEST"),
        ("E-MTAB-1234", "E-MTAB-/234/E-MTAB-1234"),
    ],
)
def test_rel_path_rules(accession, expected):
    assert biostudies.rel_path(accession) == expected


def test_rel_path_rejects_what_is_no_accession():
    with pytest.raises(ValueError, match="not a BioStudies accession"):
        biostudies.rel_path("hello world")


def test_files_page_through_the_api(endpoints):
    before = len(endpoints.requests)
    files = list(biostudies.study(BIG_STUDY).files())
    assert len(files) == BIG_STUDY_FILES
    assert [f.attributes["Index"] for f in files[998:1002]] == ["998", "999", "1000", "1001"]
    pages = [r for r in endpoints.requests[before:] if "/files?" in r]
    assert len(pages) == 3 and all("limit=1000" in p for p in pages)


def test_files_of_a_small_study_keep_types_and_attributes(endpoints):
    files = list(biostudies.study("S-BIADTEST").files())
    assert [f.path for f in files][:2] == ["study_component1/im06.png", "study_component1/im08.png"]
    assert {f.type for f in files} == {"file", "directory"}
    assert files[0].attributes["metadata1_key"] == "metadata1_value"


def test_download_with_progress_writes_the_exact_bytes(endpoints, tmp_path: Path, capsys):
    study = biostudies.study("S-BIADTEST")
    path = study.download("study_component2/im06.png", tmp_path)
    assert path == tmp_path / "im06.png"
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(
        file_bytes("S-BIADTEST", "study_component2/im06.png")).digest()
    assert "im06.png" in capsys.readouterr().err  # the progress bar
    assert not list(tmp_path.glob("*.part"))


def test_stream_yields_the_file(endpoints):
    study = biostudies.study("S-BIADTEST")
    assert b"".join(study.stream("study_component1/im08.png", chunk_size=4096)) == file_bytes(
        "S-BIADTEST", "study_component1/im08.png")


def test_download_of_a_missing_file_names_it(endpoints, tmp_path: Path):
    with pytest.raises(NotFoundError, match="S-BIADTEST file 'nope.tif' not found"):
        biostudies.study("S-BIADTEST").download("nope.tif", tmp_path)
    assert not list(tmp_path.iterdir())


def test_unknown_accession_is_named(endpoints):
    with pytest.raises(NotFoundError, match="BioStudies study S-BIAD999999 not found"):
        _ = biostudies.study("S-BIAD999999").json


def test_search_follows_pages_to_the_total(endpoints):
    hits = list(biostudies.search("mouse brain", page_size=100))
    assert len(hits) == SEARCH_HITS
    assert hits[0]["accession"] == "S-BIAD1" and hits[-1]["accession"] == f"S-BIAD{SEARCH_HITS}"
    assert len(list(biostudies.search("mouse", page_size=20, limit=45))) == 45


def test_search_follows_a_cursor(endpoints):
    before = len(endpoints.requests)
    hits = list(biostudies.search(CURSOR_QUERY, page_size=100))
    assert [h["accession"] for h in hits] == [f"S-BIAD{i}" for i in range(1, SEARCH_HITS + 1)]
    asked = [r for r in endpoints.requests[before:] if "/search?" in r]
    assert len(asked) == 3 and "cursor=at%3A100" in asked[1] and "page=" not in asked[1]


def test_an_answer_that_is_not_pagetab_is_a_clear_error(endpoints):
    endpoints.faults.plan("/biostudies/api/v1/studies/S-BIADTEST", ("garbage", None))
    with pytest.raises(MalformedResponseError, match="did not answer with JSON"):
        _ = biostudies.study("S-BIADTEST").json
