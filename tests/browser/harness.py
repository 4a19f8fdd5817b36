"""A stand-in for the binder service, to test the pages in a real browser without building anything.

It renders the real templates with the context the service gives them, serves the real static
files with versioned URLs, answers ``/api/repoproviders`` in BinderHub's shape, and streams
launches as Server-Sent Events in BinderHub's wire format (``data: <json>\\n\\n``). What a launch
does depends on the repository name in its spec:

* ``.../fail-...``: a build whose install fails (coloured uv error, then ``failed`` with 500)
* ``.../hold-...``: keeps building until the browser goes away (for mid-build views)
* ``.../drop-...``: the stream ends without ``ready`` or ``failed`` (a lost connection)
* ``.../cached-...``: the environment is already built: ``built`` → ``launching`` → ``ready``
* ``.../recorded-...``: replays a real BinderHub stream (``RECORDED_STREAM``)
* ``.../nourl-...``: a ``ready`` event without the server's ``url``
* ``.../launchfail-...``: the environment builds, then its server fails to start (500)
* anything else: a full build with coloured lines and ``\\r`` progress, then ``ready``

``ready`` points at ``/user/<name>/`` on this server, a fake Jupyter server page that shows the
path and token it was opened with, so tests can check the redirect.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, AsyncIterator

import jinja2
from tornado import httpserver, netutil, web
from tornado.iostream import StreamClosedError

import bia_binder
from bia_binder.providers import repoproviders_api
from bia_binder.service import __file__ as service_init
from bia_binder.service.badge import badge_svg
from bia_binder.service.handlers import set_security_headers

SERVICE_DIR = Path(service_init).parent
#: shared/ sits beside the repository's checkout (here and in CI)
REFERENCE_DATA = Path(__file__).resolve().parents[3] / "shared" / "reference-data"
RECORDED_STREAM = Path(os.environ.get("BIA_BINDER_REFERENCE_DATA", REFERENCE_DATA)) / "binderhub" / "fullbuild.eventsource"

#: What the real service answers on /api/repoproviders (the providers' own display_config).
REPOPROVIDERS: list[dict[str, Any]] = repoproviders_api()

#: BinderHub's own /api/repoproviders, in its order: the record providers and git carry no
#: detect rules there (the page supplies its own).
BINDERHUB_REPOPROVIDERS: list[dict[str, Any]] = [
    {
        "displayName": "GitHub",
        "id": "gh",
        "spec": {"validateRegex": r"[^/]+/[^/]+/.+"},
        "detect": {"regex": r"^(https?://github\.com/)?(?<repo>[^/\s]+/[^/\s]+?)(\.git)?(/tree/(?<ref>.+?))?/?$"},
        "repo": {"label": "GitHub repository name or URL", "placeholder": "binder-examples/requirements", "urlEncode": False},
        "ref": {"enabled": True, "default": "HEAD"},
    },
    {
        "displayName": "GitLab",
        "id": "gl",
        "spec": {"validateRegex": r"[^/]+/.+"},
        "detect": {"regex": r"^(https?://gitlab\.com/)?(?<repo>[^\s]*?[^/\s])(\.git)?(/-/tree/(?<ref>.+?))?/?$"},
        "repo": {"label": "GitLab repository name or URL", "placeholder": "", "urlEncode": True},
        "ref": {"enabled": True, "default": "HEAD"},
    },
    {
        "displayName": "GitHub Gist",
        "id": "gist",
        "spec": {"validateRegex": r"[^/]+/[^/]+(/[^/]+)?"},
        "detect": {"regex": r"^(https?://gist\.github\.com/)?(?<repo>[^/\s]+/[0-9A-Za-z]+)(/(?<ref>[0-9a-f]{40}))?/?$"},
        "repo": {"label": "Gist ID (username/gistId) or URL", "placeholder": "", "urlEncode": False},
        "ref": {"enabled": True, "default": "HEAD"},
    },
    {
        "displayName": "Git repository",
        "id": "git",
        "spec": {"validateRegex": r"[^/]+/.+"},
        "repo": {"label": "Arbitrary git repository URL", "placeholder": "http://git.example.com/repo", "urlEncode": True},
        "ref": {"enabled": True, "default": "HEAD"},
    },
    {
        "displayName": "Zenodo DOI",
        "id": "zenodo",
        "spec": {"validateRegex": r"10\.\d+\/(.)+"},
        "repo": {"label": "Zenodo DOI", "placeholder": "10.5281/zenodo.3242074", "urlEncode": False},
        "ref": {"enabled": False},
    },
    {
        "displayName": "FigShare DOI",
        "id": "figshare",
        "spec": {"validateRegex": r"10\.\d+\/(.)+"},
        "repo": {"label": "FigShare DOI", "placeholder": "10.6084/m9.figshare.9782777.v1", "urlEncode": False},
        "ref": {"enabled": False},
    },
    {
        "displayName": "Dataverse DOI",
        "id": "dataverse",
        "spec": {"validateRegex": r"10\.\d+\/(.)+"},
        "repo": {"label": "Dataverse DOI", "placeholder": "10.7910/DVN/TJCLKP", "urlEncode": False},
        "ref": {"enabled": False},
    },
]

FAKE_SERVER_TOKEN = "harness-token-0123"


def event(phase: str | None, message: str, **fields: Any) -> dict[str, Any]:
    return {**({"phase": phase} if phase else {}), "message": message, **fields}


def scenario_of(spec: str) -> str:
    name = spec.split("/")[1] if "/" in spec else spec
    scenarios = ("fail", "hold", "drop", "cached", "recorded", "nourl", "launchfail")
    return next((s for s in scenarios if name.startswith(s)), "build")


def build_log() -> list[dict[str, Any]]:
    """A full build as the builder reports it: colours, a `\\r` progress line, about 150 lines."""
    lines = [event("waiting", "Waiting for build to start...\n"), event("fetching", "Fetching repository...\n")]
    lines += [event("fetching", "HEAD is now at 1a2b3c4 Add analysis notebook\n")]
    lines += [event("building", "\x1b[1mDetected requirements.txt\x1b[0m: building a Python environment with uv\n")]
    lines += [event("building", f"Downloading ({pct}%)\r") for pct in range(0, 101, 20)]
    lines += [event("building", "\n")]
    lines += [event("building", f" \x1b[32m+\x1b[0m package-{i:03d}==1.{i}.0\n") for i in range(120)]
    lines += [event("building", "\x1b[33mwarning:\x1b[0m postBuild took 2.1s\n")]
    lines += [event("built", "Built environment in 4.3s\n")]
    lines += [event("launching", "Launching server...\n"), event("launching", "Server ready at /user/test-user/\n")]
    return lines


def failing_log() -> list[dict[str, Any]]:
    return [
        event("waiting", "Waiting for build to start...\n"),
        event("fetching", "Fetching repository...\n"),
        event("building", "Detected requirements.txt: building a Python environment with uv\n"),
        event("building", "\x1b[31m\x1b[1merror\x1b[0m: No solution found when resolving dependencies:\n"),
        event("building", "  Because there is no version of numpy==0.0.1 and you require numpy==0.0.1, we can conclude that your requirements are unsatisfiable.\n"),
        event(
            "failed",
            "\x1b[31mBuilding the environment failed\x1b[0m: `uv pip install -r requirements.txt` exited with status 1. "
            "Fix requirements.txt and launch again.\n",
            status_code=500,
        ),
    ]


def recorded_events() -> list[dict[str, Any]]:
    # The file holds one `data:` line per event (blank separators dropped).
    return [json.loads(line[5:]) for line in RECORDED_STREAM.read_text().splitlines() if line.startswith("data:")]


class HarnessHandler(web.RequestHandler):
    def set_default_headers(self) -> None:
        set_security_headers(self)  # the real service's CSP: a page that needs inline script fails here too

    @property
    def harness(self) -> "PageHarness":
        return self.settings["harness"]

    def render_page(self, name: str, **context: Any) -> None:
        template = self.settings["jinja_env"].get_template(name)
        base_url = self.harness.base_url
        self.finish(
            template.render(
                base_url=base_url,
                static_url=self.static_url,
                version=bia_binder.__version__,
                hub_url="/hub/",
                login_url="/hub/login",
                logins=self.harness.logins,
                xsrf_form_html=self.xsrf_form_html,
                banner=self.harness.banner,
                **context,
            )
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.render_page("error.html", status_code=status_code, message=self._reason)

    def raw_spec(self, provider: str) -> str:
        """The spec as sent, still percent-encoded (routing decodes it; git URLs need %2F kept)."""
        return self.request.path.split(f"/{provider}/", 1)[1]


class NotFoundHandler(HarnessHandler):
    def prepare(self) -> None:
        raise web.HTTPError(404, reason=f"No page at {self.request.path}")


class HomeHandler(HarnessHandler):
    def get(self) -> None:
        self.render_page("index.html", repoproviders=self.harness.embedded_repoproviders)


class RepoProvidersHandler(HarnessHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.harness.repoproviders))


class LaunchPageHandler(HarnessHandler):
    def get(self, provider: str, _decoded_spec: str) -> None:
        spec = self.raw_spec(provider)
        self.render_page(
            "loading.html",
            provider_prefix=provider,
            spec=spec,
            build_url=f"{self.harness.base_url}build/{provider}/{spec}",
            repo_url=f"https://example.org/{spec.rsplit('/', 1)[0]}",
            ref=spec.rsplit("/", 1)[-1],
            urlpath=self.get_argument("urlpath", ""),
            labpath=self.get_argument("labpath", ""),
            filepath=self.get_argument("filepath", ""),
        )


class BuildHandler(HarnessHandler):
    """``/build/<provider>/<spec>`` as Server-Sent Events, one scenario per repository name."""

    async def get(self, provider: str, _decoded_spec: str) -> None:
        spec = self.raw_spec(provider)
        self.harness.build_requests.append(f"{provider}/{spec}")
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        try:
            async for item in self.events(provider, spec):
                self.write(f"data: {json.dumps(item)}\n\n")
                await self.flush()
                await asyncio.sleep(self.harness.event_delay)
        except StreamClosedError:
            return
        self.finish()

    async def events(self, provider: str, spec: str) -> AsyncIterator[dict[str, Any]]:
        scenario = scenario_of(spec)
        if scenario == "fail":
            for item in failing_log():
                yield item
            return
        if scenario == "hold":
            for item in build_log()[:50]:
                yield item
            while not self.harness.stopping:
                await asyncio.sleep(0.1)
            return
        if scenario == "launchfail":
            for item in build_log():
                yield item
            yield event("failed", "Spawn failed: the server exited before it answered\n", status_code=500)
            return
        if scenario == "nourl":
            yield event("waiting", "Waiting for build to start...\n")
            yield event("ready", "server running\n")
            return
        if scenario == "drop":
            for item in build_log()[:10]:
                yield item
            return
        if scenario == "cached":
            items = [event("waiting", "Waiting for build to start...\n"), event("built", "Found built environment\n")]
            items += build_log()[-2:]
        elif scenario == "recorded":
            items = [item for item in recorded_events() if item.get("phase") != "ready"]
        else:
            items = build_log()
        for item in items:
            yield item
        yield self.ready_event(provider, spec)

    def ready_event(self, provider: str, spec: str) -> dict[str, Any]:
        origin = f"{self.request.protocol}://{self.request.host}"
        return event(
            "ready",
            f"server running at {origin}/user/test-user/\n",
            url=f"{origin}/user/test-user/",
            token=FAKE_SERVER_TOKEN,
            image="env-1a2b3c4d",
            repo_url=f"https://example.org/{spec.rsplit('/', 1)[0]}",
            binder_ref_url=f"https://example.org/{spec.rsplit('/', 1)[0]}/tree/1a2b3c4d",
            binder_launch_host=f"{origin}{self.harness.base_url}",
            binder_request=f"v2/{provider}/{spec}",
            binder_persistent_request=f"v2/{provider}/{spec.rsplit('/', 1)[0]}/1a2b3c4d",
        )


class BadgeHandler(web.RequestHandler):
    def get(self, logo: str | None) -> None:
        self.set_header("Content-Type", "image/svg+xml")
        self.finish(badge_svg(with_logo=bool(logo)))


class FakeServerHandler(web.RequestHandler):
    """Where ``ready`` sends the browser: shows the path and token it was opened with."""

    def get(self, path: str) -> None:
        body = (
            "<!doctype html><title>Fake Jupyter server</title><link rel=icon href=\"data:,\">"
            f"<p id='path'>{web.escape.xhtml_escape(path)}</p>"
            f"<p id='token'>{web.escape.xhtml_escape(self.get_argument('token', ''))}</p>"
        )
        self.finish(body)


class PageHarness:
    """Serves the pages on a free 127.0.0.1 port of the running asyncio loop."""

    def __init__(self, base_url: str = "/", banner: str = "", event_delay: float = 0.002, logins: bool = True):
        self.base_url = base_url
        self.banner = banner
        self.logins = logins
        self.event_delay = event_delay
        self.repoproviders: list[dict[str, Any]] = REPOPROVIDERS
        #: what the home page template gets: the list, its JSON text, or None (the page fetches it)
        self.embedded_repoproviders: Any = REPOPROVIDERS
        self.build_requests: list[str] = []
        self.stopping = False
        self._server: httpserver.HTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """Origin plus base URL, e.g. ``http://127.0.0.1:41234/binder/``."""
        return f"http://127.0.0.1:{self.port}{self.base_url}"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def make_app(self) -> web.Application:
        prefix = self.base_url.rstrip("/")
        spec = r"/([^/]+)/(.+)"  # provider, spec (positional: see raw_spec)
        return web.Application(
            [
                (rf"{prefix}/?", HomeHandler),
                (rf"{prefix}/api/repoproviders", RepoProvidersHandler),
                (rf"{prefix}/v2{spec}", LaunchPageHandler),
                (rf"{prefix}/build{spec}", BuildHandler),
                (rf"{prefix}/badge(_logo)?\.svg", BadgeHandler),
                (r"/user/test-user/(.*)", FakeServerHandler),
            ],
            default_handler_class=NotFoundHandler,
            static_path=str(SERVICE_DIR / "static"),
            static_url_prefix=f"{self.base_url}static/",
            jinja_env=jinja2.Environment(loader=jinja2.FileSystemLoader(str(SERVICE_DIR / "templates")), autoescape=True),
            harness=self,
        )

    async def start(self) -> "PageHarness":
        sockets = netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self._server = httpserver.HTTPServer(self.make_app())
        self._server.add_sockets(sockets)
        return self

    async def stop(self) -> None:
        self.stopping = True
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None
