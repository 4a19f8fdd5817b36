"""Local stand-ins for GitHub, GitLab, Zenodo, Figshare, Dataverse and doi.org.

Each answers in its service's real wire format (shapes copied from recorded responses: status codes,
field names, redirect behaviour). The git hosts answer from real repositories on a
:class:`tests.gitserver.GitServer`, so an API's sha is whatever git says it is.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from urllib.parse import quote

import tornado.httpserver
import tornado.netutil
import tornado.web

from tests.gitserver import GitServer


class Service:
    """A tornado app on a free 127.0.0.1 port, started and stopped inside the test event loop."""

    def __init__(self, handlers: list, **settings: object):
        self.app = tornado.web.Application(handlers, **settings)
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.server: tornado.httpserver.HTTPServer | None = None
        self.url = ""
        self.fake: object = None  # the state the handlers answer from

    def start(self) -> "Service":
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.server = tornado.httpserver.HTTPServer(self.app)
        self.server.add_sockets(sockets)
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        if self.server:
            self.server.stop()
            await self.server.close_all_connections()

    def paths(self) -> list[str]:
        return [path for _method, path, _headers in self.requests]


class Handler(tornado.web.RequestHandler):
    def initialize(self, fake: object, service: Service) -> None:
        self.fake = fake
        self.service = service

    def prepare(self) -> None:
        self.service.requests.append((self.request.method, self.request.uri, dict(self.request.headers)))

    def send_json(self, body: object, status: int = 200, content_type: str = "application/json") -> None:
        self.set_status(status)
        self.set_header("Content-Type", content_type)
        self.finish(json.dumps(body))


# --- GitHub (REST API v3: commits, repos, gists) -----------------------------------------------------
GITHUB_DOCS = "https://docs.github.com/rest"


@dataclass
class FakeGitHub:
    git: GitServer
    secret_gists: set[str] = field(default_factory=set)
    #: org names whose every request is answered with a rate-limit error
    rate_limited_orgs: dict[str, str] = field(default_factory=dict)


class GitHubHandler(Handler):
    fake: FakeGitHub

    def rate_limit_headers(self, remaining: int) -> None:
        self.set_header("X-RateLimit-Limit", "60")
        self.set_header("X-RateLimit-Remaining", str(remaining))
        self.set_header("X-RateLimit-Reset", str(int(time.time()) + 1800))
        self.set_header("X-RateLimit-Resource", "core")

    def not_found(self) -> None:
        self.rate_limit_headers(59)
        self.send_json({"message": "Not Found", "documentation_url": GITHUB_DOCS, "status": "404"}, 404,
                       "application/json; charset=utf-8")

    def limited(self, org: str) -> bool:
        kind = self.fake.rate_limited_orgs.get(org)
        if kind == "primary":  # GitHub's primary rate limit: 403 + X-RateLimit-Remaining: 0
            self.rate_limit_headers(0)
            self.send_json({"message": "API rate limit exceeded for 127.0.0.1. (But here's the good news: "
                            "Authenticated requests get a higher rate limit.)", "documentation_url": GITHUB_DOCS}, 403)
            return True
        if kind == "secondary":  # secondary rate limit: 429 + Retry-After
            self.set_header("Retry-After", "90")
            self.send_json({"message": "You have exceeded a secondary rate limit.", "documentation_url": GITHUB_DOCS}, 429)
            return True
        return False


class GitHubCommitHandler(GitHubHandler):
    def get(self, org: str, repo: str, ref: str) -> None:
        if self.limited(org):
            return
        name = f"{org}/{repo}"
        if not self.fake.git.repo_path(name).exists():
            return self.not_found()
        try:
            sha = self.fake.git.head(name, ref)
        except RuntimeError:
            self.rate_limit_headers(58)
            return self.send_json({"message": f"No commit found for SHA: {ref}", "documentation_url": GITHUB_DOCS}, 422)
        self.rate_limit_headers(57)
        self.send_json(
            {
                "sha": sha,
                "node_id": "C_kwDOAAAB",
                "commit": {"message": "Update files", "tree": {"sha": "0" * 40}, "comment_count": 0},
                "url": f"{self.service.url}/repos/{name}/commits/{sha}",
                "html_url": f"https://github.com/{name}/commit/{sha}",
                "parents": [],
            },
            content_type="application/json; charset=utf-8",
        )


class GitHubRepoHandler(GitHubHandler):
    def get(self, org: str, repo: str) -> None:
        if self.limited(org):
            return
        name = f"{org}/{repo}"
        if not self.fake.git.repo_path(name).exists():
            return self.not_found()
        self.send_json({"id": 1, "name": repo, "full_name": name, "private": False, "default_branch": "main"})


class GistHandler(GitHubHandler):
    def get(self, gist_id: str) -> None:
        matches = list(self.fake.git.root.glob(f"*/{gist_id}.git"))
        if not matches:
            return self.not_found()
        user = matches[0].parent.name
        name = f"{user}/{gist_id}"
        log = self.fake.git.log(name)
        self.rate_limit_headers(48)
        self.send_json(
            {
                "url": f"{self.service.url}/gists/{gist_id}",
                "id": gist_id,
                "git_pull_url": f"https://gist.github.com/{gist_id}.git",
                "html_url": f"https://gist.github.com/{user}/{gist_id}",
                "files": {},
                "public": gist_id not in self.fake.secret_gists,
                "owner": {"login": user},
                "history": [
                    {"user": {"login": user}, "version": sha, "committed_at": "2026-01-01T00:00:00Z",
                     "change_status": {"total": 1, "additions": 1, "deletions": 0},
                     "url": f"{self.service.url}/gists/{gist_id}/{sha}"}
                    for sha in log
                ],
                "truncated": False,
            },
            content_type="application/json; charset=utf-8",
        )


def github_service(fake: FakeGitHub) -> Service:
    service = Service([])
    service.fake = fake
    kwargs = {"fake": fake, "service": service}
    service.app.add_handlers(r".*", [
        (r"/repos/([^/]+)/([^/]+)/commits/(.+)", GitHubCommitHandler, kwargs),
        (r"/repos/([^/]+)/([^/]+)", GitHubRepoHandler, kwargs),
        (r"/gists/([0-9a-zA-Z]+)", GistHandler, kwargs),
    ])
    return service


# --- GitLab (API v4) -----------------------------------------------------------------------------------
class GitLabCommitHandler(Handler):
    fake: GitServer

    def get(self, project: str, ref: str) -> None:
        # tornado has already percent-decoded "group%2Fproject" into "group/project"
        if not self.fake.repo_path(project).exists():
            return self.send_json({"message": "404 Project Not Found"}, 404)
        try:
            sha = self.fake.head(project, ref)
        except RuntimeError:
            return self.send_json({"message": "404 Commit Not Found"}, 404)
        self.send_json({
            "id": sha, "short_id": sha[:8], "title": "Update files", "message": "Update files\n",
            "parent_ids": [], "web_url": f"https://gitlab.com/{project}/-/commit/{sha}", "project_id": 13083,
        })


def gitlab_service(git: GitServer) -> Service:
    service = Service([])
    service.fake = git
    service.app.add_handlers(r".*", [
        (r"/api/v4/projects/([^/]+)/repository/commits/([^/]+)", GitLabCommitHandler, {"fake": git, "service": service}),
    ])
    return service


# --- doi.org -------------------------------------------------------------------------------------------
class DOIHandler(Handler):
    fake: dict[str, str]

    def get(self, doi: str) -> None:
        target = self.fake.get(doi)
        if target is None:
            self.set_status(404)
            self.set_header("Content-Type", "text/html;charset=utf-8")
            return self.finish("<html><body><h1>DOI Not Found</h1></body></html>")
        self.redirect(target, status=302)


def doi_service(targets: dict[str, str]) -> Service:
    service = Service([])
    service.fake = targets
    service.app.add_handlers(r".*", [(r"/(10\..+)", DOIHandler, {"fake": targets, "service": service})])
    return service


# --- Zenodo (InvenioRDM records API) ------------------------------------------------------------------
@dataclass
class ZenodoRecord:
    id: int
    concept_id: int
    files: dict[str, bytes]
    #: announce this size instead of the real one (a record whose metadata lies)
    declared_size: int | None = None


@dataclass
class FakeZenodo:
    records: dict[int, ZenodoRecord] = field(default_factory=dict)

    def latest(self, concept_id: int) -> ZenodoRecord | None:
        versions = [r for r in self.records.values() if r.concept_id == concept_id]
        return max(versions, key=lambda r: r.id) if versions else None


class ZenodoHandler(Handler):
    fake: FakeZenodo

    def record_json(self, record: ZenodoRecord) -> dict:
        base = self.service.url
        return {
            "created": "2026-01-01T00:00:00+00:00",
            "id": record.id,
            "recid": str(record.id),
            "conceptrecid": str(record.concept_id),
            "doi": f"10.5281/zenodo.{record.id}",
            "conceptdoi": f"10.5281/zenodo.{record.concept_id}",
            "doi_url": f"https://doi.org/10.5281/zenodo.{record.id}",
            "metadata": {"title": "A binder-ready record", "resource_type": {"type": "software"}},
            "title": "A binder-ready record",
            "links": {
                "self": f"{base}/api/records/{record.id}",
                "self_html": f"{base}/records/{record.id}",
                "files": f"{base}/api/records/{record.id}/files",
                "latest": f"{base}/api/records/{record.id}/versions/latest",
                "latest_html": f"{base}/records/{record.id}/latest",
            },
            "files": [
                {"id": f"file-{i}", "key": key, "size": record.declared_size or len(data),
                 "checksum": "md5:0", "links": {"self": f"{base}/api/records/{record.id}/files/{quote(key)}/content"}}
                for i, (key, data) in enumerate(record.files.items())
            ],
            "status": "published",
        }


class ZenodoRecordAPIHandler(ZenodoHandler):
    def get(self, record_id: str) -> None:
        record = self.fake.records.get(int(record_id))
        if record is None:
            latest = self.fake.latest(int(record_id))
            if latest is not None:  # a concept (parent) id: Zenodo redirects to the latest version
                return self.redirect(f"/api/records/{latest.id}", status=301)
            return self.send_json({"status": 404, "message": "The persistent identifier does not exist."}, 404)
        self.send_json(self.record_json(record))


class ZenodoFileHandler(ZenodoHandler):
    def get(self, record_id: str, key: str) -> None:
        record = self.fake.records.get(int(record_id))
        if record is None or key not in record.files:
            return self.send_json({"status": 404, "message": "Not found."}, 404)
        self.set_header("Content-Type", "application/octet-stream")
        self.finish(record.files[key])


class ZenodoDOIPageHandler(ZenodoHandler):
    def get(self, doi: str) -> None:
        number = int(doi.rsplit(".", 1)[1])
        record = self.fake.records.get(number) or self.fake.latest(number)
        if record is None:
            return self.send_error(404)
        self.redirect(f"/records/{record.id}", status=302)


class ZenodoPageHandler(ZenodoHandler):
    def get(self, record_id: str) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish("<!DOCTYPE html><html><head><title>Zenodo</title></head><body>record page</body></html>")


def zenodo_service(fake: FakeZenodo) -> Service:
    service = Service([])
    service.fake = fake
    kwargs = {"fake": fake, "service": service}
    service.app.add_handlers(r".*", [
        (r"/api/records/(\d+)", ZenodoRecordAPIHandler, kwargs),
        (r"/api/records/(\d+)/files/(.+)/content", ZenodoFileHandler, kwargs),
        (r"/doi/(10\..+)", ZenodoDOIPageHandler, kwargs),
        (r"/records?/(\d+)", ZenodoPageHandler, kwargs),
    ])
    return service


# --- Figshare (API v2) ---------------------------------------------------------------------------------
@dataclass
class FakeFigshare:
    #: article id → version number → {file name: content}; names ending in ".link" are link-only files
    articles: dict[int, dict[int, dict[str, bytes]]] = field(default_factory=dict)


class FigshareHandler(Handler):
    fake: FakeFigshare

    def entity_not_found(self) -> None:
        self.send_json({"message": "Entity not found: article", "code": "EntityNotFound"}, 404)


class FigshareVersionsHandler(FigshareHandler):
    def get(self, article_id: str) -> None:
        versions = self.fake.articles.get(int(article_id))
        if not versions:
            return self.entity_not_found()
        self.send_json([{"version": v, "url": f"{self.service.url}/v2/articles/{article_id}/versions/{v}"}
                        for v in sorted(versions)])


class FigshareArticleHandler(FigshareHandler):
    def get(self, article_id: str, version: str) -> None:
        files = self.fake.articles.get(int(article_id), {}).get(int(version))
        if files is None:
            return self.entity_not_found()
        base = self.service.url
        self.send_json({
            "id": int(article_id),
            "title": "Binder-ready analysis",
            "doi": f"10.6084/m9.figshare.{article_id}.v{version}",
            "url": f"{base}/v2/articles/{article_id}",
            "url_public_html": f"https://figshare.com/articles/dataset/Binder-ready_analysis/{article_id}/{version}",
            "figshare_url": f"https://figshare.com/articles/dataset/Binder-ready_analysis/{article_id}",
            "version": int(version),
            "is_public": True,
            "files": [
                {
                    "id": int(article_id) * 100 + i,
                    "name": name,
                    "size": len(data),
                    "is_link_only": name.endswith(".link"),
                    "download_url": "https://example.org/elsewhere" if name.endswith(".link")
                    else f"{base}/ndownloader/files/{article_id}/{version}/{quote(name)}",
                    "supplied_md5": "", "computed_md5": "", "mimetype": "application/octet-stream",
                }
                for i, (name, data) in enumerate(files.items())
            ],
        })


class FigshareDownloadHandler(FigshareHandler):
    def get(self, article_id: str, version: str, name: str) -> None:
        self.set_header("Content-Type", "application/octet-stream")
        self.finish(self.fake.articles[int(article_id)][int(version)][name])


def figshare_service(fake: FakeFigshare) -> Service:
    service = Service([])
    service.fake = fake
    kwargs = {"fake": fake, "service": service}
    service.app.add_handlers(r".*", [
        (r"/v2/articles/(\d+)/versions", FigshareVersionsHandler, kwargs),
        (r"/v2/articles/(\d+)/versions/(\d+)", FigshareArticleHandler, kwargs),
        (r"/ndownloader/files/(\d+)/(\d+)/(.+)", FigshareDownloadHandler, kwargs),
    ])
    return service


# --- Dataverse (native API) ----------------------------------------------------------------------------
@dataclass
class DataverseFile:
    label: str
    content: bytes
    directory: str = ""
    original_name: str = ""  # tabular files: served as .tab unless format=original
    restricted: bool = False


@dataclass
class FakeDataverse:
    #: persistent id (doi:10.x/DVN/ABC) → dataset id and published versions (major.minor → files)
    datasets: dict[str, tuple[int, dict[str, list[DataverseFile]]]] = field(default_factory=dict)

    def file_by_id(self, file_id: int) -> tuple[str, DataverseFile] | None:
        for pid, (_dataset_id, versions) in self.datasets.items():
            for files in versions.values():
                for f in files:
                    if self.file_id(pid, f) == file_id:
                        return pid, f
        return None

    def file_id(self, pid: str, f: DataverseFile) -> int:
        return self.datasets[pid][0] * 1000 + sum(map(ord, f.directory + f.label))


class DataverseHandler(Handler):
    fake: FakeDataverse

    def error(self, message: str, status: int = 404) -> None:
        self.send_json({"status": "ERROR", "message": message}, status, "application/json;charset=UTF-8")

    def version_json(self, pid: str, number: str) -> dict:
        dataset_id, versions = self.fake.datasets[pid]
        major, minor = number.split(".")
        return {
            "id": dataset_id * 10 + int(major),
            "datasetId": dataset_id,
            "datasetPersistentId": pid,
            "storageIdentifier": f"s3://{pid[4:]}",
            "versionNumber": int(major),
            "versionMinorNumber": int(minor),
            "versionState": "RELEASED",
            "files": [
                {
                    "label": f.label,
                    "restricted": f.restricted,
                    **({"directoryLabel": f.directory} if f.directory else {}),
                    "version": 1,
                    "datasetVersionId": dataset_id * 10 + int(major),
                    "dataFile": {
                        "id": self.fake.file_id(pid, f),
                        "persistentId": "",
                        "filename": f.label,
                        "contentType": "application/octet-stream",
                        "filesize": len(f.content) + (7 if f.original_name else 0),
                        **({"originalFileName": f.original_name, "originalFileSize": len(f.content),
                            "originalFileFormat": "text/tsv", "tabularData": True} if f.original_name else {}),
                        "md5": "0", "checksum": {"type": "MD5", "value": "0"},
                    },
                }
                for f in versions[number]
            ],
        }

    def latest(self, pid: str) -> str:
        return max(self.fake.datasets[pid][1], key=lambda v: tuple(map(int, v.split("."))))


class DataverseDatasetHandler(DataverseHandler):
    def get(self, version: str | None = None) -> None:
        pid = self.get_query_argument("persistentId", "")
        if pid not in self.fake.datasets:
            return self.error(f"Dataset with Persistent ID {pid} not found.")
        dataset_id, versions = self.fake.datasets[pid]
        if version is not None:
            if version not in versions:
                return self.error(f"Dataset version {version} of dataset {dataset_id} not found")
            return self.send_json({"status": "OK", "data": self.version_json(pid, version)})
        authority, identifier = pid[4:].split("/", 1)
        self.send_json({"status": "OK", "data": {
            "id": dataset_id,
            "identifier": identifier,
            "persistentUrl": f"https://doi.org/{pid[4:]}",
            "protocol": "doi",
            "authority": authority,
            "separator": "/",
            "publisher": "Fake Dataverse",
            "latestVersion": self.version_json(pid, self.latest(pid)),
        }})


class DataverseFileInfoHandler(DataverseHandler):
    def get(self, file_id: str) -> None:
        found = self.fake.file_by_id(int(file_id))
        if found is None:
            return self.error(f"File with ID {file_id} not found.")
        pid, f = found
        self.send_json({"status": "OK", "data": {
            "label": f.label,
            "dataFile": {"id": int(file_id), "filename": f.label},
            "datasetVersion": {"datasetPersistentId": pid, "versionNumber": int(self.latest(pid).split(".")[0])},
        }})


class DataverseAccessHandler(DataverseHandler):
    def get(self, file_id: str) -> None:
        found = self.fake.file_by_id(int(file_id))
        if found is None:
            return self.error(f"File with ID {file_id} not found.")
        _pid, f = found
        original = self.get_query_argument("format", "") == "original"
        self.set_header("Content-Type", "application/octet-stream")
        # without format=original a tabular file comes in the archival .tab format
        self.finish(f.content if original or not f.original_name else b"ARCHIVE" + f.content)


class DataverseCitationHandler(DataverseHandler):
    def get(self) -> None:
        self.redirect(f"/dataset.xhtml?persistentId={quote(self.get_query_argument('persistentId'))}", status=302)


def dataverse_service(fake: FakeDataverse) -> Service:
    service = Service([])
    service.fake = fake
    kwargs = {"fake": fake, "service": service}
    service.app.add_handlers(r".*", [
        (r"/api/datasets/:persistentId/?", DataverseDatasetHandler, kwargs),
        (r"/api/datasets/:persistentId/versions/([0-9.]+)", DataverseDatasetHandler, kwargs),
        (r"/api/files/(\d+)", DataverseFileInfoHandler, kwargs),
        (r"/api/access/datafile/(\d+)", DataverseAccessHandler, kwargs),
        (r"/citation", DataverseCitationHandler, kwargs),
    ])
    return service
