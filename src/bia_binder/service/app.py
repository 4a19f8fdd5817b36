"""The binder service: BinderHub's HTTP API and pages, as a JupyterHub service.

``bia-binder up`` has JupyterHub start it (``python -m bia_binder.service.app``) with the hub's
API URL and token in the environment; everything else comes from the operator's config file,
the same one the hub loads (``c.BinderService.*``, ``c.EnvBuilder.*``, ``c.GitHubProvider.*``...).
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import logging
import os
import re
import secrets
import shutil
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jinja2
from tornado import web
from traitlets import Bool, Enum, Float, Instance, Integer, Unicode, default
from traitlets.config import Application, Config

from .. import __version__
from ..builder import ContainerBuilder, EnvBuilder
from ..builder.kubernetes import container_builder
from ..events import FAILED, LaunchError, event
from ..environments import default as default_environment
from ..hub.logs import LOGGING_CONFIG
from ..sessions.admission import RESERVATION_PREFIX, Admission
from ..sessions.profiles import ResourceProfiles
from ..sessions.reconcile import Reconciler
from ..sessions.sandbox import Sandbox, configure_sandbox
from ..settings import UpSettings
from .bans import BanList
from .handlers import NotFoundHandler, StaticHandler, routes
from .launcher import Launcher, user_slug
from .metrics import Metrics
from .pipeline import LaunchPipeline
from ..studies.environment import StudyEnvironment
from .pool import Pool
from .queue import LaunchQueue
from .ratelimit import RateLimiter
from .studies import study_routes

HERE = Path(__file__).parent


class BinderService(Application):
    name = "bia-binder-service"
    version = __version__
    description = "BinderHub-compatible launch service"

    ip = Unicode("127.0.0.1", config=True, help="Address the service listens on (the proxy forwards to it).")
    port = Integer(8585, config=True, help="Port the service listens on.")
    base_url = Unicode("/", config=True, help="URL prefix of the service's pages and API (ends with /).")
    hub_prefix = Unicode("/hub/", config=True, help="URL prefix of JupyterHub on the same origin.")
    public_url = Unicode(
        "",
        config=True,
        help="The service's address as users reach it, e.g. https://binder.example.org/ (behind a reverse proxy "
        "or TLS terminator). Session URLs and binder_launch_host are built from it, never from a request's Host "
        "header. Default: http://<ip>:<port>/ of `bia-binder up`.",
    )
    data_dir = Unicode(config=True, help="Where environments, sessions and scratch space live.")
    keepalive_interval = Float(20, config=True, help="Seconds between keepalive comments on event streams.")
    banner = Unicode("", config=True, help="HTML shown at the top of every page (announcements).")
    allow_local_repos = Bool(
        False, config=True, help="Allow repositories on loopback/private addresses and file:// (development and tests)."
    )
    proxy_url = Unicode(
        "",
        config=True,
        help="Where the proxy in front of the service listens, from this host (set by `bia-binder up`). /health "
        "asks for a probe through it: ok only once the proxy routes launches to this process. Empty: no probe.",
    )
    stop_grace = Float(3, config=True, help="Seconds builds and launches under way get to end when the service stops.")
    min_free_disk_bytes = Integer(2 * 1024**3, config=True, help="/health fails when the data disk has less free space.")
    container_builds = Enum(
        ["never", "fallback", "always"],
        default_value="never",
        config=True,
        help="When launches build an image with the container builder (repo2docker, c.ContainerBuilder.*) instead "
        "of an environment with the local builder: 'never' (a repository that needs a container fails, saying so), "
        "'fallback' (only repositories the local builder cannot build: Dockerfile, nix, R, Julia, apt packages "
        "the host lacks), 'always'. Sessions of images need a container spawner (KubeSpawner, DockerSpawner).",
    )

    prebuild_default_environment = Bool(
        True,
        config=True,
        help="With a login configured (`bia-binder up --auth ...`), build the default bioimage environment when "
        "the service starts, so that neither the first logged-in session nor dask-gateway clusters wait for it.",
    )
    logins = Bool(False, help="Users can log in (set by `bia-binder up` from --auth).")

    builder = Instance(EnvBuilder)
    container_builder = Instance(ContainerBuilder)
    launcher = Instance(Launcher)
    metrics = Instance(Metrics)

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return str(Path.cwd() / "data")

    @property
    def public_origin(self) -> str:
        """scheme://host[:port] of :attr:`public_url`."""
        parts = urlsplit(self.public_url or f"http://{self.ip}:{self.port}/")
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def scratch_dir(self) -> str:
        path = Path(self.data_dir) / "scratch"
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def setup(self) -> None:
        if self.allow_local_repos:
            self.config.RepoProvider.allow_local_repos = True  # every provider is created with parent=self
        self.metrics = Metrics()
        self.builder = EnvBuilder(parent=self, cache_dir=str(Path(self.data_dir) / "envs"))
        # repo2docker on a local engine, or in build pods when c.ContainerBuilder.engine = 'kubernetes'
        self.container_builder = container_builder(parent=self)
        self.launcher = Launcher(
            parent=self,
            hub_api_url=os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api"),
            hub_api_token=os.environ.get("JUPYTERHUB_API_TOKEN", ""),
        )
        self.queue = LaunchQueue(parent=self)
        self.pool = Pool(self, parent=self)
        self.rate_limiter = RateLimiter(parent=self)
        self.bans = BanList(parent=self)
        #: the event streams of launches under way (handlers.BuildHandler), ended with one event at a stop
        self.launch_streams: set = set()
        self.instance_id = secrets.token_hex(8)
        self._route_ok_until = self._hub_ok_until = 0.0
        self.admission = Admission(parent=self, sessions_dir=str(Path(self.data_dir) / "sessions"))
        self.session_disk_limit = ResourceProfiles(parent=self).anonymous_profile().disk_limit
        if self.container_builder.engine == "kubernetes" and self.container_builds == "always":
            self.session_disk_limit = 0  # sessions write to their nodes' disks (ephemeral-storage), not ours
        self._reservations = itertools.count()
        self.pipeline = LaunchPipeline(self)

    async def admit(self, resolved) -> str:
        """Reserve a session slot for ``resolved``'s repository, or raise AdmissionRefused (429).

        Counts come from the hub (what is running now) plus launches under way here.
        """
        self.admission.sync(await self.launcher.running_sessions())
        reservation = f"{RESERVATION_PREFIX}{next(self._reservations)}"
        self.admission.admit(reservation, user_slug(resolved.slug), disk_bytes=self.session_disk_limit)
        return reservation

    def builder_info(self) -> dict[str, Any]:
        local = "uv (no containers)"
        backend = {
            "never": local,
            "fallback": f"{local}; what needs a container: {self.container_builder.describe()}",
            "always": self.container_builder.describe(),
        }[self.container_builds]
        info = {"build_backend": backend, "container_builds": self.container_builds, "bia_binder": __version__}
        if self.container_builds != "always":
            info["builder_version"] = self.builder.version
        if self.container_builds != "never":
            info["build_image"] = self.container_builder.repo2docker_image  # BinderHub's key for repo2docker's image
        return info

    async def health_checks(self) -> list[dict[str, Any]]:
        hub, route = await asyncio.gather(self.hub_status(), self.route_status())
        free = shutil.disk_usage(self.data_dir).free
        checks = [
            {"service": "JupyterHub API", **hub},
            {"service": "Disk space", "ok": free >= self.min_free_disk_bytes, "free_bytes": free},
            {"service": "Builds under way", "ok": True, "count": len(self.pipeline.builds)},
            {"service": "Launch queue", "ok": True, "active": self.queue.active, "waiting": self.queue.waiting},
        ]
        if self.pool.warm:
            checks.append({"service": "Pool", "ok": True, "idle": self.pool.idle(), "ended": self.pool.ended})
        if route is not None:
            checks.insert(1, {"service": "Proxy route", **route})
        if self.container_builds != "never" and hasattr(self.container_builder, "health_checks"):
            checks.extend(await self.container_builder.health_checks())  # Kubernetes API and registry
        return checks

    async def hub_status(self) -> dict[str, Any]:
        """The hub's answer to our token; a success is remembered for a second (as BinderHub's health
        handler caches its checks), so that a burst of polls does not become a burst of hub requests."""
        now = asyncio.get_running_loop().time()
        if self._hub_ok_until > now:
            return {"ok": True, "status_code": 200}
        status = await self.launcher.hub_status()
        if status.get("ok"):
            self._hub_ok_until = now + 1
        return status

    async def route_status(self) -> dict[str, Any] | None:
        """Does the proxy send launches to this very process? A request for our probe path through the proxy
        must come back with our instance id (not the hub's 404, not a previous service's answer). A success
        is remembered for a second, so that /health stays cheap when polled hard."""
        if not self.proxy_url:
            return None
        now = asyncio.get_running_loop().time()
        if self._route_ok_until > now:
            return {"ok": True}
        url = f"{self.proxy_url.rstrip('/')}{self.base_url}health/route-probe"
        try:
            async with httpx.AsyncClient(timeout=3) as client:
                response = await client.get(url)
            ok = response.status_code == 200 and response.text == self.instance_id
            result = {"ok": ok} if ok else {"ok": False, "status_code": response.status_code}
        except httpx.HTTPError as e:
            result = {"ok": False, "error": type(e).__name__}
        if result["ok"]:
            self._route_ok_until = now + 1
        return result

    def make_app(self) -> web.Application:
        jinja_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True)
        return web.Application(
            study_routes(re.escape(self.base_url.rstrip("/"))) + routes(self.base_url),
            default_handler_class=NotFoundHandler,
            static_path=str(HERE / "static"),
            static_handler_class=StaticHandler,
            static_url_prefix=f"{self.base_url}static/",
            jinja_env=jinja_env,
            binder_service=self,
            xsrf_cookies=False,
            log_function=self._log_request,
        )

    def _log_request(self, handler: web.RequestHandler) -> None:
        status = handler.get_status()
        level = self.log.warning if status >= 500 else self.log.info if status >= 400 else self.log.debug
        level("%d %s %s %.1fms", status, handler.request.method, handler.request.uri, 1000 * handler.request.request_time())

    async def prebuild(self) -> None:
        """Build the default environment in the background (a no-op when cached); failures are only logged:
        the first logged-in session then builds it and shows why it fails."""
        try:
            path = default_environment.requirements_file(self.config)
            requirements = default_environment.read_requirements(path)
            env = await default_environment.cached_or_built(
                self.builder, requirements, lambda line: self.log.debug("default environment: %s", line.rstrip()),
                self.scratch_dir, default_environment.read_post_build(path),
            )  # fmt: skip
            self.log.info("The default environment is ready: %s", env.key)
        except Exception as e:  # noqa: BLE001 - a background task: nothing above it would report the error
            self.log.warning("Building the default environment ahead of time failed: %s", e)

    async def prebuild_study_environment(self) -> None:
        """Build the one environment of study launches, so that no study launch waits for it (bia_binder.studies)."""
        try:
            env = await StudyEnvironment(parent=self).cached_or_built(
                self.builder, lambda line: self.log.debug("study environment: %s", line.rstrip()), self.scratch_dir,
                anonymous=True,
            )
            self.log.info("The study environment is ready: %s", env.key)
        except Exception as e:  # noqa: BLE001 - a background task: the first study launch builds it and says why
            self.log.warning("Building the study environment ahead of time failed: %s", e)

    async def serve(self) -> None:
        self.setup()
        server = self.make_app().listen(self.port, self.ip, xheaders=True)
        self.log.info("bia-binder service listening on http://%s:%d%s", self.ip, self.port, self.base_url)
        wanted = self.logins and self.prebuild_default_environment
        prebuild = asyncio.ensure_future(self.prebuild()) if wanted else None
        if StudyEnvironment(parent=self).prebuild:
            self._study_prebuild = asyncio.ensure_future(self.prebuild_study_environment())
        # study launches and searches read metadata with bia_binder.data: import it (zarr, dask: seconds on a
        # busy host) now that the service answers, rather than in the first launch
        self._data_import = asyncio.ensure_future(asyncio.to_thread(importlib.import_module, "bia_binder.studies.launch"))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        background = [
            asyncio.ensure_future(self.reconcile_periodically()),
            asyncio.ensure_future(self.exit_with_hub(stop)),
            asyncio.ensure_future(self.pool.run()),
        ]
        await stop.wait()
        self.log.info("Stopping: %d launch(es), %d build(s) under way", len(self.launch_streams), len(self.pipeline.builds))
        server.stop()
        await self.end_launch_streams()
        for task in [*background, *([prebuild] if prebuild is not None else [])]:
            task.cancel()
        await self.end_work_under_way()

    async def end_launch_streams(self) -> None:
        """Every launch under way ends with one `failed` event, not a cut stream (a client would wait, or
        report that the stream ended without a reason)."""
        last = event(FAILED, "The service is restarting; launch again in a few seconds.", status_code=503)
        await asyncio.gather(*(stream.end_with(last) for stream in list(self.launch_streams)), return_exceptions=True)

    async def end_work_under_way(self) -> None:
        """Cancel builds (their sandboxes end with them; half-built environments are never published) and
        give them `stop_grace` seconds: a stop must not wait for a build (JupyterHub would wait 30 s, then
        signal again, for each of its services)."""
        tasks = [shared.task for shared in self.pipeline.builds.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.stop_grace)

    async def reconcile_periodically(self) -> None:
        """Free what sessions the hub lost track of left behind (see bia_binder.sessions.reconcile)."""
        reconciler = Reconciler(
            Sandbox(parent=self), Path(self.data_dir) / "sessions", Path(self.data_dir) / "envs", parent=self
        )
        while reconciler.interval > 0:
            await asyncio.sleep(reconciler.interval)
            try:
                await asyncio.to_thread(reconciler.run)
            except Exception:  # noqa: BLE001 - a background task: log, and try again next time
                self.log.exception("Reconciling sessions failed")

    async def exit_with_hub(self, stop: asyncio.Event) -> None:
        """A hub killed with -9 cannot stop its managed services: the restarted hub starts a new one, which
        needs our port. So when our parent (the hub) is gone, we go too."""
        parent = os.getppid()
        while os.getppid() == parent:
            await asyncio.sleep(1)
        self.log.warning("The hub (pid %d) is gone; stopping", parent)
        stop.set()


