"""The binder service: BinderHub's HTTP API and pages, as a JupyterHub service.

``bia-binder up`` has JupyterHub start it (``python -m bia_binder.service.app``) with the hub's
API URL and token in the environment; everything else comes from the operator's config file,
the same one the hub loads (``c.BinderService.*``, ``c.EnvBuilder.*``, ``c.GitHubProvider.*``...).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import jinja2
from tornado import web
from traitlets import Bool, Float, Instance, Integer, Unicode, default
from traitlets.config import Application

from .. import __version__
from ..build import EnvBuilder
from ..events import LaunchError
from ..hub.settings import UpSettings
from .handlers import NotFoundHandler, routes
from ..hub.profiles import RESERVATION_PREFIX, Admission
from .launcher import Launcher, user_slug
from .metrics import Metrics
from .pipeline import LaunchPipeline

HERE = Path(__file__).parent


class BinderService(Application):
    name = "bia-binder-service"
    version = __version__
    description = "BinderHub-compatible launch service"

    ip = Unicode("127.0.0.1", config=True, help="Address the service listens on (the proxy forwards to it).")
    port = Integer(8585, config=True, help="Port the service listens on.")
    base_url = Unicode("/", config=True, help="URL prefix of the service's pages and API (ends with /).")
    hub_prefix = Unicode("/hub/", config=True, help="URL prefix of JupyterHub on the same origin.")
    data_dir = Unicode(config=True, help="Where environments, sessions and scratch space live.")
    keepalive_interval = Float(20, config=True, help="Seconds between keepalive comments on event streams.")
    banner = Unicode("", config=True, help="HTML shown at the top of every page (announcements).")
    allow_local_repos = Bool(
        False, config=True, help="Allow repositories on loopback/private addresses and file:// (development and tests)."
    )
    min_free_disk_bytes = Integer(2 * 1024**3, config=True, help="/health fails when the data disk has less free space.")

    builder = Instance(EnvBuilder)
    launcher = Instance(Launcher)
    metrics = Instance(Metrics)

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return str(Path.cwd() / "data")

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
        self.launcher = Launcher(
            parent=self,
            hub_api_url=os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api"),
            hub_api_token=os.environ.get("JUPYTERHUB_API_TOKEN", ""),
        )
        self.admission = Admission(parent=self)
        self._reservations = itertools.count()
        self.pipeline = LaunchPipeline(self)

    async def admit(self, resolved) -> str:
        """Reserve a session slot for ``resolved``'s repository, or raise AdmissionRefused (429).

        Counts come from the hub (what is running now) plus launches under way here.
        """
        self.admission.sync(await self.launcher.running_sessions())
        reservation = f"{RESERVATION_PREFIX}{next(self._reservations)}"
        self.admission.admit(reservation, user_slug(resolved.slug))
        return reservation

    def builder_info(self) -> dict[str, Any]:
        return {"build_backend": "uv (no containers)", "builder_version": self.builder.version, "bia_binder": __version__}

    async def health_checks(self) -> list[dict[str, Any]]:
        hub = await self.launcher.hub_status()
        free = shutil.disk_usage(self.data_dir).free
        return [
            {"service": "JupyterHub API", **hub},
            {"service": "Disk space", "ok": free >= self.min_free_disk_bytes, "free_bytes": free},
            {"service": "Builds under way", "ok": True, "count": len(self.pipeline.builds)},
        ]

    def make_app(self) -> web.Application:
        jinja_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True)
        return web.Application(
            routes(self.base_url),
            default_handler_class=NotFoundHandler,
            static_path=str(HERE / "static"),
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

    async def serve(self) -> None:
        self.setup()
        server = self.make_app().listen(self.port, self.ip, xheaders=True)
        self.log.info("bia-binder service listening on http://%s:%d%s", self.ip, self.port, self.base_url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.stop()


def main() -> None:
    """Entry point as a managed JupyterHub service (settings from ``bia-binder up``)."""
    settings = UpSettings.from_environ()
    service = BinderService()
    service.log_level = os.environ.get("BIA_BINDER_LOG_LEVEL", "INFO")
    if settings.config_file:
        service.load_config_file(settings.config_file)
    service.data_dir = settings.data_dir
    service.port = settings.service_port
    service.allow_local_repos = settings.allow_local_repos or service.allow_local_repos
    asyncio.run(service.serve())


if __name__ == "__main__":
    main()


__all__ = ["BinderService", "LaunchError", "main"]
