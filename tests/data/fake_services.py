"""Local stand-ins for BioStudies, the BIA integrator API v2 and IDR, answering in each service's
wire format (bodies built from ``reference/``, copied from ``shared/reference-data``), with faults on demand.

One threaded HTTP server; each service lives under its own prefix (``/biostudies``, ``/bia``,
``/idr``), which the library reaches through its endpoint variables.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
import uuid
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

REFERENCE = Path(__file__).parent / "reference"
BIA_IMAGE_UUID = "71fb4f2d-6cff-495f-ae21-d1c6ab068de7"
BIA_STUDY_UUID = "88d36abc-c77f-4127-9551-b8409cb5d4a6"
BIA_DATASET_UUID = "abf9ca35-01ce-4b46-83cb-071e2967ce07"
#: the OME-Zarr the BIA fixture's image representation names (bucket ``bioimaging-integrator-data``)
BIA_ZARR_KEY = "S-BIAD609/b0ecfe5d-b32d-4ab6-9c3c-a5afeba0a575/7e0044da-f64a-472a-924e-0395084ba26f.ome.zarr"
#: extra file references generated for the BIA dataset, to exercise uuid-cursor paging
BIA_EXTRA_FILE_REFERENCES = 230
#: a BioStudies study with this many generated files, to exercise limit/offset paging
BIG_STUDY, BIG_STUDY_FILES = "S-BSST7", 2345
SEARCH_HITS = 250
CURSOR_QUERY = "all images"  # searches for this answer with a cursor
IDR_IMAGE, IDR_PLATE_IMAGE = 6001247, 1921421
IDR_PROJECT, IDR_DATASET, IDR_SCREEN, IDR_PLATE = 1301, 5051, 2851, 7361
IDR_DATASET_IMAGES = 612  # more than one page of 500


def _load(*parts: str) -> Any:
    return json.loads((REFERENCE.joinpath(*parts)).read_text())


def file_bytes(accession: str, path: str, size: int = 300_000) -> bytes:
    """Deterministic content for a study file, so a download can be checked byte for byte."""
    seed = hashlib.sha256(f"{accession}/{path}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


class Faults:
    """Planned misbehaviour: for a path, the next answers are an error status, a hang or garbage."""

    def __init__(self) -> None:
        self._plans: dict[str, list[tuple[str, Any]]] = defaultdict(list)
        self._lock = threading.Lock()
        self.hits: dict[str, int] = defaultdict(int)

    def plan(self, path: str, *steps: tuple[str, Any]) -> None:
        with self._lock:
            self._plans[path].extend(steps)

    def next_for(self, path: str) -> tuple[str, Any] | None:
        with self._lock:
            self.hits[path] += 1
            plan = self._plans.get(path)
            return plan.pop(0) if plan else None

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()
            self.hits.clear()


class Answer(Exception):
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None):
        self.status, self.body, self.headers, self.raw = status, body, headers or {}, raw


class Services:
    """The three services' data and routes."""

    def __init__(self) -> None:
        self.base = ""  # set once the server listens
        self.biostudies = {
            "S-BIADTEST": _load("biostudies", "S-BIADTEST.json"),
            "S-BSSTTEST": _load("biostudies", "S-BSSTTEST_files_direct.json"),
        }
        self.biostudies_files = {
            "S-BIADTEST": [
                *_load("biostudies", "file_list_study_component_1.json"),
                *_load("biostudies", "file_list_study_component_2.json"),
                *_load("biostudies", "file_list_annotations_1.json"),
            ],
            "S-BSSTTEST": _load("biostudies", "files_direct_default.json"),
            BIG_STUDY: [
                {"path": f"images/plate{i // 100:02d}/im{i:05d}.tif", "size": 1000 + i, "type": "file",
                 "attributes": [{"name": "Index", "value": str(i)}]}
                for i in range(BIG_STUDY_FILES)
            ],
        }
        self.biostudies[BIG_STUDY] = {**copy.deepcopy(self.biostudies["S-BSSTTEST"]), "accno": BIG_STUDY}
        # the study the example notebooks use
        self.biostudies["S-BIAD609"] = {**copy.deepcopy(self.biostudies["S-BIADTEST"]), "accno": "S-BIAD609"}
        self.biostudies_files["S-BIAD609"] = self.biostudies_files["S-BIADTEST"]
        self.bia = self._bia_objects()
        self.idr = self._idr_objects()

    # -- BIA --------------------------------------------------------------------------------------
    def _bia_objects(self) -> dict[str, dict[str, dict[str, Any]]]:
        objects: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for folder in (REFERENCE / "bia-api-v2").iterdir():
            for f in folder.glob("*.json"):
                obj = json.loads(f.read_text())
                objects[folder.name][obj["uuid"]] = obj
        template = next(iter(objects["file_reference"].values()))
        for i in range(BIA_EXTRA_FILE_REFERENCES):
            ref = copy.deepcopy(template)
            ref["uuid"] = str(uuid.UUID(int=i + 1))
            ref["file_path"] = f"generated/file{i:04d}.tif"
            objects["file_reference"][ref["uuid"]] = ref
        return objects

    def _bia_children(self, model: str, parent: str, child: str) -> list[dict[str, Any]]:
        link = {
            ("study", "dataset"): "submitted_in_study_uuid",
            ("dataset", "image"): "submission_dataset_uuid",
            ("dataset", "file_reference"): "submission_dataset_uuid",
            ("image", "image_representation"): "representation_of_uuid",
        }.get((model, child))
        if link is None:
            raise Answer(404, {"detail": "Not Found"})
        return sorted((o for o in self.bia[child].values() if o.get(link) == parent), key=lambda o: o["uuid"])

    def bia_route(self, parts: list[str], query: dict[str, str]) -> Any:
        if parts[:1] != ["v2"]:
            raise Answer(404, {"detail": "Not Found"})
        parts = parts[1:]
        if parts == ["search", "study", "accession"]:
            for study in self.bia["study"].values():
                if study["accession_id"] == query.get("accession_id"):
                    return study
            raise Answer(404, {"detail": "Study not found"})
        if len(parts) == 2:
            model, key = parts
            if key not in self.bia.get(model, {}):
                raise Answer(404, {"detail": f"{model} {key} not found"})
            return self.bia[model][key]
        if len(parts) == 3:
            model, key, child = parts
            if key not in self.bia.get(model, {}):
                raise Answer(404, {"detail": f"{model} {key} not found"})
            items = self._bia_children(model, key, child)
            start = query.get("start_from_uuid")
            if start:  # like the real API: strictly after the cursor
                items = [o for o in items if o["uuid"] > start]
            return items[: int(query.get("page_size", 10))]
        raise Answer(404, {"detail": "Not Found"})

    # -- BioStudies -------------------------------------------------------------------------------
    def biostudies_info(self, accession: str) -> dict[str, Any]:
        info = _load("biostudies", "S-BIADTEST_INFO.json")
        rel = {"S-BIADTEST": "S-BIAD/TEST/S-BIADTEST", "S-BSSTTEST": "S-BSST/TEST/S-BSSTTEST",
               BIG_STUDY: f"S-BSST/S-BSST0-99/{BIG_STUDY}", "S-BIAD609": "S-BIAD/609/S-BIAD609"}[accession]
        info.update(
            relPath=rel,
            httpLink=f"{self.base}/ftp/biostudies/fire/{rel}",
            ftpLink=f"ftp://ftp.ebi.ac.uk/biostudies/fire/{rel}",
            files=len(self.biostudies_files[accession]),
        )
        return info

    def biostudies_route(self, parts: list[str], query: dict[str, str]) -> Any:
        if parts[:1] == ["files"] and len(parts) >= 3:
            accession, path = parts[1], "/".join(parts[2:])
            if accession not in self.biostudies or path not in {f["path"] for f in self.biostudies_files[accession]}:
                raise Answer(404, raw=b"File not found", headers={"Content-Type": "text/plain"})
            return Answer(200, raw=file_bytes(accession, path), headers={"Content-Type": "application/octet-stream"})
        if parts[:2] != ["api", "v1"]:
            raise Answer(404, raw=b"<html>Not found</html>", headers={"Content-Type": "text/html"})
        parts = parts[2:]
        if parts == ["search"]:
            return self.biostudies_search(query)
        if parts[:1] != ["studies"] or len(parts) < 2:
            raise Answer(404, raw=b"<html>Not found</html>", headers={"Content-Type": "text/html"})
        accession = parts[1]
        if accession not in self.biostudies:
            # BioStudies answers an unknown accession with 404 and a JSON error
            raise Answer(404, {"status": "FAIL", "log": {"level": "ERROR", "message": f"Study {accession} not found"}})
        if parts[2:] == ["info"]:
            return self.biostudies_info(accession)
        if parts[2:] == ["files"]:
            limit, offset = int(query.get("limit", 100)), int(query.get("offset", 0))
            return self.biostudies_files[accession][offset : offset + min(limit, 1000)]
        if parts[2:]:
            raise Answer(404, raw=b"<html>Not found</html>", headers={"Content-Type": "text/html"})
        rel = self.biostudies_info(accession)["relPath"]
        # the three answer styles of the real API: the study itself, an indirection, a redirect
        if accession == "S-BSSTTEST":
            return {"ftpHttp_link": f"{self.base}/ftp/biostudies/fire/{rel}/"}
        if accession == BIG_STUDY:
            raise Answer(302, raw=b"", headers={"Location": f"{self.base}/ftp/biostudies/fire/{rel}/{accession}.json"})
        return self.biostudies[accession]

    def ftp_route(self, parts: list[str]) -> Any:
        accession = parts[-1].removesuffix(".json")
        if parts[-1].endswith(".json") and accession in self.biostudies:
            return self.biostudies[accession]
        raise Answer(404, raw=b"Not found", headers={"Content-Type": "text/plain"})

    def biostudies_search(self, query: dict[str, str]) -> dict[str, Any]:
        size = int(query.get("pageSize", 20))
        # deep result sets page with a cursor (the offset as an opaque token) instead of page numbers
        cursor_mode = query.get("query") == CURSOR_QUERY
        page = int(query["cursor"][3:]) // size + 1 if "cursor" in query else int(query.get("page", 1))
        hits = [
            {"accession": f"S-BIAD{i}", "type": "study", "title": f"Study {i} about {query.get('query')}",
             "author": "A. Author", "links": 0, "files": i, "release_date": "2024-01-01", "views": 0,
             "isPublic": True, "content": "..."}
            for i in range(1, SEARCH_HITS + 1)
        ]
        answer = {"page": page, "pageSize": size, "totalHits": len(hits), "isTotalHitsExact": True,
                  "sortBy": "relevance", "sortOrder": "descending", "hits": hits[(page - 1) * size : page * size],
                  "query": query.get("query"), "facets": None}
        if cursor_mode and page * size < len(hits):
            answer["cursor"] = f"at:{page * size}"
        return answer

    # -- IDR --------------------------------------------------------------------------------------
    def _idr_objects(self) -> dict[str, dict[int, dict[str, Any]]]:
        omero = "http://www.openmicroscopy.org/Schemas/OME/2016-06"

        def image(i: int, name: str) -> dict[str, Any]:
            return {
                "@id": i, "@type": f"{omero}#Image", "Name": name, "Description": "",
                "AcquisitionDate": None, "omero:details": {"@type": "TBD#Details", "owner": {"@id": 2}},
                "Pixels": {"@id": i, "@type": f"{omero}#Pixels", "SizeX": 128, "SizeY": 128, "SizeZ": 3,
                           "SizeC": 2, "SizeT": 1, "DimensionOrder": "XYZCT",
                           "Type": {"@type": "TBD#PixelsType", "value": "uint16"}},
                "url:image": f"{self.base}/idr/api/v0/m/images/{i}/",
            }

        images = {IDR_IMAGE: image(IDR_IMAGE, "B4_C3.tif"), IDR_PLATE_IMAGE: image(IDR_PLATE_IMAGE, "plate field")}
        for i in range(IDR_DATASET_IMAGES):
            images.setdefault(100000 + i, image(100000 + i, f"img{i}.tif"))
        return {
            "images": images,
            "projects": {IDR_PROJECT: {"@id": IDR_PROJECT, "@type": f"{omero}#Project",
                                       "Name": "idr0062-blin-nuclearsegmentation/experimentA"}},
            "datasets": {IDR_DATASET: {"@id": IDR_DATASET, "@type": f"{omero}#Dataset", "Name": "B4"}},
            "screens": {IDR_SCREEN: {"@id": IDR_SCREEN, "@type": f"{omero}#Screen", "Name": "idr0010/screenA"}},
            "plates": {IDR_PLATE: {"@id": IDR_PLATE, "@type": f"{omero}#Plate", "Name": "76-45"}},
            "wells": {
                w: {"@id": w, "@type": f"{omero}#Well", "Column": w % 12, "Row": w // 12,
                    "WellSamples": [{"@id": w * 10, "@type": f"{omero}#WellSample",
                                     "Image": images[IDR_PLATE_IMAGE]}]}
                for w in range(1, 4)
            },
        }

    def _idr_children(self, kind: str, key: int, child: str) -> list[dict[str, Any]]:
        tree = {
            ("projects", IDR_PROJECT, "datasets"): [IDR_DATASET],
            ("datasets", IDR_DATASET, "images"): [IDR_IMAGE, *range(100000, 100000 + IDR_DATASET_IMAGES - 1)],
            ("screens", IDR_SCREEN, "plates"): [IDR_PLATE],
            ("plates", IDR_PLATE, "wells"): [1, 2, 3],
        }.get((kind, key, child))
        if tree is None:
            raise Answer(404, {"message": f"{kind[:-1].title()} {key} not found"})
        return [self.idr[child][i] for i in tree]

    @staticmethod
    def _idr_page(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
        limit, offset = min(int(query.get("limit", 200)), 500), int(query.get("offset", 0))
        return {"data": items[offset : offset + limit],
                "meta": {"offset": offset, "limit": limit, "maxLimit": 500, "totalCount": len(items)}}

    def idr_route(self, parts: list[str], query: dict[str, str]) -> Any:
        if parts[:3] == ["api", "v0", "m"]:
            parts = parts[3:]
            if len(parts) == 1 and parts[0] in self.idr:
                return self._idr_page(list(self.idr[parts[0]].values()), query)
            if len(parts) >= 2 and parts[0] in self.idr and parts[1].isdigit():
                kind, key = parts[0], int(parts[1])
                if key not in self.idr[kind]:
                    raise Answer(404, {"message": f"{kind[:-1].title()} {key} not found"})
                if len(parts) == 2:
                    return {"data": self.idr[kind][key]}
                return self._idr_page(self._idr_children(kind, key, parts[2]), query)
        if parts[:2] == ["webclient", "imgData"] and len(parts) == 3:
            return self.idr_img_data(int(parts[2]))
        if parts == ["webclient", "api", "annotations"]:
            image_id = int(query.get("image", 0))
            if image_id not in self.idr["images"]:
                return {"annotations": [], "experimenters": []}
            return self.idr_annotations(image_id)
        raise Answer(404, raw=b"<h1>Not Found</h1>", headers={"Content-Type": "text/html"})

    def idr_img_data(self, image_id: int) -> dict[str, Any]:
        if image_id not in self.idr["images"]:
            raise Answer(404, raw=b"<h1>Not Found</h1>", headers={"Content-Type": "text/html"})
        return {
            "id": image_id,
            "meta": {"imageName": self.idr["images"][image_id]["Name"], "imageDescription": "",
                     "imageAuthor": "Public data", "projectName": "idr0062-blin-nuclearsegmentation/experimentA",
                     "projectId": IDR_PROJECT, "datasetName": "B4", "datasetId": IDR_DATASET, "wellId": None,
                     "pixelsType": "uint16", "imageId": image_id},
            "perms": {"canAnnotate": False, "canEdit": False, "canDelete": False, "canLink": False},
            "tiles": False, "interpolate": True,
            "size": {"width": 128, "height": 128, "z": 3, "t": 1, "c": 2},
            "pixel_size": {"x": 0.25, "y": 0.25, "z": 0.5},
            "init_zoom": 0,
            "channels": [
                {"emissionWave": None, "label": label, "color": color, "inverted": False, "reverseIntensity": False,
                 "family": "linear", "coefficient": 1.0, "active": True,
                 "window": {"min": 0.0, "max": 65535.0, "start": 0.0, "end": end}}
                for label, color, end in (("DAPI", "0000FF", 1000.0), ("GFP", "00FF00", 2000.0))
            ],
            "rdefs": {"model": "color", "projection": "normal", "defaultZ": 1, "defaultT": 0, "invertAxis": False},
        }

    @staticmethod
    def idr_annotations(image_id: int) -> dict[str, Any]:
        link = {"id": 1, "owner": {"id": 2}, "parent": {"id": image_id, "class": "ImageI", "name": "B4_C3.tif"}}
        return {
            "annotations": [
                {"id": 11, "ns": "openmicroscopy.org/omero/client/mapAnnotation", "description": None,
                 "owner": {"id": 2}, "class": "MapAnnotationI", "link": link,
                 "values": [["Organism", "Arabidopsis thaliana"], ["Imaging Method", "light sheet"]]},
                {"id": 12, "ns": "openmicroscopy.org/mapr/gene", "description": None, "owner": {"id": 2},
                 "class": "MapAnnotationI", "link": link,
                 "values": [["Gene Symbol", "AT1G01010"], ["Gene Symbol", "AT1G01020"]]},
            ],
            "experimenters": [{"id": 2, "firstName": "Public", "lastName": "Data"}],
        }

    def route(self, path: str, query: dict[str, str]) -> Any:
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        service, rest = (parts[0], parts[1:]) if parts else ("", [])
        if service == "biostudies":
            return self.biostudies_route(rest, query)
        if service == "ftp":
            return self.ftp_route(rest)
        if service == "bia":
            return self.bia_route(rest, query)
        if service == "idr":
            return self.idr_route(rest, query)
        raise Answer(404, raw=b"no such service", headers={"Content-Type": "text/plain"})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeServer

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output readable
        pass

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        self.server.requests.append(self.path)
        fault = self.server.faults.next_for(split.path)
        if fault is not None:
            kind, value = fault
            if kind == "status":
                return self._send(Answer(value, raw=b"<html>Service Temporarily Unavailable</html>",
                                         headers={"Content-Type": "text/html"}))
            if kind == "hang":
                time.sleep(value)
            if kind == "garbage":
                return self._send(Answer(200, raw=b'{"accno": "S-BIADTEST", "section": {', headers={
                    "Content-Type": "application/json"}))
        if split.path.startswith("/s3proxy/") and self.server.s3_endpoint:
            return self._relay(f"{self.server.s3_endpoint}/{self.path.removeprefix('/s3proxy/')}")
        try:
            result = self.server.services.route(split.path, query)
            answer = result if isinstance(result, Answer) else Answer(200, result)
        except Answer as a:
            answer = a
        self._send(answer)

    def _relay(self, url: str) -> None:
        """Pass a GET on to the S3 server, so faults can be planned for chunk reads too."""
        headers = {"Range": self.headers["Range"]} if "Range" in self.headers else {}
        upstream = httpx.get(url, headers=headers)
        kept = {k: v for k, v in upstream.headers.items() if k.lower() in ("content-type", "content-range", "etag")}
        self._send(Answer(upstream.status_code, raw=upstream.content, headers=kept))

    def _send(self, answer: Answer) -> None:
        body = answer.raw if answer.raw is not None else json.dumps(answer.body).encode()
        headers = {"Content-Type": "application/json", **answer.headers}
        try:
            self.send_response(answer.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.services = Services()
        self.faults = Faults()
        self.requests: list[str] = []
        self.s3_endpoint = ""  # where /s3proxy/ relays to, once an S3 server runs
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.services.base = self.url
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=10)
