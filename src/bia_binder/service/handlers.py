"""HTTP handlers of the binder service: BinderHub's URL space."""

from __future__ import annotations

import asyncio
import functools
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

import yaml
from tornado import web
from tornado.iostream import StreamClosedError

from .. import __version__
from ..events import FAILED, LaunchError, event
from ..providers import PROVIDERS, STUDY_PROVIDERS, repoproviders_api
from ..studies import accessions
from . import launch_paths
from .badge import badge_svg
from .pipeline import LaunchRequest

SPEC_PATTERN = r"/([^/]+)/(.+)"  # provider, spec (positional: see raw_spec)

#: our pages load scripts, styles and images from us only; nothing inline, no frames, no other origins
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def set_security_headers(handler: web.RequestHandler) -> None:
    """What every page and API answer of ours carries (the browser tests' harness sets the same)."""
    handler.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("Referrer-Policy", "no-referrer")
    handler.set_header("X-Frame-Options", "DENY")
    handler.set_header("Cross-Origin-Opener-Policy", "same-origin")


class Refused(web.HTTPError):
    """A launch refused before it starts (banned, rate-limited): its status, one line, and when to retry."""

    def __init__(self, error: LaunchError):
        super().__init__(error.status_code, error.message)
        self.retry_after = getattr(error, "retry_after", None)


class StaticHandler(web.StaticFileHandler):
    """Our static files, with the same headers as our pages (nosniff matters most here)."""

    def set_default_headers(self) -> None:
        set_security_headers(self)


class BaseHandler(web.RequestHandler):
    @property
    def service(self):
        return self.settings["binder_service"]

    @property
    def base_url(self) -> str:
        return self.service.base_url

    def set_default_headers(self) -> None:
        set_security_headers(self)

    def prepare(self) -> None:
        if reason := malformed_url_reason(self.request.path):
            raise web.HTTPError(400, f"Malformed URL: {reason}; escape characters as %XX of UTF-8 bytes")

    def public_root(self) -> str:
        """scheme://host of the service as users reach it: from configuration, never from the request's
        ``Host`` (anyone can send ``Host: evil.example``)."""
        return self.service.public_origin

    def raw_spec(self, provider: str) -> str:
        """The spec as sent, still escaped: Tornado unquotes path arguments, which would turn a
        ``git/<escaped url>/<ref>`` spec's ``%2F`` into separators (BinderHub re-reads it too).

        The raw path is ``<base>v2/<provider as sent>/<spec>``: the spec is what follows the second
        segment, whatever escapes the provider segment holds."""
        path = self.request.path
        rest = path[len(self.base_url) :] if path.startswith(self.base_url) else path.lstrip("/")
        parts = rest.split("/", 2)
        return parts[2] if len(parts) == 3 else ""

    def render_page(self, name: str, **context: Any) -> None:
        template = self.settings["jinja_env"].get_template(name)
        self.finish(
            template.render(
                base_url=self.base_url,
                static_url=self.static_url,
                version=__version__,
                hub_url=self.service.hub_prefix,
                login_url=f"{self.service.hub_prefix}login",
                logins=self.service.logins,  # no "Log in" that leads to a 403 where nobody can log in
                xsrf_form_html=self.xsrf_form_html,
                banner=self.service.banner,
                **context,
            )
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message
        if isinstance(exc, Refused) and exc.retry_after:
            self.set_header("Retry-After", str(exc.retry_after))  # send_error cleared headers set before
        if "text/event-stream" in self.request.headers.get("Accept", ""):
            # an event-stream client (BinderHub's JS client) reads the reason as one failed event
            self.set_header("Content-Type", "text/event-stream")
            self.finish(f"data: {json.dumps(event(FAILED, message, status_code=status_code))}\n\n")
            return
        if self.request.path.startswith(f"{self.base_url}api/") or "json" in self.request.headers.get("Accept", ""):
            self.finish({"status_code": status_code, "message": message})
            return
        try:
            self.render_page("error.html", status_code=status_code, message=message)
        except Exception:  # noqa: BLE001 - the error page itself must never fail
            self.finish(f"{status_code}: {message}")


class MainHandler(BaseHandler):
    def get(self) -> None:
        self.render_page("index.html", repoproviders=repoproviders_api())


class LaunchPageHandler(BaseHandler):
    """``/v2/<provider>/<spec>``: the page that opens the event stream and redirects when ready."""

    def get(self, provider: str, _unquoted_spec: str) -> None:
        spec = self.raw_spec(provider)
        if provider not in PROVIDERS and provider not in STUDY_PROVIDERS:
            known = ", ".join(sorted([*PROVIDERS, *STUDY_PROVIDERS]))
            raise web.HTTPError(404, f"Unknown repository provider {provider!r}: use one of {known}")
        try:
            study_query = study_query_of(self, provider, spec)
            opens = launch_paths.validated({name: self.get_argument(name, "") for name in LAUNCH_PATH_PARAMETERS})
            self.service.bans.check_spec(provider, spec)
        except LaunchError as e:
            raise Refused(e) from None
        build_query = f"?{urlencode(study_query)}" if study_query else ""
        self.render_page(
            "loading.html",
            provider_prefix=provider,
            spec=spec,
            build_url=f"{self.base_url}build/{quote(provider, safe='')}/{spec}{build_query}",
            repo_url="",
            ref="",
            social_desc=f"Launch {provider}/{spec} on bia-binder",
            **opens,
        )


#: query parameters of a launch link that name what to open in the session
LAUNCH_PATH_PARAMETERS = ("urlpath", "labpath", "filepath")


def study_query_of(handler: web.RequestHandler, provider: str, spec: str) -> dict[str, str]:
    """For a study link: the spec and query checked (LaunchError 400: before any request to an archive),
    and the query parameters the launch pipeline uses (``image``). Other providers: nothing checked here."""
    if provider not in STUDY_PROVIDERS:
        return {}
    accessions.parse(provider, spec)
    accessions.query_parameters(handler.request.query_arguments)
    image = accessions.image_parameter(handler.get_argument("image", ""))
    return {"image": image} if image else {}


class EventStreamHandler(BaseHandler):
    """A Server-Sent Events stream: events, keepalives (``service.keepalive_interval``), a closed flag.

    Shared by the service's ``/build`` and the federation gateway's, which keeps its own keepalives
    going while a launch moves between members."""

    _closed = False

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")

    async def open_stream(self) -> bool:
        """Start the event stream; a client that does not accept one gets a 400 with one failed event."""
        self.set_header("Content-Type", "text/event-stream")
        if "text/event-stream" in self.request.headers.get("Accept", ""):
            return True
        self.set_status(400)
        await self.send_event(event(FAILED, "This endpoint streams Server-Sent Events: send 'Accept: text/event-stream'.", status_code=400))
        return False

    async def send_event(self, item: dict[str, Any]) -> None:
        if self._closed:
            return
        try:
            self.write(f"data: {json.dumps(item)}\n\n")
            await self.flush()
        except StreamClosedError:
            self._closed = True

    async def keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.service.keepalive_interval)
            try:
                self.write(":keepalive\n\n")
                await self.flush()
            except StreamClosedError:
                self._closed = True
                return

    def on_connection_close(self) -> None:
        self._closed = True


