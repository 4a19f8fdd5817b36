"""The archives' stand-ins of tests/data, extended for study launches (same wire formats):

- a BIA study without OME-Zarr (``S-BIAD1000``: one TIFF, listed by BIA file references and BioStudies);
- a private study (its search answers 403) and an unreleased one (release date next year);
- BIA's search ``/search/fts`` (Elasticsearch-style ``hits``, ``facets``, ``pagination``);
- the 256 px thumbnail PNG S-BIAD609's image names, in the S3 stand-in;
- study versions that can be bumped (a new version must give a new permanent link).
"""

from __future__ import annotations

import copy
import io
import json
import uuid
from typing import Any

import numpy as np
from PIL import Image as PILImage

from tests.data import fake_services, stores
from tests.data.fake_services import BIA_DATASET_UUID, BIA_IMAGE_UUID, BIA_STUDY_UUID, Answer, Services

NO_ZARR = "S-BIAD1000"
NO_ZARR_STUDY_UUID = "0b1d6a4e-1000-4000-8000-000000000001"
NO_ZARR_DATASET_UUID = "0b1d6a4e-1000-4000-8000-000000000002"
NO_ZARR_IMAGE_UUID = "0b1d6a4e-1000-4000-8000-000000000003"
NO_ZARR_FILE = "images/cells.tif"
PRIVATE = "S-BIAD403"
UNRELEASED = "S-BIAD2099"
THUMBNAIL_KEY = "S-BIAD609/b0ecfe5d-b32d-4ab6-9c3c-a5afeba0a575/826f0fe5-ee2d-4d43-a612-4ce659b5426d.png"
#: the dataset's example image (what search results show)
EXAMPLE_KEY = "S-BIAD609/6ff7b0a8-6cc4-4131-bd1b-b78fb8e276f0/ed9f6d05-23ca-4d95-9b8d-6db70e499402.png"


def tiff_bytes() -> bytes:
    """A real two-channel TIFF of the disks the OME-Zarr stores show (the no-OME-Zarr study's one file)."""
    data = stores.image_data(z=1)[:, 0]  # (c, y, x)
    buffer = io.BytesIO()
    import tifffile

    tifffile.imwrite(buffer, np.moveaxis(data, 0, -1), photometric="minisblack", planarconfig="contig")
    return buffer.getvalue()


def png_bytes() -> bytes:
    yy, xx = np.mgrid[:64, :64]
    picture = ((yy + xx) * 2).astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()


