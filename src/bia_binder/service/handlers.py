"""HTTP handlers of the binder service: BinderHub's URL space."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import quote, urlencode

from tornado import web
from tornado.iostream import StreamClosedError

from .. import __version__
from ..events import FAILED, LaunchError, event
from ..providers import repoproviders_api
from .badge import badge_svg
from .pipeline import LaunchRequest

SPEC_PATTERN = r"/([^/]+)/(.+)"  # provider, spec (positional: see raw_spec)


class BaseHandler(web.RequestHandler):
    @property
    def service(self):
        return self.settings["binder_service"]

    @property
    def base_url(self) -> str:
        return self.service.base_url

    def public_root(self) -> str:
        """scheme://host of this request, as the user sees it (behind the proxy)."""
        return f"{self.request.protocol}://{self.request.host}"

    def raw_spec(self, provider: str) -> str:
        """The spec as sent, still escaped: Tornado unquotes path arguments, which would turn a
        ``git/<escaped url>/<ref>`` spec's ``%2F`` into separators (BinderHub re-reads it too)."""
        marker = f"/{provider}/"
        path = self.request.path
        return path[path.index(marker, len(self.base_url)) + len(marker):]

    def render_page(self, name: str, **context: Any) -> None:
        template = self.settings["jinja_env"].get_template(name)
        self.finish(
            template.render(
                base_url=self.base_url,
                static_url=self.static_url,
                version=__version__,
                hub_url=self.service.hub_prefix,
                login_url=f"{self.service.hub_prefix}login",
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
        self.render_page(
            "loading.html",
            provider_prefix=provider,
            spec=spec,
            build_url=f"{self.base_url}build/{provider}/{spec}",
            repo_url="",
            ref="",
            urlpath=self.get_argument("urlpath", ""),
            labpath=self.get_argument("labpath", ""),
            filepath=self.get_argument("filepath", ""),
            social_desc=f"Launch {provider}/{spec} on bia-binder",
        )


class BuildHandler(BaseHandler):
    """``/build/<provider>/<spec>``: the launch as Server-Sent Events."""

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")

    async def get(self, provider: str, _unquoted_spec: str) -> None:
        spec = self.raw_spec(provider)
        self.set_header("Content-Type", "text/event-stream")
        if "text/event-stream" not in self.request.headers.get("Accept", ""):
            self.set_status(400)
            await self.send_event(event(FAILED, "This endpoint streams Server-Sent Events: send 'Accept: text/event-stream'.", status_code=400))
            return
        self._closed = False
        self.service.metrics.inprogress.inc()
        keepalive = asyncio.ensure_future(self.keep_alive())
        try:
            request = LaunchRequest(
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
        if not self._closed:
            self.finish()

    async def send_event(self, item: dict[str, Any]) -> None:
        if getattr(self, "_closed", False):
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


class HealthHandler(BaseHandler):
    async def get(self) -> None:
        checks = await self.service.health_checks()
        ok = all(check["ok"] for check in checks)
        self.set_status(200 if ok else 503)
        self.finish({"ok": ok, "checks": checks})


class VersionsHandler(BaseHandler):
    def get(self) -> None:
        self.finish({"binderhub": f"bia-binder {__version__}", "builder_info": self.service.builder_info()})


class RepoProvidersHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(repoproviders_api()))


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
        query = f"?{self.request.query}" if self.request.query else ""
        self.redirect(f"{self.service.hub_prefix}user/{rest}{query}")

    post = put = delete = get


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        raise web.HTTPError(404, f"No page at {self.request.path}; launch links look like {self.base_url}v2/gh/<org>/<repo>/<ref>")


def routes(base_url: str) -> list[tuple]:
    prefix = re.escape(base_url.rstrip("/"))
    return [
        (rf"{prefix}/?", MainHandler),
        (rf"{prefix}/v2{SPEC_PATTERN}", LaunchPageHandler),
        (rf"{prefix}/build{SPEC_PATTERN}", BuildHandler),
        (rf"{prefix}/health/?", HealthHandler),
        (rf"{prefix}/versions/?", VersionsHandler),
        (rf"{prefix}/api/repoproviders/?", RepoProvidersHandler),
        (rf"{prefix}/badge(_logo)?\.svg", BadgeHandler),
        (rf"{prefix}/metrics/?", MetricsHandler),
        (rf"{prefix}/repo/([^/]+)/([^/]+)(/.*)?", LegacyRepoHandler),
        (rf"{prefix}/user/(.*)", UserRedirectHandler),
    ]


__all__ = ["routes", "NotFoundHandler", "LaunchError"]
