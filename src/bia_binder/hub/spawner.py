"""The session spawner: a Jupyter server started from a built environment, one per hub user.

Anonymous (binder) launches follow BinderHub's BinderSpawner contract: the binder service
starts the server through the hub REST API with ``user_options`` naming the environment and a
token; the server is a plain Jupyter server that accepts only that token (no hub login), so
the launch link works for whoever holds it, and for nobody else.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path

import httpx
from jupyterhub.spawner import LocalProcessSpawner
from tornado import web
from traitlets import Any, Float, Unicode, default

import bia_binder

from ..build.base import Environment
from ..events import LaunchError
from .profiles import ResourceProfile, ResourceProfiles
from .sandbox import Sandbox

#: the directory holding the bia_binder package: sessions import bia_binder.data from it (read-only)
DATA_LIBRARY_PATH = Path(bia_binder.__file__).resolve().parents[1]

#: user_options the binder service may pass; forwarded to the session as BINDER_* variables
BINDER_REQUEST_KEYS = ("repo_url", "binder_ref_url", "binder_launch_host", "binder_persistent_request", "binder_request")

ANONYMOUS_PREFIX = "binder-"


class BinderSpawner(LocalProcessSpawner):
    """Starts ``<env>/bin/jupyter lab`` in a per-session home holding a copy of the repository."""

    environments_dir = Unicode(
        config=True, help="The builder's cache directory: user_options['environment'] must name an entry in it."
    )
    sessions_dir = Unicode(config=True, help="Parent directory of the per-session working directories.")
    ready_poll_interval = Float(
        0.05,
        config=True,
        help="Seconds between readiness checks of a starting server. The hub's own check backs off "
        "exponentially (0.2 s, 0.6 s, 1.4 s, 3 s...), which would add up to a second to every launch.",
    )

    sandbox_session = Any(None, help="The running session's sandbox handle (bia_binder.hub.sandbox.Session).")

    @default("start_timeout")
    def _default_start_timeout(self) -> int:
        return 120

    # --- the pieces of a session -------------------------------------------------------------

    @property
    def is_anonymous(self) -> bool:
        return self.user.name.startswith(ANONYMOUS_PREFIX)

    @property
    def home(self) -> Path:
        return Path(self.sessions_dir) / self.user.name

    @property
    def runs_as_root(self) -> bool:
        """Only without uid separation (operator chose --unsafe-no-sandbox) does a session keep our uid."""
        separate = self.sandbox_session is not None and self.sandbox_session.separate_uid
        return os.geteuid() == 0 and not separate

    def resource_profile(self) -> ResourceProfile:
        profiles = ResourceProfiles(parent=self)
        if self.is_anonymous:
            return profiles.anonymous_profile()
        wanted = self.user_options.get("profile")
        return profiles.by_slug(wanted) if wanted else profiles.logged_in_profiles()[0]

    def enter_sandbox(self, environment: Environment) -> None:
        """Own uid, cgroup limits of the profile, bubblewrap; refuses anonymous sessions where that fails."""
        self.sandbox_session = Sandbox(parent=self).prepare(
            name=self.user.name,
            home=self.home,
            profile=self.resource_profile(),
            readonly=[environment.root, DATA_LIBRARY_PATH],
            anonymous=self.is_anonymous,
        )

    def load_environment(self) -> Environment:
        key = str(self.user_options.get("environment", ""))
        root = Path(self.environments_dir) / key
        # the key comes from the hub API; refuse anything that is not a published cache entry
        if not key or "/" in key or key.startswith(".") or not (root / "environment.json").is_file():
            raise ValueError(f"no built environment {key!r}: build it first (bia-binder build)")
        return Environment.load(root)

    def prepare_home(self, environment: Environment) -> None:
        """The session works in a private copy of the repository (sessions may write to it)."""
        if not self.home.exists():
            self.home.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(environment.repo_dir, self.home, symlinks=True)

    # --- LocalProcessSpawner hooks -----------------------------------------------------------

    def make_preexec_fn(self, name):
        # Hub users are not system users; isolation comes from the sandbox, not from setuid.
        return None

    def user_env(self, env: dict) -> dict:
        env["USER"] = self.user.name
        env["HOME"] = str(self.home)
        return env

    def get_env(self) -> dict:
        env = super().get_env()
        if self.sandbox_session is not None:
            env = self.sandbox_session.environ(env)
        environment = self.load_environment()
        env.update(environment.env)
        env["VIRTUAL_ENV"] = str(environment.env_dir)
        env["PATH"] = f"{environment.bin_dir}{os.pathsep}{env.get('PATH', os.defpath)}"
        for key in BINDER_REQUEST_KEYS:
            if key in self.user_options:
                env[key.upper() if key.startswith("binder") else f"BINDER_{key.upper()}"] = str(self.user_options[key])
        return env

    def get_args(self) -> list[str]:
        if not self.is_anonymous:
            return super().get_args()
        token = self.user_options.get("token")
        if not token:
            raise ValueError("anonymous sessions need a token in user_options")
        root_args = ["--allow-root"] if self.runs_as_root else []
        return [
            *root_args,
            "--no-browser",
            f"--ip={self.ip or '127.0.0.1'}",
            f"--port={self.port}",
            f"--ServerApp.base_url={self.server.base_url}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={self.home}",
            "--ServerApp.trust_xheaders=True",
            "--ServerApp.quit_button=False",
        ]

    async def start(self):
        try:
            return await self._start()
        except LaunchError as e:
            # JupyterHub's API answers with an HTTPError's own message and status: the user learns why
            raise web.HTTPError(e.status_code, e.message) from e
        except (RuntimeError, TimeoutError, ValueError, OSError) as e:
            raise web.HTTPError(500, str(e).splitlines()[0] if str(e) else type(e).__name__) from e

    async def _start(self):
        environment = self.load_environment()
        self.prepare_home(environment)
        app = "lab" if self.is_anonymous else "singleuser"
        entry = [str(environment.bin_dir / "jupyter"), "lab"] if app == "lab" else [str(environment.bin_dir / "jupyterhub-singleuser")]
        self.enter_sandbox(environment)
        self.cmd = self.sandbox_session.wrap(environment.command(entry))
        log_file = open(self.home.parent / f".{self.user.name}.log", "ab")  # noqa: SIM115 (owned by the child)
        self.popen_kwargs = {"cwd": str(self.home), "stdout": log_file, "stderr": log_file}
        try:
            ip, port = await super().start()
            await self.wait_until_serving(ip, port)
        except BaseException:
            await self.stop(now=True)
            raise
        finally:
            log_file.close()
        return ip, port

    async def wait_until_serving(self, ip: str, port: int) -> None:
        url = f"http://{ip}:{port}{self.server.base_url}api"
        deadline = time.monotonic() + self.start_timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"the session server exited with status {self.proc.returncode}: {self.log_tail()}")
                try:
                    if (await client.get(url)).status_code < 500:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(self.ready_poll_interval)
        raise TimeoutError(f"the session server did not answer within {self.start_timeout} s")

    def log_tail(self, lines: int = 5) -> str:
        path = self.home.parent / f".{self.user.name}.log"
        try:
            return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def stop(self, now: bool = False) -> None:
        pid = self.pid
        await super().stop(now=now)
        if self.sandbox_session is not None:
            await asyncio.to_thread(self.sandbox_session.cleanup)
            self.sandbox_session = None
        # kernels and terminals live in the server's process group (start_new_session=True)
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    async def delete_forever(self) -> None:
        """Anonymous sessions are one-shot: their files go with their user."""
        if self.is_anonymous:
            shutil.rmtree(self.home, ignore_errors=True)
            (self.home.parent / f".{self.user.name}.log").unlink(missing_ok=True)