class StudyServices(Services):
    def __init__(self) -> None:
        super().__init__()
        self.tiff = tiff_bytes()
        self.bia_search_requests: list[dict[str, str]] = []
        study = self.bia["study"][BIA_STUDY_UUID]
        no_zarr = {**copy.deepcopy(study), "uuid": NO_ZARR_STUDY_UUID, "accession_id": NO_ZARR, "version": 2,
                   "title": "Cells in a TIFF (no OME-Zarr yet)", "licence": "https://creativecommons.org/licenses/by/4.0/"}
        self.bia["study"][NO_ZARR_STUDY_UUID] = no_zarr
        dataset = {**copy.deepcopy(self.bia["dataset"][BIA_DATASET_UUID]), "uuid": NO_ZARR_DATASET_UUID,
                   "title": "Submitted TIFFs", "submitted_in_study_uuid": NO_ZARR_STUDY_UUID, "example_image_uri": []}
        self.bia["dataset"][NO_ZARR_DATASET_UUID] = dataset
        image = {**copy.deepcopy(self.bia["image"][BIA_IMAGE_UUID]), "uuid": NO_ZARR_IMAGE_UUID,
                 "submission_dataset_uuid": NO_ZARR_DATASET_UUID, "additional_metadata": [
                     {"provenance": "bia_image_assignment", "name": "file_pattern",
                      "value": {"file_pattern": NO_ZARR_FILE}}]}
        self.bia["image"][NO_ZARR_IMAGE_UUID] = image
        tiff_rep = next(r for r in self.bia["image_representation"].values() if r["image_format"] == ".tiff")
        self.bia["image_representation"][str(uuid.UUID(int=10**6))] = {
            **copy.deepcopy(tiff_rep), "uuid": str(uuid.UUID(int=10**6)), "representation_of_uuid": NO_ZARR_IMAGE_UUID,
            "total_size_in_bytes": len(self.tiff),
            "file_uri": [f"https://www.ebi.ac.uk/biostudies/files/{NO_ZARR}/{NO_ZARR_FILE}"]}
        reference = copy.deepcopy(next(iter(self.bia["file_reference"].values())))
        reference.update(uuid=str(uuid.UUID(int=10**6 + 1)), file_path=NO_ZARR_FILE, size_in_bytes=len(self.tiff),
                         submission_dataset_uuid=NO_ZARR_DATASET_UUID,
                         uri=f"https://www.ebi.ac.uk/biostudies/files/{NO_ZARR}/{NO_ZARR_FILE}")
        self.bia["file_reference"][reference["uuid"]] = reference
        self.biostudies[NO_ZARR] = {**copy.deepcopy(self.biostudies["S-BIADTEST"]), "accno": NO_ZARR}
        self.biostudies_files[NO_ZARR] = [{"path": NO_ZARR_FILE, "size": len(self.tiff), "type": "file", "attributes": []}]
        unreleased = {**copy.deepcopy(study), "uuid": str(uuid.UUID(int=2099)), "accession_id": UNRELEASED,
                      "release_date": "2099-01-01"}
        self.bia["study"][unreleased["uuid"]] = unreleased

    def clone_study(self, accession: str, source: str = "S-BIAD609") -> None:
        """A new study ``accession``: a copy of ``source`` with its datasets, images and representations."""
        def new_uuid(old: str) -> str:
            return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{accession}/{old}"))

        original = next(s for s in self.bia["study"].values() if s["accession_id"] == source)
        study = {**copy.deepcopy(original), "uuid": new_uuid(original["uuid"]), "accession_id": accession}
        self.bia["study"][study["uuid"]] = study
        for dataset in [d for d in self.bia["dataset"].values() if d["submitted_in_study_uuid"] == original["uuid"]]:
            self.bia["dataset"][new_uuid(dataset["uuid"])] = {
                **copy.deepcopy(dataset), "uuid": new_uuid(dataset["uuid"]), "submitted_in_study_uuid": study["uuid"]}
            for image in [i for i in self.bia["image"].values() if i["submission_dataset_uuid"] == dataset["uuid"]]:
                self.bia["image"][new_uuid(image["uuid"])] = {
                    **copy.deepcopy(image), "uuid": new_uuid(image["uuid"]), "submission_dataset_uuid": new_uuid(dataset["uuid"])}
                for rep in [r for r in self.bia["image_representation"].values() if r["representation_of_uuid"] == image["uuid"]]:
                    self.bia["image_representation"][new_uuid(rep["uuid"])] = {
                        **copy.deepcopy(rep), "uuid": new_uuid(rep["uuid"]), "representation_of_uuid": new_uuid(image["uuid"])}

    def bump_version(self, accession: str = "S-BIAD609") -> None:
        """The archive publishes a new version of ``accession`` (its metadata change with it)."""
        study = next(s for s in self.bia["study"].values() if s["accession_id"] == accession)
        study["version"] += 1
        study["title"] += " (revised)"

    def biostudies_info(self, accession: str) -> dict[str, Any]:
        if accession != NO_ZARR:
            return super().biostudies_info(accession)
        info = super().biostudies_info("S-BIADTEST")
        rel = f"S-BIAD/000/{NO_ZARR}"
        info.update(relPath=rel, httpLink=f"{self.base}/ftp/biostudies/fire/{rel}", files=1)
        return info

    def bia_search(self, query: dict[str, str]) -> dict[str, Any]:
        """BIA's full-text search: Elasticsearch hits of study documents, facets and pagination."""
        self.bia_search_requests.append(query)
        text = query.get("query", "").lower()
        studies = [s for s in self.bia["study"].values() if s.get("release_date", "") < "2099"]
        found = [s for s in studies if not text or text in s["title"].lower() or text in s["accession_id"].lower()
                 or text in s.get("description", "").lower()]
        size, page = int(query.get("pagination.page_size", query.get("page_size", 10))), int(query.get("pagination.page", 1))
        hits = [
            {"_index": "study", "_id": s["uuid"], "_score": 1.0,
             "_source": {**s, "dataset": [
                 {"title": d["title"], "example_image_uri": d.get("example_image_uri", []),
                  "biological_entity": [{"organism_classification": [{"scientific_name": "Mus musculus"}]}],
                  "acquisition_process": [{"imaging_method_name": ["confocal microscopy"]}]}
                 for d in self.bia["dataset"].values() if d["submitted_in_study_uuid"] == s["uuid"]]}}
            for s in found[(page - 1) * size : page * size]
        ]
        return {
            "hits": {"total": {"value": len(found), "relation": "eq"}, "max_score": 1.0, "hits": hits},
            "facets": {"scientific_name": {"Mus musculus": len(found)}, "imaging_method": {"confocal microscopy": len(found)}},
            "pagination": {"page": page, "page_size": size, "total_pages": max(1, -(-len(found) // size))},
        }

    def route(self, path: str, query: dict[str, str]) -> Any:
        parts = [p for p in path.strip("/").split("/") if p]
        if parts[:3] == ["bia-search", "search", "fts"]:
            return self.bia_search(query)
        if parts[:4] == ["bia", "v2", "search", "study"] and query.get("accession_id") == PRIVATE:
            raise Answer(403, {"detail": "Not authenticated"})
        if parts[:2] == ["biostudies", "files"] and parts[2:3] == [NO_ZARR]:
            if "/".join(parts[3:]) == NO_ZARR_FILE:
                return Answer(200, raw=self.tiff, headers={"Content-Type": "image/tiff"})
        return super().route(path, query)


def start_services() -> fake_services.FakeServer:
    server = fake_services.FakeServer()
    server.services = StudyServices()
    server.services.base = server.url
    return server.start()


def upload_thumbnail(s3_endpoint: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    for key in (THUMBNAIL_KEY, EXAMPLE_KEY):
        client.put_object(Bucket="bioimaging-integrator-data", Key=key, Body=png_bytes(), ContentType="image/png")


__all__ = ["StudyServices", "json", "start_services", "upload_thumbnail"]