def main() -> None:
    """Entry point as a managed JupyterHub service (settings from ``bia-binder up``)."""
    settings = UpSettings.from_environ()
    service = BinderService()
    service.log_level = os.environ.get("BIA_BINDER_LOG_LEVEL", "INFO")
    service.logging_config = LOGGING_CONFIG  # no token in any log line (hub/logs.py)
    ours = Config()
    configure_sandbox(ours, Path(settings.data_dir), allow_unsafe=settings.unsafe_no_sandbox)
    service.update_config(ours)  # the operator's file, loaded next, has the last word
    if settings.config_file:
        service.load_config_file(settings.config_file)
    service.data_dir = settings.data_dir
    service.public_url = service.public_url or settings.public_url
    service.port = settings.service_port
    service.allow_local_repos = settings.allow_local_repos or service.allow_local_repos
    service.logins = settings.auth != "none"
    host = "127.0.0.1" if settings.ip in ("", "0.0.0.0", "::") else settings.ip
    service.proxy_url = service.proxy_url or f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(service.serve())
    finally:
        # not asyncio.run's ending: it waits for every worker thread (a reconciliation, a copy) to finish
        logging.shutdown()
        os._exit(0)


if __name__ == "__main__":
    main()


__all__ = ["BinderService", "LaunchError", "main"]
