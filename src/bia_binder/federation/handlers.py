"""HTTP handlers of the federation gateway: a member's public URL space, served for several members.

Pages, badges and the provider list are the service's own handlers (they only need what
:class:`~bia_binder.federation.app.FederationGateway` provides: ``base_url``, ``public_origin``,
``hub_prefix``, ``banner``); so are the security headers and the refusal of malformed URLs
(``service.handlers.BaseHandler``). What differs is where a launch goes.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import quote, urlencode

from tornado import web
from tornado.iostream import StreamClosedError

from .. import __version__
from ..events import LaunchError
from ..providers import PROVIDERS, STUDY_PROVIDERS
from ..service import launch_paths
from ..service.builds import failure_from
from ..service.handlers import (
    SPEC_PATTERN,
    BadgeHandler,
    BaseHandler,
    EventStreamHandler,
    LaunchPageHandler,
    LAUNCH_PATH_PARAMETERS,
    LegacyRepoHandler,
    MainHandler,
    NotFoundHandler,
    Refused,
    RepoProvidersHandler,
    study_query_of,
)


class GatewayHandler(BaseHandler):
    @property
    def gateway(self):
        return self.settings["binder_service"]

    async def redirect_to_member(self, provider: str, spec: str, kind: str, query: str = "") -> None:
        """Redirect mode: resolve, choose, then a 307 to the member (mybinder.org's federation redirector)."""
        try:
            study_query_of(self, provider, spec)
            self.gateway.bans.check_spec(provider, spec)
            resolved = await self.gateway.resolve(provider, spec)
        except Exception as exc:  # noqa: BLE001 - every failure is one line with its status
            failure = failure_from(exc)
            raise web.HTTPError(failure.status_code, failure.message) from None
        placement = await self.gateway.place(resolved)
        if placement.first is None:
            raise web.HTTPError(503, "No member of this federation is healthy now; try again in a minute")
        self.gateway.redirected(resolved, placement)
        target = f"{placement.first.public_url}{kind}/{quote(provider, safe='')}/{spec}"
        self.redirect(target + (f"?{query}" if query else ""), status=307)


class GatewayLaunchPageHandler(GatewayHandler, LaunchPageHandler):
    """``/v2/<provider>/<spec>``: the launch page (its stream comes back to the gateway), or a 307."""

    async def get(self, provider: str, unquoted_spec: str) -> None:
        if self.gateway.mode != "redirect":
            return LaunchPageHandler.get(self, provider, unquoted_spec)
        if provider not in PROVIDERS and provider not in STUDY_PROVIDERS:
            known = ", ".join(sorted([*PROVIDERS, *STUDY_PROVIDERS]))
            raise web.HTTPError(404, f"Unknown repository provider {provider!r}: use one of {known}")
        wanted = {name: self.get_argument(name, "") for name in LAUNCH_PATH_PARAMETERS + ("image",)}
        try:
            launch_paths.validated({name: wanted[name] for name in LAUNCH_PATH_PARAMETERS})  # the member checks them again
        except LaunchError as e:
            raise web.HTTPError(e.status_code, e.message) from None
        query = urlencode({name: value for name, value in wanted.items() if value})
        await self.redirect_to_member(provider, self.raw_spec(provider), "v2", query)


class GatewayBuildHandler(GatewayHandler, EventStreamHandler):
    """``/build/<provider>/<spec>``: the launch as Server-Sent Events, from whichever member runs it."""

    async def get(self, provider: str, _unquoted_spec: str) -> None:
        spec = self.raw_spec(provider)
        if self.gateway.mode == "redirect":
            await self.redirect_to_member(provider, spec, "build", self.request.query)
            return
        if not await self.open_stream():
            return
        try:
            study_query = study_query_of(self, provider, spec)
        except LaunchError as e:
            await self.send_event(e.to_event())
            return
        limiter = self.gateway.rate_limiter
        client = limiter.client_address(self.request)
        try:
            self.gateway.bans.check_spec(provider, spec)
            limiter.hit(client)
        except LaunchError as e:
            raise Refused(e) from None  # a real 403/429 (with Retry-After), and one failed event
        self._closed = False
        keepalive = asyncio.ensure_future(self.keep_alive())
        try:
            await self.gateway.launch(provider, spec, self.send_event, lambda: not self._closed, urlencode(study_query), client)
        finally:
            keepalive.cancel()
        if not self._closed:
            self.finish()


class GatewayHealthHandler(GatewayHandler):
    """Healthy while at least one member takes launches."""

    def get(self) -> None:
        members = [m.summary() for m in self.gateway.pool]
        ok = any(m.accepts_launches for m in self.gateway.pool)
        self.set_status(200 if ok else 503)
        self.finish({"ok": ok, "checks": [{"service": f"member {m['name']}", "ok": m["state"] == "up", **m} for m in members]})


class GatewayVersionsHandler(GatewayHandler):
    def get(self) -> None:
        self.finish({"binderhub": f"bia-binder {__version__} (federation gateway)", "builder_info": {"federation": True, "members": len(self.gateway.pool)}})


class GatewayMetricsHandler(GatewayHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4")
        self.finish(self.gateway.metrics.render(self.gateway.pool))


class StatusHandler(GatewayHandler):
    """``/status``: members, health, load, cache hits and where launches went in the last hour."""

    def get(self) -> None:
        self.render_page("federation_status.html", **self.gateway.status())


class StatusAPIHandler(GatewayHandler):
    def get(self) -> None:
        self.finish(self.gateway.status())


class SessionRedirectHandler(GatewayHandler):
    """``/user/<name>/...``: a session launched through the gateway lives on a member; send the browser there."""

    def get(self, name: str, rest: str) -> None:
        session_url = self.gateway.session_url(name)
        if session_url is None:
            raise web.HTTPError(404, f"No session {name!r} was launched through this gateway recently; open the link the launch page gave you")
        query = f"?{quote(self.request.query, safe='=&%+;/:?@,')}" if self.request.query else ""
        self.redirect(f"{session_url}{quote(rest, safe='/@!$&()*+,;=:~')}{query}", status=307)


class HubRedirectHandler(GatewayHandler):
    """``/hub/...`` (the pages' "Log in" and "My sessions" links): each member has its own hub; the first
    healthy member by weight and hash of the path answers."""

    def get(self, rest: str) -> None:
        member = self.gateway.member_for_portal()
        if member is None:
            raise web.HTTPError(503, "No member of this federation is healthy now; try again in a minute")
        query = f"?{quote(self.request.query, safe='=&%+;/:?@,')}" if self.request.query else ""
        self.redirect(f"{member.public_url}hub/{quote(rest, safe='/@!$&()*+,;=:~')}{query}", status=307)


def routes(base_url: str) -> list[tuple]:
    prefix = re.escape(base_url.rstrip("/"))
    return [
        (rf"{prefix}/?", MainHandler),
        (rf"{prefix}/v2{SPEC_PATTERN}", GatewayLaunchPageHandler),
        (rf"{prefix}/build{SPEC_PATTERN}", GatewayBuildHandler),
        (rf"{prefix}/health/?", GatewayHealthHandler),
        (rf"{prefix}/versions/?", GatewayVersionsHandler),
        (rf"{prefix}/api/repoproviders/?", RepoProvidersHandler),
        (rf"{prefix}/api/federation/status/?", StatusAPIHandler),
        (rf"{prefix}/status/?", StatusHandler),
        (rf"{prefix}/badge(_logo)?\.svg", BadgeHandler),
        (rf"{prefix}/metrics/?", GatewayMetricsHandler),
        (rf"{prefix}/repo/([^/]+)/([^/]+)(/.*)?", LegacyRepoHandler),
        (rf"{prefix}/user/([^/]+)/(.*)", SessionRedirectHandler),
        (rf"{prefix}/hub/(.*)", HubRedirectHandler),
    ]


__all__ = ["NotFoundHandler", "routes"]
