"""``bia-binder federation --config FILE``: one address in front of several bia-binder deployments.

The gateway serves a member's public URL space (launch pages, ``/build`` event streams,
``/api/repoproviders``, badges, ``/health``), so existing links, badges and BinderHub's JS client
work against it unchanged. Per launch it resolves the ref once (the members' own provider code),
asks which members already hold that environment, places the launch (bia_binder.federation.selection)
and streams it from the member, moving it to the next member if that one fails before ``ready``
(bia_binder.federation.proxy). Or, in redirect mode, it answers with a 307 to the chosen member.

Configuration, in one Python file like the members' own::

    c.FederationGateway.public_url = "https://binder.example.org/"
    c.FederationGateway.members = [
        {"name": "embl", "url": "https://binder.embl.example/", "weight": 2, "token": "..."},
        {"name": "ebi", "url": "https://binder.ebi.example/", "weight": 1, "token": "..."},
    ]

``kill -HUP`` reloads the file's member list (weights, new members; health state is kept), so that
setting a member's weight to 0 drains it without a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import jinja2
from tornado import web
from traitlets import Bool, Dict, Enum, Float, Integer, List, Unicode, validate
from traitlets.config import Application, Config
from traitlets.config.loader import PyFileConfigLoader

from .. import __version__
from ..providers import STUDY_PROVIDERS, get_provider
from ..providers.base import ResolvedRepo
from ..service.bans import BanList
from ..service.builds import failure_from
from ..service.ratelimit import RateLimiter
from ..service.handlers import StaticHandler
from .handlers import NotFoundHandler, routes
from .holdings import Holdings
from .members import HealthMonitor, Member, MemberConfigError, members_from_config
from .proxy import LaunchProxy, LaunchResult
from .selection import Placement, Selector, rendezvous_score
from .status import FederationMetrics, LaunchHistory, LaunchRecord, record_of

SERVICE_DIR = Path(__file__).resolve().parent.parent / "service"
TEMPLATES = Path(__file__).resolve().parent / "templates"
#: sessions remembered for /user/<name>/ redirects (the newest)
SESSIONS_REMEMBERED = 10_000


class FederationGateway(Application):
    name = "bia-binder-federation"
    version = __version__
    description = "One address in front of several bia-binder deployments"

    ip = Unicode("127.0.0.1", config=True, help="Address the gateway listens on.")
    port = Integer(8000, config=True, help="Port the gateway listens on.")
    base_url = Unicode("/", config=True, help="URL prefix of the gateway's pages and API (ends with /).")
    public_url = Unicode(
        "", config=True,
        help="The gateway's address as users reach it, e.g. https://binder.example.org/. Launch hosts in "
        "`ready` events are built from it, never from a request's Host header. Default: http://<ip>:<port>/.",
    )
    members = List(
        Dict(), config=True,
        help="The deployments behind the gateway: [{'name': ..., 'url': ..., 'weight': 1, 'token': ..., "
        "'public_url': ...}]. url: where the gateway reaches the member; weight: its share of launches "
        "(0 drains it: no new launches, running sessions go on); token: the member's "
        "c.FederationMember.token (lets the gateway ask what it holds); public_url: where redirect mode "
        "sends users (default: url).",
    )
    mode = Enum(
        ["proxy", "redirect"], default_value="proxy", config=True,
        help="'proxy': the gateway streams launches from members and fails over mid-launch. 'redirect': a 307 "
        "to the chosen member (mybinder.org's way; no failover once redirected).",
    )
    keepalive_interval = Float(20, config=True, help="Seconds between keepalive comments on the gateway's event streams.")
    banner = Unicode("", config=True, help="HTML shown at the top of every page (announcements).")
    allow_local_repos = Bool(
        False, config=True, help="Resolve repositories on loopback/private addresses and file:// (development and tests)."
    )
    trust_xheaders = Bool(
        False, config=True,
        help="Take client addresses (for logs) from X-Forwarded-For / X-Real-Ip: only behind a reverse proxy that sets them.",
    )
    logins = Bool(
        False, config=True,
        help="Show the pages' 'Log in' links (they lead to a member's portal: set it when members have logins).",
    )
    hub_prefix = "/hub/"  # the pages' login links; the gateway sends /hub/ to a member (HubRedirectHandler)
    config_file = Unicode("", help="The file the configuration came from (reloaded on SIGHUP).")

    classes = [HealthMonitor, Selector, Holdings, LaunchProxy, BanList, RateLimiter]

    @validate("base_url")
    def _slashed(self, proposal):
        value = proposal["value"]
        return "/" + value.strip("/") + "/" if value.strip("/") else "/"

    @property
    def public_origin(self) -> str:
        parts = urlsplit(self.public_url or f"http://{self.ip}:{self.port}/")
        return f"{parts.scheme}://{parts.netloc}"

    # --- set-up ------------------------------------------------------------------------------
    def setup(self) -> None:
        if self.allow_local_repos:
            self.config.RepoProvider.allow_local_repos = True  # providers are created with parent=self
        self.pool: list[Member] = members_from_config(self.members)
        if not self.pool:
            raise MemberConfigError("c.FederationGateway.members is empty: list at least one member")
        self.monitor = HealthMonitor(parent=self)
        self.selector = Selector(parent=self)
        self.holdings = Holdings(parent=self)
        self.proxy = LaunchProxy(self.monitor, parent=self)
        self.metrics = FederationMetrics()
        # the same refusals as a member's, before any member is asked (c.BanList.*, c.RateLimiter.*)
        self.bans = BanList(parent=self)
        self.rate_limiter = RateLimiter(parent=self)
        self.history = LaunchHistory()
        self._sessions: OrderedDict[str, str] = OrderedDict()
        # one client for every member request (keeps connections); no limit of its own on open streams
        self.client = httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=100))

    def reload_members(self) -> None:
        """Re-read the member list from the config file; members keep their health by name."""
        if not self.config_file:
            return
        try:
            config = PyFileConfigLoader(Path(self.config_file).name, str(Path(self.config_file).parent)).load_config()
            fresh = members_from_config(config.FederationGateway.get("members", self.members))
        except Exception as e:  # noqa: BLE001 - a bad edit (syntax, a bad member entry) must not stop the gateway
            self.log.error("Not reloading members from %s: %s", self.config_file, e)
            return
        old = {m.name: m for m in self.pool}
        for member in fresh:
            if member.name in old:
                kept = old[member.name]
                kept.url, kept.weight, kept.token, kept.public_url = member.url, member.weight, member.token, member.public_url
        self.pool = [old.get(m.name, m) for m in fresh]
        self.log.info("Members reloaded: %s", ", ".join(f"{m.name} (weight {m.weight:g})" for m in self.pool))

    def make_app(self) -> web.Application:
        loader = jinja2.FileSystemLoader([str(TEMPLATES), str(SERVICE_DIR / "templates")])
        return web.Application(
            routes(self.base_url),
            default_handler_class=NotFoundHandler,
            static_path=str(SERVICE_DIR / "static"),
            static_handler_class=StaticHandler,
            static_url_prefix=f"{self.base_url}static/",
            jinja_env=jinja2.Environment(loader=loader, autoescape=True),
            binder_service=self,  # the service handlers' name for "what serves this"
            xsrf_cookies=False,
            log_function=self._log_request,
        )

    def _log_request(self, handler: web.RequestHandler) -> None:
        status = handler.get_status()
        level = self.log.warning if status >= 500 else self.log.info if status >= 400 else self.log.debug
        level("%d %s %s %.1fms", status, handler.request.method, handler.request.uri, 1000 * handler.request.request_time())

    # --- launches ----------------------------------------------------------------------------
    async def resolve(self, provider: str, spec: str) -> ResolvedRepo:
        """Once, here, with the members' provider code: every member tried builds the same ref.

        Studies (bia/idr/biostudies accessions) are not resolved here: each member prepares a study
        itself, in the one study environment; they are placed by the hash of the accession."""
        if provider in STUDY_PROVIDERS:
            return ResolvedRepo(provider, spec, f"{provider}:{unquote(spec)}", "", "", spec, "")
        resolved = await get_provider(provider, spec, parent=self).resolve()
        self.bans.check_repository(resolved.repo_url)
        return resolved

    async def place(self, resolved: ResolvedRepo, exclude: set[str] = frozenset()) -> Placement:
        """Where a launch of ``resolved`` goes now; ``exclude``: members this launch already tried."""
        members = [m for m in self.pool if m.name not in exclude]
        holders = await self.holdings.holders(members, resolved.provider, resolved.ref, self.client) if resolved.ref else set()
        return self.selector.place(members, repo_key(resolved), holders)

    async def launch(self, provider: str, spec: str, emit, stream_open, query: str = "", client_address: str = "") -> LaunchResult:
        try:
            resolved = await self.resolve(provider, spec)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one `failed` event
            failure = failure_from(exc)
            await emit(failure.to_event())
            self.history.add(LaunchRecord(time.time(), f"{provider}/{spec}", "", "failed", "unresolved", (), False, 0.0))
            self.metrics.launches.labels(member="", outcome="failed").inc()
            return LaunchResult("failed")
        placement = await self.place(resolved)
        request = {"binder_request": f"v2/{provider}/{spec}", "binder_launch_host": f"{self.public_origin}{self.base_url}"}

        def attempting(member: Member) -> None:
            self.holdings.remember(resolved.provider, resolved.ref, member)

        async def next_member(tried: set[str]) -> Member | None:
            return (await self.place(resolved, exclude=tried)).first

        result = await self.proxy.launch(
            placement.first, next_member, resolved, request, emit, self.client, stream_open, attempting, query, client_address
        )
        for attempt in result.attempts:
            if attempt.outcome == "member-failed":
                self.holdings.forget(resolved.provider, resolved.ref, attempt.member)
        if result.ready:
            self.remember_session(result.ready)
        self.metrics.launch_done(result, placement.reason)
        self.history.add(record_of(f"{provider}/{spec}", result, placement.reason))
        return result

    def redirected(self, resolved: ResolvedRepo, placement: Placement) -> None:
        """Redirect mode: remember where the ref went (the next launch of it goes there too)."""
        self.holdings.remember(resolved.provider, resolved.ref, placement.first)
        self.metrics.placements.labels(reason=placement.reason).inc()

    # --- sessions and the portal -------------------------------------------------------------
    def remember_session(self, ready: dict[str, Any]) -> None:
        """The session URL of a ready launch, for /user/<name>/ on the gateway."""
        path = urlsplit(str(ready.get("url", ""))).path
        parts = path.strip("/").split("/")
        if len(parts) >= 2 and parts[-2] == "user":
            self._sessions[parts[-1]] = ready["url"] if ready["url"].endswith("/") else ready["url"] + "/"
            self._sessions.move_to_end(parts[-1])
            while len(self._sessions) > SESSIONS_REMEMBERED:
                self._sessions.popitem(last=False)

    def session_url(self, name: str) -> str | None:
        return self._sessions.get(name)

    def member_for_portal(self) -> Member | None:
        healthy = [m for m in self.pool if m.accepts_launches]
        return max(healthy, key=lambda m: rendezvous_score(m, "portal"), default=None)

    def status(self) -> dict[str, Any]:
        by_member = self.history.by_member()
        recent = self.history.recent()
        return {
            "mode": self.mode,
            "members": [{**m.summary(), "last_hour": by_member.get(m.name, {})} for m in self.pool],
            "launches_last_hour": len(recent),
            "cache_hits_last_hour": sum(r.outcome == "ready" and not r.built for r in recent),
            "recent": [r.__dict__ for r in reversed(recent[-50:])],
        }

    # --- running -----------------------------------------------------------------------------
    async def serve(self) -> None:
        self.setup()
        server = self.make_app().listen(self.port, self.ip, xheaders=self.trust_xheaders)
        await self.monitor.check_all(self.pool, self.client)  # first states before the first launch
        self.log.info(
            "bia-binder federation gateway on http://%s:%d%s (%s mode): %s", self.ip, self.port, self.base_url, self.mode,
            ", ".join(f"{m.name} {m.state}" for m in self.pool),
        )
        poller = asyncio.ensure_future(self.monitor.poll_forever(lambda: self.pool, self.client))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_members)
        await stop.wait()
        server.stop()
        poller.cancel()
        await self.client.aclose()


def repo_key(resolved: ResolvedRepo) -> str:
    """What the hash of "the repository" is taken of: every ref of a repository lands on the same members."""
    return f"{resolved.provider}:{resolved.repo_url}"


# --- the command line --------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("federation", help="one address in front of several bia-binder deployments")
    parser.add_argument("--config", required=True, help="Python config file with c.FederationGateway.members")
    parser.add_argument("--ip", default=None, help="address to listen on (default: the config's, else 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port to listen on (default: the config's, else 8000)")
    parser.add_argument("--allow-local-repos", action="store_true", help="resolve repositories on loopback/private addresses (development)")
    parser.set_defaults(func=run_federation)


def gateway_from_args(args: argparse.Namespace) -> FederationGateway:
    path = Path(args.config).resolve()
    if not path.is_file():
        raise SystemExit(f"error: config file {args.config} does not exist")
    gateway = FederationGateway()
    gateway.log_level = "INFO"
    gateway.load_config_file(path.name, str(path.parent))
    overrides = Config()
    if args.ip is not None:
        overrides.FederationGateway.ip = args.ip
    if args.port is not None:
        overrides.FederationGateway.port = args.port
    if args.allow_local_repos:
        overrides.FederationGateway.allow_local_repos = True
    gateway.update_config(overrides)
    gateway.config_file = str(path)
    return gateway


def run_federation(args: argparse.Namespace) -> int:
    gateway = gateway_from_args(args)
    try:
        asyncio.run(gateway.serve())
    except MemberConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


__all__ = ["FederationGateway", "register", "repo_key", "run_federation"]
