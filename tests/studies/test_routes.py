"""Study launch routes of the binder service, in process, against the archives' stand-ins: what is refused
(and that nothing reached the archive first), each failure's status, permanent links, the stored files.

No hub runs here: a launch that gets past its study and environment ends at the launcher (503), which is
where the whole-stack test (test_stack.py) takes over.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from traitlets.config import Config

from bia_binder.service.app import BinderService

from .standins import NO_ZARR, PRIVATE, UNRELEASED


@pytest.fixture
async def service(endpoints, study_environment, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "envs").symlink_to(study_environment.root.parent)  # the prebuilt study environment
    config = Config()
    config.ArchiveProvider.timeout = 2
    config.ArchiveProvider.retries = 1
    config.ArchiveProvider.backoff = 0.05
    config.Launcher.hub_api_url = "http://127.0.0.1:9/hub/api"  # no hub: launches stop at the launcher
    config.StudySearch.bia_search_url = f"{endpoints.url}/bia-search/search/fts"
    config.StudySearch.biostudies_collection = ""
    app = BinderService(config=config)
    app.data_dir = str(data_dir)
    sock, port = bind_unused_port()
    app.public_url = f"http://127.0.0.1:{port}/"
    app.setup()
    server = HTTPServer(app.make_app())
    server.add_sockets([sock])
    app.url = f"http://127.0.0.1:{port}"
    yield app
    server.stop()


async def stream(app, path: str) -> list[dict]:
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.get(f"{app.url}{path}", headers={"Accept": "text/event-stream"})
    return [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]


def archive_requests(endpoints) -> int:
    return len(endpoints.requests)


INJECTIONS = [
    'S-BIAD609"; import os; os.system("id")#',
    "S-BIAD609'\nimport os",
    "S-BIAD609\n",
    "S-BIAD609 ",
    "__import__('os').system('id')",
    "S-BIAD609/../../etc",
]


@pytest.mark.parametrize("spec", INJECTIONS)
async def test_malformed_accessions_are_refused_before_any_request(service, endpoints, spec):
    before = archive_requests(endpoints)
    events = await stream(service, f"/build/bia/{quote(spec, safe='')}")
    assert [e["phase"] for e in events] == ["failed"]
    assert events[0]["status_code"] == 400
    assert "is not a bia study" in events[0]["message"] or "control characters" in events[0]["message"]
    async with httpx.AsyncClient() as client:
        page = await client.get(f"{service.url}/v2/bia/{quote(spec, safe='')}")
    assert page.status_code == 400
    assert archive_requests(endpoints) == before


@pytest.mark.parametrize("query, why", [
    ("image=%22%29%3Bimport%20os", "must be a BIA image uuid or an IDR image id"),
    ("image=1%0A2", "must be a BIA image uuid"),
    ("filepath=a.ipynb", "Unknown query parameter 'filepath'"),
    ("repo=x", "Unknown query parameter 'repo'"),
    ("image=1&image=2", "more than once"),
])
async def test_query_keys_other_than_labpath_urlpath_image_are_refused(service, endpoints, query, why):
    before = archive_requests(endpoints)
    for source, spec in (("bia", "S-BIAD609"), ("idr", "image/6001247")):
        events = await stream(service, f"/build/{source}/{spec}?{query}")
        assert len(events) == 1 and events[0]["status_code"] == 400 and why in events[0]["message"], events
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{service.url}/v2/{source}/{spec}?{query}")).status_code == 400
    assert archive_requests(endpoints) == before


@pytest.mark.parametrize("path", ["/v2/idr/image/12x", "/v2/idr/idr62", "/v2/idr/well/1", "/v2/biostudies/S-BIAD",
                                  "/v2/bia/S-BIAD609/v0-zz", "/v2/bia/S-XYZ1"])
async def test_malformed_idr_and_biostudies_specs_are_400(service, path):
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{service.url}{path}")
    assert response.status_code == 400, path


@pytest.mark.parametrize("path, status, words", [
    ("/build/bia/S-BIAD9999", 404, "not found"),
    ("/build/idr/image/424242", 404, "not found"),
    ("/build/biostudies/S-BSST999", 404, "not found"),
    (f"/build/bia/{PRIVATE}", 403, "private"),
    (f"/build/bia/{UNRELEASED}", 403, "not released until 2099-01-01"),
])
async def test_archive_answers_become_one_failed_event(service, path, status, words):
    events = await stream(service, path)
    assert events[-1]["phase"] == "failed" and events[-1]["status_code"] == status, events
    assert words in events[-1]["message"]
    assert sum(e["phase"] == "failed" for e in events) == 1


async def test_archive_outage_is_502_after_bounded_retries(service, endpoints):
    path = "/bia/v2/search/study/accession"
    endpoints.faults.plan(path, *[("status", 503)] * 5)
    events = await stream(service, "/build/bia/S-BIAD609")
    assert events[-1]["status_code"] == 502 and "try again later" in events[-1]["message"]
    assert endpoints.faults.hits[path] == 2  # the first try and one retry (ArchiveProvider.retries = 1)


async def test_slow_archive_is_504(service, endpoints):
    endpoints.faults.plan("/bia/v2/search/study/accession", ("hang", 3), ("hang", 3))
    events = await stream(service, "/build/bia/S-BIAD609")
    assert events[-1]["status_code"] == 504, events[-1]


async def test_launch_writes_the_study_and_uses_the_prebuilt_environment(service):
    events = await stream(service, "/build/bia/S-BIAD609")
    phases = [e["phase"] for e in events]
    assert phases[:3] == ["fetching", "fetching", "built"], events
    study = events[1]["study"]
    assert study["title"].startswith("The importance of the blood") and "publicdomain/zero" in study["licence"]
    assert "Found built environment" in events[2]["message"]  # no build per study
    assert events[-1]["phase"] == "failed" and events[-1]["status_code"] == 503  # no hub in this test
    entries = list((Path(service.data_dir) / "studies").iterdir())
    assert [sorted(p.name for p in entry.iterdir()) for entry in entries] == [["explore-S-BIAD609.ipynb", "study.json"]]


async def pinned_link(service, spec: str) -> tuple[str, bytes]:
    """A launch's permanent link (from the store entry it made) and its notebook's bytes."""
    await stream(service, f"/build/{spec}")
    store = Path(service.data_dir) / "studies"
    entry = max(store.iterdir(), key=lambda p: p.stat().st_mtime_ns)
    notebook = next(entry.glob("*.ipynb"))
    parameters = "".join(json.loads(notebook.read_text())["cells"][1]["source"])
    link = next(line.split("'")[1] for line in parameters.splitlines() if line.startswith("permanent_link"))
    return link, notebook.read_bytes()


async def test_permanent_links_reproduce_and_move_with_the_study_version(service, endpoints, tmp_path):
    link, first = await pinned_link(service, "bia/S-BIAD609")
    assert link.startswith(f"{service.url}/v2/bia/S-BIAD609/v0-") and "-t1-e" in link
    again, second = await pinned_link(service, "bia/S-BIAD609")
    assert (again, second) == (link, first)
    # the same notebook from a service that never saw it (nothing stored): the same bytes
    import shutil

    shutil.rmtree(Path(service.data_dir) / "studies")
    third_link, third = await pinned_link(service, "bia/S-BIAD609")
    assert (third_link, third) == (link, first)

    endpoints.services.bump_version()
    try:
        new_link, new = await pinned_link(service, "bia/S-BIAD609")
        assert new_link != link and "/v2/bia/S-BIAD609/v1-" in new_link and new != first
        # the old permanent link still gives the old notebook, byte for byte (kept in the store)
        pinned = link.removeprefix(service.url)
        events = await stream(service, pinned.replace("/v2/", "/build/"))
        assert "Reusing S-BIAD609 at v0-" in events[0]["message"]
        stored = next(p for p in (Path(service.data_dir) / "studies").iterdir() if p.name.endswith(link.rsplit("/", 1)[1]))
        assert next(stored.glob("*.ipynb")).read_bytes() == first
        # where it was not kept, the pinned link says the archive moved on
        shutil.rmtree(stored)
        events = await stream(service, pinned.replace("/v2/", "/build/"))
        assert events[-1]["status_code"] == 404 and "not available any more" in events[-1]["message"]
    finally:
        endpoints.services.bia["study"]["88d36abc-c77f-4127-9551-b8409cb5d4a6"]["version"] -= 1
        endpoints.services.bia["study"]["88d36abc-c77f-4127-9551-b8409cb5d4a6"]["title"] = (
            endpoints.services.bia["study"]["88d36abc-c77f-4127-9551-b8409cb5d4a6"]["title"].removesuffix(" (revised)"))


async def test_launch_page_of_a_study(service):
    async with httpx.AsyncClient() as client:
        page = await client.get(f"{service.url}/v2/bia/{NO_ZARR}?image=0b1d6a4e-1000-4000-8000-000000000003")
    assert page.status_code == 200
    assert f'data-build-url="/build/bia/{NO_ZARR}?image=0b1d6a4e-1000-4000-8000-000000000003"' in page.text


async def get_json(app, path: str) -> tuple[int, dict]:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(f"{app.url}{path}", headers={"Accept": "application/json"})
    return response.status_code, response.json()


async def test_search_finds_studies_with_their_facts_and_thumbnails(service, endpoints):
    status, body = await get_json(service, "/api/studies/search?q=blood")
    assert status == 200 and body["source"] == "bia" and body["total"] == 2  # S-BIAD609 and its TIFF twin
    found = {r["accession"]: r for r in body["results"]}
    study = found["S-BIAD609"]
    assert study["title"].startswith("The importance of the blood")
    assert (study["organism"], study["imaging_method"]) == ("Mus musculus", "confocal microscopy")
    assert "publicdomain/zero" in study["licence"] and study["launch"] == "/v2/bia/S-BIAD609"
    async with httpx.AsyncClient() as client:
        picture = await client.get(f"{service.url}{study['thumbnail']}")
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
        assert picture.content.startswith(b"\x89PNG")
        unknown = await client.get(f"{service.url}/api/studies/thumbnail/S-BIAD7")
        assert unknown.status_code == 404
        bad = await client.get(f"{service.url}/api/studies/thumbnail/S-BIAD7%22")
        assert bad.status_code == 400
    assert endpoints.services.bia_search_requests[-1]["query"] == "blood"


async def test_thumbnail_proxy_fetches_only_from_the_image_store(service):
    from bia_binder.service.studies import StudySearch

    search = StudySearch(s3_endpoint="http://127.0.0.1:5")
    assert search.thumbnail_allowed("http://127.0.0.1:5/bucket/a.png")
    for url in ("http://127.0.0.1:6/bucket/a.png", "https://127.0.0.1:5/a.png", "http://169.254.169.254/latest",
                "file:///etc/passwd", "http://127.0.0.1:5@evil.example/a.png"):
        assert not search.thumbnail_allowed(url), url


async def test_search_falls_back_to_biostudies(service, endpoints):
    endpoints.faults.plan("/bia-search/search/fts", ("status", 503))
    status, body = await get_json(service, "/api/studies/search?q=nuclei")
    assert status == 200 and body["source"] == "biostudies"
    assert body["results"][0]["accession"] == "S-BIAD1" and body["results"][0]["title"] == "Study 1 about nuclei"


@pytest.mark.parametrize("query", ["", "q=", "q=" + "x" * 201, "q=a&page=0", "q=a&page=x"])
async def test_search_refuses_bad_queries(service, query):
    status, body = await get_json(service, f"/api/studies/search?{query}")
    assert status == 400 and body["message"]


async def test_idr_study_name_finds_its_projects(endpoints):
    from bia_binder.providers import get_provider

    provider = get_provider("idr", "idr0062A")
    resolved = await provider.resolve()
    snapshot = provider.last_snapshot
    assert snapshot["title"] == "idr0062-blin-nuclearsegmentation/experimentA"
    assert resolved.persistent_spec.startswith("idr0062A/v0-")
    assert any(i["ome_zarr_url"] for d in snapshot["datasets"] for i in d["images"])


async def test_a_study_too_large_to_list_is_capped_not_refused(endpoints):
    from bia_binder.providers import get_provider

    provider = get_provider("idr", "dataset/5051")  # 612 images: more than one page of IDR's API
    before = len(endpoints.requests)
    await provider.resolve()
    dataset = provider.last_snapshot["datasets"][0]
    assert len(dataset["images"]) == 12 and dataset["images_truncated"] is True
    requests = [r for r in endpoints.requests[before:] if "/datasets/5051/images" in r]
    assert len(requests) == 1  # one page fetched, not all of them
