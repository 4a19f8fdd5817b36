"""zenodo, figshare and dataverse against fake services in their real wire formats, with a fake doi.org."""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path
from urllib.parse import quote

import pytest

from bia_binder.providers import ProviderError

from . import fakes
from .conftest import Log, files_in, provider


def zip_bytes(files: dict[str, str], prefix: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(prefix + name, content)
    return buffer.getvalue()


def number() -> int:
    return random.randrange(10**6, 10**9)


# --- zenodo --------------------------------------------------------------------------------------------
@pytest.fixture
def zen(zenodo, doi_org):
    return {"ZenodoProvider": {"zenodo_url": zenodo.url, "doi_resolver": doi_org.url}}


def add_zenodo_record(
    zenodo, doi_org, files: dict[str, bytes], concept: int | None = None, record_id: int | None = None, **kw
) -> fakes.ZenodoRecord:
    record = fakes.ZenodoRecord(id=record_id or number(), concept_id=concept or number(), files=files, **kw)
    zenodo.fake.records[record.id] = record
    for n in (record.id, record.concept_id):  # doi.org → zenodo.org/doi/<doi> (which redirects on)
        doi_org.fake[f"10.5281/zenodo.{n}"] = f"{zenodo.url}/doi/10.5281/zenodo.{n}"
    return record


async def test_zenodo_concept_doi_resolves_to_latest_version(zen, zenodo, doi_org, tmp_path: Path):
    concept = number()
    v1 = add_zenodo_record(zenodo, doi_org, {"requirements.txt": b"numpy\n"}, concept=concept, record_id=concept + 1)
    v2 = add_zenodo_record(zenodo, doi_org, {"requirements.txt": b"scipy\n"}, concept=concept, record_id=concept + 2)

    resolved = await provider("zenodo", f"10.5281/zenodo.{concept}", **zen).resolve()
    assert resolved.ref == str(v2.id)
    assert resolved.persistent_spec == f"10.5281/zenodo.{v2.id}"
    assert resolved.ref_url == f"{doi_org.url}/10.5281/zenodo.{v2.id}"
    assert resolved.slug == f"zenodo-{v2.id}"
    assert not any(p.startswith("/records/") for p in zenodo.paths())  # the HTML landing page is never fetched
    # Zenodo's API redirects a concept record id to the latest version too
    assert (await provider("zenodo", str(concept), **zen).resolve()).ref == str(v2.id)

    pinned = await provider("zenodo", f"https://doi.org/10.5281/zenodo.{v1.id}", **zen).resolve()
    assert pinned.ref == str(v1.id)
    p = provider("zenodo", pinned.persistent_spec, **zen)
    await p.fetch(await p.resolve(), tmp_path / "r", Log())
    assert files_in(tmp_path / "r") == {"requirements.txt": b"numpy\n"}


@pytest.mark.parametrize("form", ["{url}/records/{id}", "{url}/record/{id}", "{id}", "doi:10.5281/zenodo.{id}"])
async def test_zenodo_accepts_record_urls_and_ids(zen, zenodo, doi_org, form: str):
    record = add_zenodo_record(zenodo, doi_org, {"a.txt": b"a"})
    spec = quote(form.format(url=zenodo.url, id=record.id), safe="")
    assert (await provider("zenodo", spec, **zen).resolve()).ref == str(record.id)


async def test_zenodo_single_zip_is_unpacked_and_its_top_directory_lifted(zen, zenodo, doi_org, tmp_path: Path):
    archive = zip_bytes({"requirements.txt": "numpy\n", "notebooks/a.ipynb": "{}"}, prefix="org-repo-abc123/")
    record = add_zenodo_record(zenodo, doi_org, {"org/repo-v1.0.zip": archive})
    p = provider("zenodo", f"10.5281/zenodo.{record.id}", **zen)
    log = Log()
    await p.fetch(await p.resolve(), tmp_path / "r", log)
    assert files_in(tmp_path / "r") == {"requirements.txt": b"numpy\n", "notebooks/a.ipynb": b"{}"}
    assert any("Extracting" in line for line in log)


async def test_zenodo_several_files_are_kept_as_they_are(zen, zenodo, doi_org, tmp_path: Path):
    files = {"data.zip": zip_bytes({"x": "y"}), "environment.yml": b"dependencies: []\n"}
    record = add_zenodo_record(zenodo, doi_org, files)
    p = provider("zenodo", f"10.5281/zenodo.{record.id}", **zen)
    await p.fetch(await p.resolve(), tmp_path / "r", Log())
    assert files_in(tmp_path / "r") == files


async def test_zenodo_oversize_is_413_by_metadata_and_by_stream(zen, zenodo, doi_org, tmp_path: Path):
    limits = {**zen, "RepoProvider": {"allow_local_repos": True, "max_repo_size": 1000}}
    honest = add_zenodo_record(zenodo, doi_org, {"big.bin": b"x" * 5000})
    lying = add_zenodo_record(zenodo, doi_org, {"big.bin": b"x" * 5000}, declared_size=10)
    bomb = add_zenodo_record(zenodo, doi_org, {"bomb.zip": zip_bytes({"zeros": "0" * 100_000})})
    for record in (honest, lying, bomb):
        p = provider("zenodo", f"10.5281/zenodo.{record.id}", **limits)
        with pytest.raises(ProviderError) as error:
            await p.fetch(await p.resolve(), tmp_path / str(record.id), Log())
        assert error.value.status_code == 413, record
        assert "max_repo_size" in error.value.message


async def test_zenodo_unsafe_file_name_is_refused(zen, zenodo, doi_org, tmp_path: Path):
    record = add_zenodo_record(zenodo, doi_org, {"../escape.txt": b"x", "ok.txt": b"y"})
    p = provider("zenodo", f"10.5281/zenodo.{record.id}", **zen)
    with pytest.raises(ProviderError) as error:
        await p.fetch(await p.resolve(), tmp_path / "r", Log())
    assert error.value.status_code == 400
    assert not (tmp_path / "escape.txt").exists()


async def test_zenodo_errors(zen, zenodo, doi_org):
    with pytest.raises(ProviderError) as missing_doi:
        await provider("zenodo", "10.5281/zenodo.1", **zen).resolve()
    assert missing_doi.value.status_code == 404 and "10.5281/zenodo.1" in missing_doi.value.message

    doi_org.fake["10.21105/joss.01277"] = "https://joss.theoj.org/papers/10.21105/joss.01277"
    with pytest.raises(ProviderError) as foreign:
        await provider("zenodo", "10.21105/joss.01277", **zen).resolve()
    assert foreign.value.status_code == 400 and "not a Zenodo record" in foreign.value.message

    with pytest.raises(ProviderError) as missing_record:
        await provider("zenodo", "4", **zen).resolve()
    assert missing_record.value.status_code == 404

    with pytest.raises(ProviderError) as malformed:
        await provider("zenodo", "not a doi", **zen).resolve()
    assert malformed.value.status_code == 400


async def test_zenodo_unreachable_is_502(closed_port: int, doi_org):
    config = {"ZenodoProvider": {"zenodo_url": f"http://127.0.0.1:{closed_port}", "doi_resolver": doi_org.url}}
    with pytest.raises(ProviderError) as error:
        await provider("zenodo", "123", **config).resolve()
    assert error.value.status_code == 502


# --- figshare ------------------------------------------------------------------------------------------
@pytest.fixture
def fig(figshare, doi_org):
    return {"FigshareProvider": {"api_url": f"{figshare.url}/v2", "doi_resolver": doi_org.url}}


async def test_figshare_versions(fig, figshare, tmp_path: Path):
    article = number()
    figshare.fake.articles[article] = {
        1: {"requirements.txt": b"numpy\n"},
        2: {"binder.zip": zip_bytes({"requirements.txt": "scipy\n"}), "elsewhere.link": b""},
    }
    latest = await provider("figshare", f"10.6084/m9.figshare.{article}", **fig).resolve()
    assert latest.ref == f"{article}.v2"
    assert latest.persistent_spec == f"10.6084/m9.figshare.{article}.v2"
    first = await provider("figshare", f"10.6084/m9.figshare.{article}.v1", **fig).resolve()
    assert first.ref == f"{article}.v1"

    p = provider("figshare", latest.persistent_spec, **fig)
    await p.fetch(await p.resolve(), tmp_path / "v2", Log())
    assert files_in(tmp_path / "v2") == {"requirements.txt": b"scipy\n"}  # link-only file skipped, zip unpacked
    p = provider("figshare", first.persistent_spec, **fig)
    await p.fetch(await p.resolve(), tmp_path / "v1", Log())
    assert files_in(tmp_path / "v1") == {"requirements.txt": b"numpy\n"}


@pytest.mark.parametrize("form, version", [
    ("https://figshare.com/articles/dataset/Some_title/{id}/1", "1"),
    ("https://figshare.com/articles/Some_title/{id}", "3"),
    ("https://monash.figshare.com/articles/code/t/{id}/2/", "2"),
])
async def test_figshare_article_urls(fig, figshare, form: str, version: str):
    article = number()
    figshare.fake.articles[article] = {1: {"a": b"1"}, 2: {"a": b"2"}, 3: {"a": b"3"}}
    resolved = await provider("figshare", quote(form.format(id=article), safe=""), **fig).resolve()
    assert resolved.ref == f"{article}.v{version}"


async def test_figshare_missing_article_and_version_are_404(fig, figshare):
    article = number()
    figshare.fake.articles[article] = {1: {"a": b"1"}}
    for spec in (f"10.6084/m9.figshare.{number()}", f"10.6084/m9.figshare.{article}.v7"):
        with pytest.raises(ProviderError) as error:
            await provider("figshare", spec, **fig).resolve()
        assert error.value.status_code == 404


# --- dataverse -----------------------------------------------------------------------------------------
@pytest.fixture
def dv(dataverse, doi_org):
    host = dataverse.url.removeprefix("http://")
    return {"DataverseProvider": {"hosts": [host], "doi_resolver": doi_org.url}}


def add_dataset(dataverse, doi_org, versions: dict[str, list[fakes.DataverseFile]]) -> str:
    doi = f"10.7910/DVN/{number()}"
    dataverse.fake.datasets[f"doi:{doi}"] = (number(), versions)
    doi_org.fake[doi] = f"{dataverse.url}/citation?persistentId=doi:{doi}"
    return doi


async def test_dataverse_doi_pins_the_version(dv, dataverse, doi_org, tmp_path: Path):
    files_v1 = [
        fakes.DataverseFile("requirements.txt", b"numpy\n"),
        fakes.DataverseFile("table.tab", b"a\tb\n", directory="data", original_name="table.tsv"),
        fakes.DataverseFile("secret.txt", b"hidden", restricted=True),
    ]
    doi = add_dataset(dataverse, doi_org, {"1.0": files_v1})
    resolved = await provider("dataverse", doi, **dv).resolve()
    dataset_id = dataverse.fake.datasets[f"doi:{doi}"][0]
    assert resolved.ref == f"{dataset_id}.v1.0"
    assert resolved.slug.startswith("dataverse-dvn-")

    # a new version is published; the persistent spec still fetches 1.0
    dataverse.fake.datasets[f"doi:{doi}"][1]["2.0"] = [fakes.DataverseFile("requirements.txt", b"scipy\n")]
    assert (await provider("dataverse", f"doi:{doi}", **dv).resolve()).ref == f"{dataset_id}.v2.0"
    p = provider("dataverse", resolved.persistent_spec, **dv)
    again = await p.resolve()
    assert again.ref == resolved.ref
    await p.fetch(again, tmp_path / "r", Log())
    assert files_in(tmp_path / "r") == {"requirements.txt": b"numpy\n", "data/table.tsv": b"a\tb\n"}


async def test_dataverse_dataset_and_file_urls(dv, dataverse, doi_org):
    doi = add_dataset(dataverse, doi_org, {"1.0": [fakes.DataverseFile("a.txt", b"a")]})
    dataset_id = dataverse.fake.datasets[f"doi:{doi}"][0]
    file_id = dataverse.fake.file_id(f"doi:{doi}", dataverse.fake.datasets[f"doi:{doi}"][1]["1.0"][0])
    for url in (
        f"{dataverse.url}/dataset.xhtml?persistentId=doi:{doi}",
        f"{dataverse.url}/citation?persistentId=doi:{doi}",
        f"{dataverse.url}/api/access/datafile/{file_id}",
    ):
        assert (await provider("dataverse", quote(url, safe=""), **dv).resolve()).ref == f"{dataset_id}.v1.0", url


async def test_dataverse_unknown_installation_and_missing_dataset(dv, dataverse, doi_org):
    doi_org.fake["10.7910/DVN/ELSEWHERE"] = "https://not-a-dataverse.example.org/dataset/1"
    with pytest.raises(ProviderError) as foreign:
        await provider("dataverse", "10.7910/DVN/ELSEWHERE", **dv).resolve()
    assert foreign.value.status_code == 400 and "DataverseProvider.hosts" in foreign.value.message

    url = quote(f"{dataverse.url}/dataset.xhtml?persistentId=doi:10.7910/DVN/MISSING", safe="")
    with pytest.raises(ProviderError) as missing:
        await provider("dataverse", url, **dv).resolve()
    assert missing.value.status_code == 404

    with pytest.raises(ProviderError) as unlisted:
        await provider("dataverse", url, DataverseProvider={"hosts": ["dataverse.harvard.edu"]}).resolve()
    assert unlisted.value.status_code == 400


async def test_figshare_doi_without_article_number_goes_through_the_resolver(fig, figshare, doi_org):
    article = number()
    figshare.fake.articles[article] = {1: {"a": b"1"}}
    doi_org.fake["10.26180/monash.thing"] = f"https://monash.figshare.com/articles/dataset/x/{article}/1"
    doi_org.fake["10.1234/not.figshare"] = "https://example.org/paper"
    assert (await provider("figshare", "10.26180/monash.thing", **fig).resolve()).ref == f"{article}.v1"
    with pytest.raises(ProviderError) as foreign:
        await provider("figshare", "10.1234/not.figshare", **fig).resolve()
    assert foreign.value.status_code == 400 and "not a Figshare article" in foreign.value.message