class BuildHandler(EventStreamHandler):
    """``/build/<provider>/<spec>``: the launch as Server-Sent Events."""

    async def get(self, provider: str, _unquoted_spec: str) -> None:
        spec = self.raw_spec(provider)
        if not await self.open_stream():
            return
        try:
            study_query = study_query_of(self, provider, spec)
        except LaunchError as e:  # the stream's one failed event says why (EventSource drops non-200 bodies)
            await self.send_event(e.to_event())
            return
        try:
            self.service.bans.check_spec(provider, spec)
            limiter = self.service.rate_limiter
            limiter.hit(limiter.client_address(self.request))
        except LaunchError as e:
            raise Refused(e) from None  # a real 403/429 status (with Retry-After), and one failed event
        self._closed = False
        self.service.metrics.inprogress.inc()
        self.service.launch_streams.add(self)
        keepalive = asyncio.ensure_future(self.keep_alive())
        try:
            request = LaunchRequest(
                query=study_query,
                provider=provider,
                spec=spec,
                launch_host=f"{self.public_root()}{self.base_url}",
                origin_host=self.public_root(),
                stream_open=lambda: not self._closed,
            )
            await self.service.pipeline.run(request, self.send_event)
        finally:
            keepalive.cancel()
            self.service.metrics.inprogress.dec()
            self.service.launch_streams.discard(self)
        if not self._closed:
            self.finish()

    async def end_with(self, item: dict[str, Any]) -> None:
        """End this stream now with ``item`` (the service is stopping): its launch gets exactly one last event."""
        await self.send_event(item)
        if not self._closed:
            self._closed = True
            self.finish()

