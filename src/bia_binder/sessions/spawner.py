"""The session spawner: a Jupyter server started from a built environment, one per hub user.

Anonymous (binder) launches follow BinderHub's BinderSpawner contract: the binder service
starts the server through the hub REST API with ``user_options`` naming the environment and a
token; the server is a plain Jupyter server that accepts only that token (no hub login), so
the launch link works for whoever holds it, and for nobody else.

Logged-in users choose a resource profile and an environment in the options form
(:mod:`bia_binder.portal.options`): the default bioimage environment or a repository, built here
when not cached yet. Their session is ``jupyterhub-singleuser`` (hub OAuth) working in their
persistent, quota-enforced home (:class:`~bia_binder.portal.homes.HomeManager`); a repository is
copied into ``~/<repo-slug>`` on first use, like a persistent binder.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from jupyterhub.spawner import LocalProcessSpawner
from tornado import web
from traitlets import Any, Bool, Float, Unicode, default

import bia_binder

from jupyterhub.utils import random_port

from ..builder import EnvBuilder
from ..builder.base import Environment
from ..events import LaunchError
from ..models import open_to_sessions
from ..providers import get_provider
from ..environments import default as default_environment
from ..portal.dask import session_dask_environment
from ..portal.homes import HomeError, HomeManager, home_name
from .disks import EphemeralDisks
from ..portal.options import (
    DEEP_LEARNING_ENVIRONMENT,
    SessionChoice,
    options_from_form,
    parse_session_options,
    render_options_form,
)
from .profiles import ResourceProfile, ResourceProfiles
from ..portal.rclone import RCLONE_CONFIG_ENV
from .network import GATEWAY_ADDRESS, loopback_port
from .sandbox import Sandbox

#: the directory holding the bia_binder package: sessions import bia_binder.data from it (read-only)
DATA_LIBRARY_PATH = Path(bia_binder.__file__).resolve().parents[1]

#: user_options the binder service may pass; forwarded to the session as BINDER_* variables
BINDER_REQUEST_KEYS = ("repo_url", "binder_ref_url", "binder_launch_host", "binder_persistent_request", "binder_request")

ANONYMOUS_PREFIX = "binder-"
#: where an anonymous session's /tmp lives on its disk (hidden in JupyterLab's file browser)
TMP_DIR_NAME = ".tmp"
#: where a session's changes to its environment live (per environment: a logged-in user's persist with their home)
LAYERS_DIR_NAME = ".environment-layers"

#: one builder per environment cache for the whole hub, so that sessions asking for the same
#: environment at once share one build (EnvBuilder joins builds of the same key)
_BUILDERS: dict[str, EnvBuilder] = {}


class BinderSpawner(LocalProcessSpawner):
    """Starts ``<env>/bin/jupyter lab`` (anonymous) or ``jupyterhub-singleuser`` (logged in), sandboxed."""

    environments_dir = Unicode(
        config=True, help="The builder's cache directory: user_options['environment'] must name an entry in it."
    )
    sessions_dir = Unicode(config=True, help="Parent directory of the per-session working directories.")
    scratch_dir = Unicode(
        "", config=True, help="Where repositories are fetched before a build (empty: the system's temporary directory)."
    )
    studies_dir = Unicode(
        "",
        config=True,
        help="The binder service's store of generated study files (bia_binder.studies.store): user_options['study'] "
        "names an entry, copied into the session, whose notebook JupyterLab opens.",
    )
    default_environment_requirements = Unicode(
        str(default_environment.REQUIREMENTS),
        config=True,
        help="requirements.txt of the default bioimage environment logged-in users get; built on first use, "
        "rebuilt when its content changes.",
    )
    deep_learning_requirements = Unicode(
        str(default_environment.DEEP_LEARNING_REQUIREMENTS),
        config=True,
        help="Lock file (requirements.txt) of the deep-learning environment: PyTorch CPU wheels (from "
        "c.EnvBuilder.find_links), cellpose, bioimageio.core. A postBuild beside it runs too.",
    )
    deep_learning_gpu_requirements = Unicode(
        "",
        config=True,
        help="Lock file of the deep-learning environment for profiles with GPUs (a CUDA build of torch); "
        "empty: the same as deep_learning_requirements (CPU).",
    )
    models_dir = Unicode(
        "/var/lib/bia-binder/models",
        config=True,
        help="Model weights the operator pre-fills (cellpose/, torch/, bioimageio/ below it), shown read-only to "
        "deep-learning sessions at the same path; sessions cannot download models.",
    )
    open_models_dir = Bool(
        True,
        config=True,
        help="Whether the hub adds read permission for other users to models_dir and its files (never write) "
        "before a deep-learning session starts. Sessions run as uids of their own and see models_dir through a "
        "read-only bind mount that keeps the host's permissions: weights saved with umask 077 would be "
        "unreadable to every session. Off: the operator keeps them readable (chmod -R a+rX).",
    )
    ready_poll_interval = Float(
        0.05,
        config=True,
        help="Seconds between readiness checks of a starting server. The hub's own check backs off "
        "exponentially (0.2 s, 0.6 s, 1.4 s, 3 s...), which would add up to a second to every launch.",
    )

    sandbox_session = Any(None, help="The running session's sandbox handle (bia_binder.sessions.sandbox.Session).")
    environment_in_use = Any(None, help="The running session's Environment.")
    profile_in_use = Any(None, help="The running session's ResourceProfile.")
    home_dir = Unicode("", help="A logged-in user's home while their session runs.")
    build_log = Any(None, help="Lines of the environment build of the starting session, shown as spawn progress.")

    @default("start_timeout")
    def _default_start_timeout(self) -> int:
        return 120

    @default("options_form")
    def _default_options_form(self) -> Callable[[LocalProcessSpawner], str]:
        # a callable: anonymous users (started by the binder service) get no form
        return lambda spawner: (
            "" if spawner.is_anonymous else render_options_form(spawner.profiles.logged_in_profiles(), spawner.languages())
        )

    def languages(self) -> list[str]:
        """Kernels besides Python that the default environment offers here (read from it once it is built)."""
        path = self.default_environment_requirements
        key = default_environment.environment_key(
            self.builder, self.default_requirements(), default_environment.read_post_build(path)
        )
        env = self.builder.lookup(key)
        if env is None:
            return []
        names = []
        for spec in sorted(env.root.glob("env/share/jupyter/kernels/*/kernel.json")):
            try:
                language = json.loads(spec.read_text()).get("display_name", spec.parent.name)
            except (OSError, ValueError):
                continue
            if spec.parent.name != "python3":
                names.append(str(language))
        return names

    @default("options_from_form")
    def _default_options_from_form(self) -> Callable:
        return options_from_form

    # --- the pieces of a session -------------------------------------------------------------

    @property
    def is_anonymous(self) -> bool:
        return self.user.name.startswith(ANONYMOUS_PREFIX)

    @property
    def home(self) -> Path:
        if self.is_anonymous:
            return Path(self.sessions_dir) / self.user.name
        return Path(self.home_dir)

    @property
    def log_path(self) -> Path:
        return Path(self.sessions_dir) / f".{self.user.name}.log"

    @property
    def profiles(self) -> ResourceProfiles:
        return ResourceProfiles(parent=self)

    @property
    def runs_as_root(self) -> bool:
        """Only without uid separation (operator chose --unsafe-no-sandbox) does a session keep our uid."""
        separate = self.sandbox_session is not None and self.sandbox_session.separate_uid
        return os.geteuid() == 0 and not separate

    def resource_profile(self, choice: SessionChoice | None) -> ResourceProfile:
        if choice is None:
            return self.profiles.anonymous_profile()
        return self.profiles.by_slug(choice.profile) if choice.profile else self.profiles.logged_in_profiles()[0]

    def readonly_paths(self, environment: Environment) -> list[Path]:
        paths = [*environment.host_paths, DATA_LIBRARY_PATH]
        if self.uses_models and Path(self.models_dir).is_dir():
            paths.append(Path(self.models_dir))
        # the rclone config lives in the data dir, which the sandbox hides
        rclone_config = self.environment.get(RCLONE_CONFIG_ENV)
        if rclone_config and Path(rclone_config).is_file():
            paths.append(Path(rclone_config))
        return paths

    def open_models_to_sessions(self) -> None:
        """models_dir readable by the session's uid (see ``open_models_dir``); one log line when that changed it."""
        if not Path(self.models_dir).is_dir():
            return
        changed = open_to_sessions(self.models_dir)
        if changed:
            self.log.info(
                "Made %d entries of the models directory %s readable by sessions (c.BinderSpawner.open_models_dir)",
                len(changed),
                self.models_dir,
            )

    def enter_sandbox(self, environment: Environment, profile: ResourceProfile) -> None:
        """Own uid, cgroup limits of the profile, bubblewrap, own network; refuses anonymous sessions where that fails."""
        self.sandbox_session = Sandbox(parent=self).prepare(
            name=self.user.name,
            home=self.home,
            profile=profile,
            readonly=self.readonly_paths(environment),
            anonymous=self.is_anonymous,
            host_ports=self.host_services_ports(),
            tmp=self.tmp_dir,
            # `pip install` / `%pip install` in the session change its own layer of the environment
            layers=[(environment.env_dir, self.home / LAYERS_DIR_NAME / environment.key)],
        )
        # the proxy (on this host) reaches the server inside through this port
        self.port = self.port or random_port()
        self.sandbox_session.forward(self.port)

    def host_services_ports(self) -> tuple[int, ...]:
        """Loopback ports of this host a logged-in session needs: the hub's API (jupyterhub-singleuser talks to
        it) and the services named in ``c.Spawner.environment`` (dask-gateway). Anonymous sessions: none."""
        if self.is_anonymous:
            return ()
        values = [self.hub.api_url, *(v for v in self.environment.values() if isinstance(v, str))]
        return tuple(sorted({port for value in values if (port := loopback_port(value))}))

    repo_slug = Unicode("", help="A logged-in session's repository folder in its home ('' for the default environment).")

    @property
    def repo_dir_inside(self) -> Path:
        """Where the session sees the repository's copy: its home (anonymous), ``~/<slug>`` (logged in)."""
        return self.home_inside / self.repo_slug if self.repo_slug else self.home_inside

    @property
    def home_inside(self) -> Path:
        """The session's home as the session sees it (a fixed path inside the sandbox)."""
        return self.sandbox_session.home_inside if self.sandbox_session is not None else self.home

    def load_environment(self) -> Environment:
        key = str(self.user_options.get("environment", ""))
        if not key and self.user_options.get("image"):
            raise LaunchError(
                f"this hub runs sessions without containers and cannot start image {self.user_options['image']}: "
                "run it with KubeSpawner or DockerSpawner (see the README, Configuration)",
                501,
            )
        root = Path(self.environments_dir) / key
        # the key comes from the hub API; refuse anything that is not a published cache entry
        if not key or "/" in key or key.startswith(".") or not (root / "environment.json").is_file():
            raise ValueError(f"no built environment {key!r}: build it first (bia-binder build)")
        return Environment.load(root)

    def prepare_home(self, environment: Environment, profile: ResourceProfile) -> None:
        """The session works in a private copy of the repository (sessions may write to it), on a
        filesystem of the profile's ``disk_limit`` where the host can make one."""
        if self.home.exists():
            return
        self.home.parent.mkdir(parents=True, exist_ok=True)
        if profile.disk_limit:
            self.make_ephemeral_disk(profile.disk_limit)
        shutil.copytree(environment.repo_dir, self.home, symlinks=True, dirs_exist_ok=True)
        if study := self.study_entry():
            shutil.copytree(study, self.home, dirs_exist_ok=True)

    def study_entry(self) -> Path | None:
        """The generated files of a study launch (``user_options['study']``, checked: a name from the hub API)."""
        name = str(self.user_options.get("study") or "")
        if not name:
            return None
        from ..studies.store import StudyStore

        entry = StudyStore(self.studies_dir).lookup(name) if self.studies_dir else None
        if entry is None:
            raise LaunchError(f"no generated study {name!r}: launch the study again", 400)
        return entry

    def study_notebook(self) -> str:
        """The notebook a study session opens in JupyterLab ('' for repositories)."""
        entry = self.study_entry()
        return next((p.name for p in sorted(entry.glob("explore-*.ipynb"))), "") if entry is not None else ""

    @property
    def tmp_dir(self) -> Path | None:
        """An anonymous session's /tmp on its disk: a full /tmp then means ENOSPC for that session, not an
        out-of-memory kill (a tmpfs would count against its memory limit)."""
        if not self.is_anonymous or not os.path.ismount(self.home):
            return None
        tmp = self.home / TMP_DIR_NAME
        tmp.mkdir(mode=0o700, exist_ok=True)
        return tmp

    @property
    def ephemeral_disks(self) -> EphemeralDisks:
        return EphemeralDisks(parent=self, root=str(Path(self.sessions_dir) / ".disks"), sessions_dir=self.sessions_dir)

    def make_ephemeral_disk(self, size: int) -> None:
        disks = self.ephemeral_disks
        reason = disks.available()
        if reason is None:
            try:
                disks.create(self.user.name, size)
                return
            except HomeError as e:
                reason = str(e)
        self.log.warning("Session %s has no disk limit (%s)", self.user.name, reason)

    def remove_ephemeral_disk(self) -> None:
        """An anonymous session's files go when it stops: nobody can start it again."""
        try:
            self.ephemeral_disks.delete(self.user.name)
        except HomeError as e:
            self.log.warning("Could not remove the disk of %s: %s", self.user.name, e)

    # --- logged-in sessions: environment and home ----------------------------------------------

    @property
    def builder(self) -> EnvBuilder:
        cache_dir = str(Path(self.environments_dir).resolve())
        if cache_dir not in _BUILDERS:
            _BUILDERS[cache_dir] = EnvBuilder(config=self.config, log=self.log, cache_dir=cache_dir)
        return _BUILDERS[cache_dir]

    uses_models = Bool(False, help="Whether the running session is a deep-learning one (gets models_dir).")

    def portal_environment_file(self, choice: SessionChoice, profile: ResourceProfile | None = None) -> str:
        """The lock file of the portal environment ``choice`` names (with a GPU profile: the GPU variant)."""
        if choice.portal_environment != DEEP_LEARNING_ENVIRONMENT:
            return self.default_environment_requirements
        if profile is not None and profile.gpus and self.deep_learning_gpu_requirements:
            return self.deep_learning_gpu_requirements
        return self.deep_learning_requirements

    async def chosen_environment(self, choice: SessionChoice, profile: ResourceProfile | None = None) -> tuple[Environment, str]:
        """The environment of ``choice`` (built now if not cached) and the repository's slug ('' for a portal one)."""
        if choice.uses_default_environment:
            path = self.portal_environment_file(choice, profile)
            requirements = default_environment.read_requirements(path)
            env = await default_environment.cached_or_built(
                self.builder, requirements, self.build_log.append, self.scratch_dir, default_environment.read_post_build(path)
            )
            return env, ""
        provider = get_provider(choice.provider, choice.spec, parent=self)
        resolved = await provider.resolve()
        key = self.builder.cache_key(resolved.provider, resolved.ref)

        async def fetch(source: Path) -> None:
            await provider.fetch(resolved, source, self.build_log.append)

        return await self.builder.cached_or_built(key, fetch, self.build_log.append, self.scratch_dir), resolved.slug

    def default_requirements(self) -> str:
        return default_environment.read_requirements(self.default_environment_requirements)

    def persistent_home(self) -> Path:
        """The user's quota-enforced home; a plain directory (no quota) where loop mounts are impossible."""
        homes = HomeManager(parent=self)
        if os.geteuid() == 0:
            try:
                return homes.ensure_home(self.user.name)
            except HomeError as e:
                reason = str(e)
        else:
            reason = "the hub does not run as root, which loop-mounting needs"
        plain = Path(homes.root) / "plain" / home_name(self.user.name)
        self.log.warning("Home of %s is a plain directory without a quota at %s: %s", self.user.name, plain, reason)
        plain.mkdir(parents=True, exist_ok=True)
        return plain

    def copy_repository_into_home(self, environment: Environment, slug: str) -> None:
        """First use of a repository: its files go to ``~/<slug>``; later sessions keep the user's changes."""
        target = self.home / slug
        if not target.exists():
            shutil.copytree(environment.repo_dir, target, symlinks=True)

    async def release_home(self) -> None:
        if self.is_anonymous or not self.home_dir:
            return
        try:
            await asyncio.to_thread(HomeManager(parent=self).unmount, self.user.name)
        except HomeError as e:
            self.log.warning("Could not unmount the home of %s: %s", self.user.name, e)
        self.home_dir = ""

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
        if self.is_anonymous:
            # a plain Jupyter server: no hub credential, no gateway; its one secret is its own token
            env = {k: v for k, v in env.items() if not k.startswith(("JUPYTERHUB_", "JPY_", "DASK_GATEWAY__"))}
            env["JUPYTER_TOKEN"] = self.session_token
        if self.sandbox_session is not None:
            env = self.sandbox_session.environ(env)
            if self.sandbox_session.network is not None:
                env = through_gateway(env, self.sandbox_session.host_ports)
        # the same variables `bia-binder run` sets; REPO_DIR is the repository's copy (repo2docker's contract)
        env = self.environment_in_use.session_environ(env, repo_dir=str(self.repo_dir_inside))
        profile = self.profile_in_use
        env.update(session_dask_environment(cpus=profile.cpu_limit, memory=profile.mem_limit))
        if self.uses_models:
            env.update(model_environment(self.models_dir))
            # numba (cellpose, stardist) caches compiled code beside its sources, which are read-only here
            env["NUMBA_CACHE_DIR"] = str(self.home_inside / ".cache" / "numba")
        for key in BINDER_REQUEST_KEYS:
            if key in self.user_options:
                env[key.upper() if key.startswith("binder") else f"BINDER_{key.upper()}"] = str(self.user_options[key])
        return env

    def get_args(self) -> list[str]:
        root_args = ["--allow-root"] if self.runs_as_root else []
        if not self.is_anonymous:
            # jupyterhub-singleuser learns its address and the hub's from JUPYTERHUB_* variables
            return [*root_args, f"--ServerApp.root_dir={self.home_inside}", *super().get_args()]
        # the token is in the server's environment (JUPYTER_TOKEN), never in its arguments: `ps` shows those
        listen = self.sandbox_session.listen_address if self.sandbox_session is not None else "127.0.0.1"
        notebook = self.study_notebook()
        # `jupyter lab` puts LabApp's default_url ('/lab') over ServerApp's: set both
        opens = [f"--{app}.default_url=/lab/tree/{notebook}" for app in ("ServerApp", "LabApp")] if notebook else []
        return [
            *opens,
            *root_args,
            "--no-browser",
            f"--ip={listen}",
            f"--port={self.port}",
            f"--ServerApp.base_url={self.server.base_url}",
            f"--ServerApp.root_dir={self.home_inside}",
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

    session_token = Unicode("", help="An anonymous session's token while it starts (kept out of the hub's database).")

    def take_session_token(self) -> None:
        """Move the launch's token out of ``user_options``: JupyterHub stores those in its database and shows
        them through its API; the server gets the token in its environment only."""
        if not self.is_anonymous:
            return
        self.session_token = str(self.user_options.get("token") or "")
        if not self.session_token:
            raise LaunchError("anonymous sessions need a token in user_options (the binder service sends one)", 400)
        self.user_options = {k: v for k, v in self.user_options.items() if k != "token"}
        if self.orm_spawner is not None:
            self.orm_spawner.user_options = dict(self.user_options)
            self.db.commit()

    async def _start(self):
        self.build_log = []
        self.take_session_token()
        if self.is_anonymous:
            environment, profile = self.load_environment(), self.resource_profile(None)
            await asyncio.to_thread(self.prepare_home, environment, profile)
            entry = [str(environment.bin_dir / "jupyter"), "lab"]
        else:
            environment, profile = await self.prepare_logged_in_session()
            entry = [str(environment.bin_dir / "jupyterhub-singleuser")]
        self.environment_in_use, self.profile_in_use = environment, profile
        self.builder.pin(environment.key, self.user.name)
        try:
            self.enter_sandbox(environment, profile)
            if self.uses_models and self.sandbox_session.separate_uid and self.open_models_dir:
                await asyncio.to_thread(self.open_models_to_sessions)
            self.cmd = self.sandbox_session.wrap(environment.command(entry))
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log_file = open(self.log_path, "ab")  # noqa: SIM115 (owned by the child)
            self.popen_kwargs = {"cwd": str(self.home), "stdout": log_file, "stderr": log_file}
            try:
                ip, port = await super().start()
                await self.wait_until_serving(ip, port)
            finally:
                log_file.close()
        except BaseException:
            await self.stop(now=True)
            raise
        return ip, port

    async def prepare_logged_in_session(self) -> tuple[Environment, ResourceProfile]:
        choice = parse_session_options(self.user_options)
        profile = self.resource_profile(choice)  # an unknown profile fails before any build
        self.uses_models = choice.uses_default_environment and choice.portal_environment == DEEP_LEARNING_ENVIRONMENT
        environment, slug = await self.chosen_environment(choice, profile)
        self.home_dir = str(await asyncio.to_thread(self.persistent_home))
        self.repo_slug = slug
        if slug:
            self.copy_repository_into_home(environment, slug)
        # JupyterLab opens the repository's copy; the file browser still reaches the whole home
        self.default_url = f"/lab/tree/{slug}" if slug else ""
        return environment, profile

    base_start_timeout = None  # start_timeout as configured, before a spawn that builds raised it

    async def run_pre_spawn_hook(self):
        # JupyterHub reads start_timeout after this hook and before start() runs (user.py:
        # `asyncio.wait_for(start(), timeout=spawner.start_timeout)`): a build start() will run
        # must be granted here, or a cold build of the default environment outlasts it.
        if self.base_start_timeout is None:
            self.base_start_timeout = self.start_timeout
        build_time = math.ceil(self.builder.build_timeout) if self.may_build() else 0
        self.start_timeout = self.base_start_timeout + build_time
        result = super().run_pre_spawn_hook()
        return await result if inspect.isawaitable(result) else result

    def may_build(self) -> bool:
        """Whether start() may build: a logged-in session's environment that is not cached yet."""
        if self.is_anonymous:
            return False  # the binder service built it before asking for the session
        try:
            choice = parse_session_options(self.user_options)
            if not choice.uses_default_environment:
                return True  # unknown until its ref is resolved, which start() does
            path = self.portal_environment_file(choice, self.resource_profile(choice))
            requirements = default_environment.read_requirements(path)
            key = default_environment.environment_key(self.builder, requirements, default_environment.read_post_build(path))
            return self.builder.lookup(key) is None
        except LaunchError:
            return False  # start() fails at once, saying why

    async def progress(self):
        """The environment build's log while a logged-in session waits for it."""
        sent = 0
        while True:
            lines = self.build_log or []
            for line in lines[sent:]:
                yield {"message": line.rstrip()}
            sent = len(lines)
            await asyncio.sleep(0.5)

    async def wait_until_serving(self, ip: str, port: int) -> None:
        url = f"http://{ip}:{port}{self.server.base_url}api"
        timeout = self.base_start_timeout or self.start_timeout  # a build before this had its own time
        deadline = time.monotonic() + timeout
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
        raise TimeoutError(f"the session server did not answer within {timeout} s")

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def stop(self, now: bool = False) -> None:
        pid = self.pid
        # the sandbox first: bubblewrap forwards no signal, so the session's own processes get SIGTERM (and
        # time to save) from its cleanup; the pid JupyterHub started has exited by the time its stop() looks
        await self.release_sandbox()
        await super().stop(now=now)
        # kernels and terminals live in the server's process group (start_new_session=True)
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        await self.release_resources()

    async def poll(self) -> int | None:
        had_process = bool(self.pid)
        status = await super().poll()
        if status is not None and had_process:
            # A server that died by itself (its memory limit, kill -9) is never stop()ped: JupyterHub's
            # User.stop calls Spawner.stop only while poll() says running. Free what it held here, while
            # the state still names it (clear_state comes next).
            self.log.info("The server of %s exited (%s): releasing what its session held", self.user.name, status)
            await self.release_sandbox()
            await self.release_resources()
        return status

    async def release_sandbox(self) -> None:
        session = self.sandbox_session or await asyncio.to_thread(Sandbox(parent=self).adopt, self.user.name)
        if session is not None:
            await asyncio.to_thread(session.cleanup)
        self.sandbox_session = None

    async def release_resources(self) -> None:
        """Unpin the environment, unmount the home, delete an anonymous disk: each at most once."""
        # every pin of this user (one server per user): the key may be unknown to a hub restarted meanwhile
        self.builder.unpin_everywhere(self.user.name)
        self.environment_in_use, self.environment_key = None, ""
        await self.release_home()
        if self.is_anonymous:
            await asyncio.to_thread(self.remove_ephemeral_disk)

    # --- what a restarted hub needs to stop a session it did not start ---------------------------

    environment_key = Unicode("", help="The running session's environment (kept in the hub's database).")

    def get_state(self) -> dict:
        state = super().get_state()
        key = self.environment_in_use.key if self.environment_in_use is not None else self.environment_key
        if key:
            state["environment_key"] = key
        if self.home_dir:
            state["home_dir"] = self.home_dir
        return state

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.environment_key = state.get("environment_key", "")
        self.home_dir = state.get("home_dir", "")

    def clear_state(self) -> None:
        super().clear_state()
        self.environment_key = ""

    async def delete_forever(self) -> None:
        """Anonymous sessions are one-shot: their files go with their user."""
        if self.is_anonymous:
            shutil.rmtree(self.home, ignore_errors=True)
            self.log_path.unlink(missing_ok=True)


def model_environment(models_dir: str) -> dict[str, str]:
    """Where the deep-learning tools look for weights: below the operator's models directory (read-only)."""
    root = Path(models_dir)
    return {
        "BIA_BINDER_MODELS_DIR": str(root),
        "CELLPOSE_LOCAL_MODELS_PATH": str(root / "cellpose"),
        "TORCH_HOME": str(root / "torch"),
        "BIOIMAGEIO_CACHE_PATH": str(root / "bioimageio"),
    }


def through_gateway(env: dict[str, str], host_ports: tuple[int, ...]) -> dict[str, str]:
    """``env`` as seen from a session's own network: URLs of the host's loopback services it may use point at
    the namespace's gateway, and its own server listens on all of its (private) addresses."""
    result = {}
    for key, value in env.items():
        port = loopback_port(value)
        if port and port in host_ports:
            parsed = urlsplit(value)
            value = parsed._replace(netloc=f"{GATEWAY_ADDRESS}:{port}").geturl()
        result[key] = value
    if "JUPYTERHUB_SERVICE_URL" in env:  # where jupyterhub-singleuser binds
        parsed = urlsplit(env["JUPYTERHUB_SERVICE_URL"])
        result["JUPYTERHUB_SERVICE_URL"] = parsed._replace(netloc=f"0.0.0.0:{parsed.port}").geturl()
    return result