class HealthHandler(BaseHandler):
    async def get(self) -> None:
        from .federation_member import member_load  # the federation gateway ranks members by this load

        checks = await self.service.health_checks()
        ok = all(check["ok"] for check in checks)
        self.set_status(200 if ok else 503)
        self.finish({"ok": ok, "checks": checks, "load": await member_load(self.service)})


class RouteProbeHandler(BaseHandler):
    """What /health asks for through the proxy: this process's instance id (see BinderService.route_status)."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain")
        self.set_header("Cache-Control", "no-store")
        self.finish(self.service.instance_id)


class VersionsHandler(BaseHandler):
    def get(self) -> None:
        self.finish({"binderhub": f"bia-binder {__version__}", "builder_info": self.service.builder_info()})


class RepoProvidersHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(repoproviders_api()))


class OpenAPIHandler(BaseHandler):
    """``/api/openapi.json``: the API described in ``openapi.yaml``, as JSON."""

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(openapi_document())


@functools.lru_cache(maxsize=1)
def openapi_document() -> str:
    return json.dumps(yaml.safe_load((Path(__file__).parent / "openapi.yaml").read_text()))


class BadgeHandler(BaseHandler):
    def get(self, logo: str | None = None) -> None:
        self.set_header("Content-Type", "image/svg+xml")
        self.set_header("Cache-Control", "public, max-age=86400")
        self.finish(badge_svg(with_logo=bool(logo)))


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4")
        self.finish(self.service.metrics.render())


class LegacyRepoHandler(BaseHandler):
    """``/repo/<user>/<repo>[/<path>]`` (binder v1 links) → ``/v2/gh/<user>/<repo>/HEAD``."""

    def get(self, user: str, repo: str, path: str | None) -> None:
        query = {"urlpath": path.lstrip("/")} if path and path.strip("/") else {}
        target = f"{self.base_url}v2/gh/{quote(user)}/{quote(repo)}/HEAD"
        self.redirect(target + (f"?{urlencode(query)}" if query else ""))


class UserRedirectHandler(BaseHandler):
    """The proxy sends ``/user/<name>/...`` here when that server is not running: the hub decides."""

    def get(self, rest: str) -> None:
        query = f"?{quote(self.request.query, safe='=&%+;/:?@,')}" if self.request.query else ""
        # Tornado decoded the path: escape it again (a control character would be an invalid Location)
        self.redirect(f"{self.service.hub_prefix}user/{quote(rest, safe='/@!$&()*+,;=:~')}{query}")

    post = put = delete = get


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        super().prepare()
        raise web.HTTPError(404, f"No page at {self.request.path}; launch links look like {self.base_url}v2/gh/<org>/<repo>/<ref>")


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def malformed_url_reason(raw_path: str) -> str | None:
    """Why a request path as sent cannot be a URL of ours (a bad escape, invalid UTF-8, control characters)."""
    if _BAD_ESCAPE.search(raw_path):
        return "a % not followed by two hex digits"
    try:
        decoded = unquote(raw_path, errors="strict")
    except UnicodeDecodeError:
        return "escapes that are not UTF-8"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded):
        return "control characters (NUL, CR, LF...)"
    return None


def routes(base_url: str) -> list[tuple]:
    from .federation_member import HoldsHandler  # imports this module

    prefix = re.escape(base_url.rstrip("/"))
    return [
        (rf"{prefix}/?", MainHandler),
        (rf"{prefix}/v2{SPEC_PATTERN}", LaunchPageHandler),
        (rf"{prefix}/build{SPEC_PATTERN}", BuildHandler),
        (rf"{prefix}/health/?", HealthHandler),
        (rf"{prefix}/health/route-probe", RouteProbeHandler),
        (rf"{prefix}/versions/?", VersionsHandler),
        (rf"{prefix}/api/repoproviders/?", RepoProvidersHandler),
        (rf"{prefix}/api/openapi\.json", OpenAPIHandler),
        (rf"{prefix}/api/federation/holds", HoldsHandler),
        (rf"{prefix}/badge(_logo)?\.svg", BadgeHandler),
        (rf"{prefix}/metrics/?", MetricsHandler),
        (rf"{prefix}/repo/([^/]+)/([^/]+)(/.*)?", LegacyRepoHandler),
        (rf"{prefix}/user/(.*)", UserRedirectHandler),
    ]


__all__ = ["routes", "NotFoundHandler", "LaunchError"]
