"""EnvBuilder: a checked-out repository in, a published cached environment out (no containers)."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from pathlib import Path

from traitlets import Bool, Dict, Float, Int, List, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from .. import __version__
from ..events import LaunchError
from . import base
from .base import Environment, LogFn
from .buildpacks import (
    BuildContext,
    BuildPack,
    ContainerOnlyBuildPack,
    RepoFiles,
    detect_buildpack,
    needs_container,
)
from .cache import EnvCache, own_disk_usage
from .conda import CondaInstaller, CondaSettings
from .environ import build_environ
from .process import CommandLimitExceeded, CommandResult, run_streaming
from .pythons import ManagedPythons, validate_implementations
from .uv import ResolutionCache, UvInstaller

#: bump when a change of the builder changes what an environment contains
BUILD_FORMAT = "2"
DATA_LIBRARY_PTH = "bia_binder_data_library.pth"
GiB = 1024**3
#: seconds between disk-use checks while a build command runs (each check walks the build tree)
DISK_CHECK_INTERVAL = 3.0
#: sandboxed builds happen in this directory beside uv's cache (see EnvBuilder._build_area)
BUILD_AREA_NAME = "bia-binder-builds"
#: wheels a checkout builds for itself (`make omero-wheels`: zeroc-ice, which PyPI lacks for 3.11). Not
#: under .cache: the directory holding uv's cache must hold nothing else for builds to hardlink (_build_area)
CHECKOUT_WHEELS = Path(__file__).resolve().parents[3] / ".wheels"


def data_extra_requirements() -> list[str]:
    """The ``data`` extra of our own package: what ``bia_binder.data`` needs in every session environment."""
    # read from our installed metadata (pyproject.toml is not shipped); markers look like `extra == "data"`
    requirements = importlib.metadata.requires("bia-binder") or []
    marker = re.compile(r"""extra\s*==\s*['"]data['"]""")
    return [req.split(";")[0].strip() for req in requirements if ";" in req and marker.search(req.split(";", 1)[1])]


class EnvBuilder(LoggingConfigurable):
    """Builds environments with uv (hardlinked from its cache) following repo2docker's configuration rules."""

    version = f"{__version__}+build{BUILD_FORMAT}"

    cache_dir = Unicode(
        "data/envs",
        config=True,
        help="Directory of the environment cache (relative paths are resolved from the working directory). "
        "Keep it on the same filesystem as uv_cache_dir so packages are hardlinked, not copied.",
    )
    build_timeout = Float(1800.0, config=True, help="Seconds a build may take before it is stopped (fails with 500).")
    disk_limit = Int(
        10 * GiB,
        config=True,
        help="Bytes of new disk one build may use (files not hardlinked from uv's cache); beyond it the build "
        "is stopped and fails with 413.",
    )
    cache_budget_bytes = Int(
        100 * GiB,
        config=True,
        help="Disk budget of the cache (bytes its entries use beyond uv's cache). After each build, least-recently "
        "used entries no session has pinned are removed until the cache fits.",
    )
    session_packages = List(
        Unicode(),
        config=True,
        help="The notebook server every environment gets (JupyterLab, jupyterhub-singleuser), resolved together "
        "with the repository's requirements, as repo2docker's environments hold both.",
    )
    extra_packages = Dict(
        value_trait=List(Unicode()),
        key_trait=Unicode(),
        config=True,
        help="Optional groups of packages (name -> requirements) added after the repository's requirements, "
        "each only where it fits them with every installed version held: they never change what the "
        "repository's requirements resolve to and never fail a build (the build log says what was left out "
        "and why). Default: jupyter-resource-usage and the dependencies of bia_binder.data.",
    )
    data_library_path = Unicode(
        config=True,
        help="Directory containing the bia_binder package; a .pth file puts it on every environment's path so "
        "`import bia_binder.data` works.",
    )
    uv_bin = Unicode(config=True, help="The uv executable (default: the one installed with this package).")
    uv_cache_dir = Unicode(
        "",
        config=True,
        help="uv's package cache (empty: uv's default, $UV_CACHE_DIR or ~/.cache/uv). Must be on the cache_dir's "
        "filesystem for hardlinks.",
    )
    index_url = Unicode("", config=True, help="Python package index to install from (empty: uv's default, PyPI).")
    find_links = List(
        Unicode(),
        config=True,
        help="Directories of wheels uv may install besides the index (uv --find-links), shown read-only to "
        "builds: e.g. torch's CPU wheels, which PyPI does not have. Default: /opt/wheels and the checkout's "
        ".wheels (OMERO's zeroc-ice, `make omero-wheels`), where they exist.",
    )

    @default("find_links")
    def _default_find_links(self) -> list[str]:
        return [str(path) for path in (Path("/opt/wheels"), CHECKOUT_WHEELS) if path.is_dir()]

    python = Unicode(
        config=True,
        help="Interpreter for environments whose repository does not ask for a Python version "
        "(default: the interpreter running this service).",
    )
    python_search_path = List(
        Unicode(),
        config=True,
        help="Directories searched for pythonX.Y when a repository asks for a version (runtime.txt, "
        "environment.yml, Pipfile). Default: the directories of $PATH.",
    )

    python_install_dir = Unicode(
        "",
        config=True,
        help="Where uv's managed Pythons (versions the host lacks) are installed, by the service itself, never "
        "by a build; builds and sessions of an environment linked to one see it read-only "
        "(empty: <cache_dir>/.pythons, in the service's data dir).",
    )
    python_downloads_json_url = Unicode(
        config=True,
        help="A list of Python builds to install from, in the JSON format of uv's own list (each with its url and "
        "sha256; uv --python-downloads-json-url): e.g. a mirror the operator fills. Default: "
        "$UV_PYTHON_DOWNLOADS_JSON_URL, else none. With none of this, python_install_mirror and "
        "pypy_install_mirror set, a Python the host lacks is never downloaded: the build fails saying what is "
        "available.",
    )
    python_install_mirror = Unicode(
        config=True,
        help="Base URL replacing python-build-standalone's GitHub releases in uv's built-in list of CPython builds "
        "(uv's UV_PYTHON_INSTALL_MIRROR; 'https://github.com/astral-sh/python-build-standalone/releases/download' "
        "is the upstream itself). Default: $UV_PYTHON_INSTALL_MIRROR, else none.",
    )
    pypy_install_mirror = Unicode(
        config=True,
        help="Base URL replacing downloads.python.org/pypy in uv's built-in list of PyPy builds (uv's "
        "UV_PYPY_INSTALL_MIRROR). Default: $UV_PYPY_INSTALL_MIRROR, else none.",
    )
    python_implementations = List(
        Unicode(),
        ["cpython"],
        config=True,
        help="Implementations that may stand for a Python version a repository asks for, in order of preference, "
        "when the host lacks it: 'python-3.9' in runtime.txt means CPython (as in repo2docker), so by default "
        "only CPython is installed. Add 'pypy' (or 'graalpy') to accept that implementation where the source "
        "has no CPython of that version; the build log says which one was used.",
    )
    pypy_only_binary = List(
        Unicode(),
        ["cryptography", "pydantic-core", "rpds-py", "orjson", "jiter"],
        config=True,
        help="Packages never built from source in environments of a non-CPython interpreter (uv --only-binary), so "
        "that uv picks their newest release with a wheel for it: their sources need a Rust toolchain "
        "(the notebook server needs cryptography, pydantic-core and rpds-py).",
    )

    @validate("python_implementations")
    def _check_implementations(self, proposal) -> list[str]:
        try:
            return validate_implementations(proposal["value"])
        except ValueError as e:
            raise TraitError(str(e)) from None

    @default("python_downloads_json_url")
    def _default_downloads_json_url(self) -> str:
        return os.environ.get("UV_PYTHON_DOWNLOADS_JSON_URL", "")

    @default("python_install_mirror")
    def _default_install_mirror(self) -> str:
        return os.environ.get("UV_PYTHON_INSTALL_MIRROR", "")

    @default("pypy_install_mirror")
    def _default_pypy_mirror(self) -> str:
        return os.environ.get("UV_PYPY_INSTALL_MIRROR", "")

    resolution_reuse_seconds = Float(
        600.0,
        config=True,
        help="Seconds a resolution of plain requirements is reused for an equal list (then installed offline from "
        "uv's cache: a rebuild of an equal environment needs no index requests). 0 resolves every build afresh. "
        "Like the package index's own cache lifetime, a new release is picked up at most this much later.",
    )
    sandboxed = Bool(
        False,
        config=True,
        help="Run every build command (the installer, hence the repository's setup.py, and postBuild) in the "
        "sessions' sandbox (bia_binder.sessions.sandbox) as Sandbox.build_uid, with the anonymous profile's limits. "
        "`bia-binder up` turns it on. Where the host cannot isolate, builds for anonymous launches are refused "
        "like anonymous sessions (unless Sandbox.allow_unsafe).",
    )
    conda_channel_alias = Unicode(
        "https://conda.anaconda.org/",
        config=True,
        help="Base URL of named conda channels in environment.yml (conda's channel_alias): a mirror, or a file:// URL.",
    )
    conda_pkgs_dir = Unicode(
        "",
        config=True,
        help="Cache of conda packages (empty: <cache_dir>/.conda-pkgs, on the cache's filesystem for hardlinks).",
    )

    @default("session_packages")
    def _default_session_packages(self) -> list[str]:
        return ["jupyterlab>=4", "jupyterhub>=5"]

    @default("extra_packages")
    def _default_extra_packages(self) -> dict[str, list[str]]:
        # jupyter-resource-usage: sessions see their profile's limits in JupyterLab (as on mybinder.org)
        return {"jupyter-resource-usage": ["jupyter-resource-usage"], "bia_binder.data": data_extra_requirements()}

    @default("data_library_path")
    def _default_data_library_path(self) -> str:
        import bia_binder

        return str(Path(bia_binder.__file__).resolve().parent.parent)

    @default("uv_bin")
    def _default_uv_bin(self) -> str:
        import uv

        return uv.find_uv_bin()

    @default("python")
    def _default_python(self) -> str:
        """The service's Python version, preferring an interpreter every uid can run: sandboxed
        sessions run as their own uid, and an environment's bin/python links to its interpreter
        (a pyenv under /root, mode 700, would leave sessions without Python)."""
        own = getattr(sys, "_base_executable", None) or sys.executable
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        for candidate in (own, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
            if _usable_by_everyone(candidate):
                return candidate
        return own

    @default("python_search_path")
    def _default_python_search_path(self) -> list[str]:
        return [d for d in os.environ.get("PATH", os.defpath).split(os.pathsep) if d]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.cache = EnvCache(Path(self.cache_dir).resolve(), tmp_dir=self._build_area())
        self.cache.remove_stale_builds()
        self._inflight: dict[str, tuple[asyncio.Future[Environment], list[LogFn]]] = {}
        self._sandbox = None  # bia_binder.sessions.sandbox.Sandbox, made on the first sandboxed build
        self._uv_cache_handed_over = False

    # keys and lookups ----------------------------------------------------------------------------
    def config_hash(self) -> str:
        """What besides the repository decides an environment's content."""
        config = {
            "session_packages": sorted(self.session_packages),
            "extra_packages": {name: sorted(reqs) for name, reqs in self.extra_packages.items()},
            "data_library_path": self.data_library_path,
            "index_url": self.index_url,
            **({"find_links": sorted(self.find_links)} if self.find_links else {}),
            "python": self.python,
            "conda_channel_alias": self.conda_channel_alias,
        }
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]

    def cache_key(self, provider: str, ref: str) -> str:
        return base.cache_key(provider, ref, self.version, self.config_hash())

    def lookup(self, key: str) -> Environment | None:
        return self.cache.lookup(key)

    def pin(self, key: str, holder: str) -> None:
        self.cache.pin(key, holder)

    def unpin(self, key: str, holder: str) -> None:
        self.cache.unpin(key, holder)

    def unpin_everywhere(self, holder: str) -> None:
        self.cache.unpin_everywhere(holder)

    # building ----------------------------------------------------------------------------------------
    async def cached_or_built(
        self,
        key: str,
        fill_source: Callable[[Path], Awaitable[None]],
        log: LogFn,
        scratch_dir: str = "",
        anonymous: bool = False,
    ) -> Environment:
        """The environment ``key``; if not cached, ``fill_source`` writes the repository into a scratch
        directory (under ``scratch_dir``, default the system's) and it is built from there."""
        if env := self.lookup(key):
            return env
        with tempfile.TemporaryDirectory(prefix="source-", dir=scratch_dir or None) as scratch:
            source = Path(scratch) / "repo"
            source.mkdir()
            await fill_source(source)
            log("Building the environment (first use; later sessions start at once)\n")
            return await self.build(source, key, log, anonymous=anonymous)

    async def build(self, source_dir: Path, key: str, log: LogFn, anonymous: bool = False) -> Environment:
        """Build ``source_dir`` as ``key`` (or join the build of ``key`` already running); ``log`` gets each line.

        ``anonymous``: the build is for an anonymous launch, refused where it cannot be sandboxed (see ``sandboxed``).
        """
        if key in self._inflight:
            future, listeners = self._inflight[key]
            listeners.append(log)
            return await asyncio.shield(future)
        if env := self.lookup(key):
            return env
        listeners = [log]
        future: asyncio.Future[Environment] = asyncio.get_running_loop().create_future()
        self._inflight[key] = (future, listeners)

        def fan_out(line: str) -> None:
            for listener in listeners:
                listener(line)

        try:
            env = await self._build_once_across_processes(source_dir, key, fan_out, anonymous)
            future.set_result(env)
            return env
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # joiners get it; nobody else needs to retrieve it
            raise
        finally:
            del self._inflight[key]

    async def _build_once_across_processes(self, source_dir: Path, key: str, log: LogFn, anonymous: bool) -> Environment:
        def say_waiting() -> None:
            log("Another process is building this environment; waiting for it\n")

        async with self.cache.exclusive_build(key, say_waiting):
            if env := self.lookup(key):  # the other process published it meanwhile
                return env
            return await self._build_with_limits(source_dir, key, log, anonymous)

    async def _build_with_limits(self, source_dir: Path, key: str, log: LogFn, anonymous: bool) -> Environment:
        build_dir = self.cache.new_build_dir(key)
        try:
            try:
                env = await asyncio.wait_for(
                    self._build_in(build_dir, source_dir, key, log, anonymous), self.build_timeout
                )
            except asyncio.TimeoutError:
                raise LaunchError(
                    f"the build took longer than {self.build_timeout:g} s and was stopped (limit: c.EnvBuilder.build_timeout)",
                    500,
                ) from None
            except CommandLimitExceeded as e:
                raise LaunchError(str(e), 413) from None
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self.cache.discard, build_dir))
            raise
        evicted = await asyncio.to_thread(self.cache.evict, self.cache_budget_bytes, frozenset({key}))
        if evicted:
            self.log.info("Evicted %d environment(s) to fit the cache budget: %s", len(evicted), ", ".join(evicted))
        return env

    async def _build_in(self, build_dir: Path, source_dir: Path, key: str, log: LogFn, anonymous: bool) -> Environment:
        started = time.monotonic()
        repo_dir = build_dir / "repo"
        # the log is the user's: paths relative to the repository, placeholders for the host's directories
        places = {repo_dir: ".", build_dir / "env": "<environment>", build_dir: "<build>", self.cache.root: "<environments>"}
        if uv_cache := self.effective_uv_cache_dir():
            places[Path(uv_cache)] = "<uv cache>"
        log = without_host_paths(log, places)
        await asyncio.to_thread(shutil.copytree, source_dir, repo_dir, symlinks=True)
        repo = RepoFiles(repo_dir)
        pack = detect_buildpack(repo)
        if isinstance(pack, ContainerOnlyBuildPack):
            raise needs_container(pack.needs)
        log(f"Using the {pack.name} buildpack (configuration in {repo.config_dir.relative_to(repo_dir) or '.'})\n")
        await asyncio.to_thread(self._check_common_files, repo, log)
        interpreter = await self._interpreter_for(pack, repo, log)
        jail = await asyncio.to_thread(self._enter_build_sandbox, build_dir, repo_dir, interpreter, anonymous)
        try:
            return await self._install(build_dir, repo, pack, interpreter, key, log, jail, started)
        finally:
            if jail is not None:
                await asyncio.to_thread(jail.cleanup)

    async def _install(self, build_dir, repo, pack, interpreter, key, log, jail, started) -> Environment:
        async def watchdog() -> str | None:
            return self._disk_limit_reason(await asyncio.to_thread(own_disk_usage, build_dir))

        async def run(argv: Sequence[str], cwd: Path | None, extra_env: dict[str, str]) -> CommandResult:
            log(f"$ {' '.join(os.path.basename(argv[0]) if i == 0 else a for i, a in enumerate(argv))}\n")
            env = {**self._uv_environ(), **extra_env}
            if jail is not None:
                argv, env = jail.wrap(list(argv), cwd), jail.environ(env)
            result = await run_streaming(
                argv, log, cwd=cwd, env=env, watchdog=watchdog, watchdog_interval=DISK_CHECK_INTERVAL
            )
            if result.returncode and jail is not None and jail.cgroup is not None and jail.cgroup.oom_kills():
                raise LaunchError(
                    f"the build ran out of memory (limit {jail.profile.mem_limit / GiB:.3g} GiB, the anonymous "
                    "profile's: c.ResourceProfiles.anonymous)",
                    500,
                )
            return result

        env_dir = build_dir / "env"
        scratch = build_dir / "scratch"
        scratch.mkdir()
        conda_settings = CondaSettings(channel_alias=self.conda_channel_alias, pkgs_dir=self._conda_pkgs_dir())
        ctx = BuildContext(
            repo=repo,
            interpreter=interpreter,
            uv=UvInstaller(
                self.uv_bin, env_dir, run, interpreter, self._resolutions(), scratch,
                only_binary_unless_cpython=self.pypy_only_binary,
            ),  # fmt: skip
            conda=CondaInstaller(conda_settings, env_dir, self.cache.entry_dir(key) / "env", log),
            session_packages=list(self.session_packages),
            scratch_dir=scratch,
        )
        if jail is not None:
            await asyncio.to_thread(jail.own, build_dir)
        await pack.create_environment(ctx)
        if jail is not None:
            # the conda installer runs in this process: what it made goes to the build's uid too
            await asyncio.to_thread(jail.own, build_dir)
        await pack.install(ctx)
        left_out = await ctx.uv.add_optional(self.extra_packages, cwd=repo.root)
        for group, reason in left_out.items():
            log(
                f"Left out {group} ({', '.join(self.extra_packages[group])}): it does not fit the repository's "
                f"requirements, which take precedence: {reason}\n"
            )
        shutil.rmtree(scratch)
        (ctx.uv.site_packages / DATA_LIBRARY_PTH).write_text(self.data_library_path + "\n")
        await self._post_build(repo, build_dir, run, jail)
        await asyncio.to_thread(self._open_to_session_layers, env_dir)
        await asyncio.to_thread(_readable_by_everyone, repo.root)
        own_bytes = await asyncio.to_thread(own_disk_usage, build_dir)
        if reason := self._disk_limit_reason(own_bytes):
            raise CommandLimitExceeded(reason)
        self._write_metadata(build_dir, key, pack, own_bytes, left_out, self.interpreter_dirs(interpreter))
        env = self.cache.publish(build_dir, key)
        log(f"Built environment {key} in {time.monotonic() - started:.1f} s\n")
        return env

    def _enter_build_sandbox(self, build_dir: Path, repo_dir: Path, interpreter: str, anonymous: bool):
        """The build's sandbox (a ``Session``), or None when builds are not sandboxed.

        Writable inside: the build directory and the package cache (which must therefore belong to
        the build uid: handed over on the first build, a no-op walk when it already is).
        """
        if not self.sandboxed:
            return None
        from ..sessions.network import loopback_port
        from ..sessions.profiles import ResourceProfiles
        from ..sessions.sandbox import Sandbox

        if self._sandbox is None:
            self._sandbox = Sandbox(parent=self)
        uv_cache = Path(self.effective_uv_cache_dir()).resolve()
        resolutions = self._resolutions().directory
        for path in (uv_cache, resolutions):
            path.mkdir(parents=True, exist_ok=True)
        jail = self._sandbox.prepare_build(
            build_dir.name,
            repo_dir,
            ResourceProfiles(parent=self).anonymous_profile(),
            # shown explicitly: each may live below a hidden path or /tmp (private inside), as in a CI checkout
            readonly=[
                resolutions,
                Path(self.data_library_path),
                Path(self.uv_bin),
                *[path for path in [Path(interpreter).resolve()] if path.exists()],
                *[Path(path) for path in self.interpreter_dirs(interpreter)],
                *[Path(path) for path in self.find_links if Path(path).is_dir()],
            ],
            # one mount for the cache and the build where they share a directory (see _build_area): hardlinks
            writable=[uv_cache.parent] if build_dir.parent == uv_cache.parent / BUILD_AREA_NAME else [build_dir, uv_cache],
            anonymous=anonymous,
            # a package index or proxy the operator runs on this host stays reachable from the build's own network
            host_ports=sorted({port for value in self._uv_environ().values() if (port := loopback_port(value))}),
        )
        if not self._uv_cache_handed_over:
            jail.own(uv_cache)
            self._uv_cache_handed_over = True
        return jail

    def effective_uv_cache_dir(self) -> str:
        """uv's cache: ``uv_cache_dir``, else $UV_CACHE_DIR, else (sandboxed) one beside the environments,
        since the build uid cannot reach root's ~/.cache; '' leaves uv its default."""
        if configured := self.uv_cache_dir or os.environ.get("UV_CACHE_DIR"):
            return configured
        return str(Path(self.cache_dir).resolve() / ".uv" / "cache") if self.sandboxed else ""

    def _build_area(self) -> Path | None:
        """Where sandboxed builds happen: beside uv's cache, in the directory that holds only the two.

        The sandbox shows each writable path as a mount of its own, and Linux refuses hardlinks
        between mounts (EXDEV, even on one filesystem), so an environment must be built in the same
        writable mount as the cache it links from. Not inside the cache: uv refuses to work in a
        project below its cache. The directory holding both is writable to builds, so it must hold
        nothing else; otherwise builds copy their packages, with a warning saying what to change.
        """
        if not self.sandboxed:
            return None
        uv_cache, cache_root = Path(self.effective_uv_cache_dir()).resolve(), Path(self.cache_dir).resolve()
        for path in (uv_cache, cache_root):
            path.mkdir(parents=True, exist_ok=True)
        area = uv_cache.parent
        others = sorted(set(os.listdir(area)) - {uv_cache.name, BUILD_AREA_NAME})
        if uv_cache.stat().st_dev != cache_root.stat().st_dev or others:
            self.log.warning(
                "Builds copy every package instead of hardlinking it from uv's cache %s: give the cache a directory "
                "of its own (its parent holds %s), on the filesystem of %s (c.EnvBuilder.uv_cache_dir)",
                uv_cache, ", ".join(others[:5]) or "nothing else", cache_root,
            )  # fmt: skip
            return None
        return area / BUILD_AREA_NAME

    def _resolutions(self) -> ResolutionCache:
        return ResolutionCache(self.cache.root / ".resolutions", self.resolution_reuse_seconds, self.config_hash())

    def _conda_pkgs_dir(self) -> Path:
        return Path(self.conda_pkgs_dir) if self.conda_pkgs_dir else self.cache.root / ".conda-pkgs"

    def _check_common_files(self, repo: RepoFiles, log: LogFn) -> None:
        if repo.has("install.R"):
            raise needs_container("install.R (R packages)")
        if repo.has("apt.txt"):
            wanted = [line.split("#")[0].strip() for line in repo.read("apt.txt").splitlines()]
            missing = [pkg for pkg in wanted if pkg and not _host_has_deb(pkg)]
            if missing:
                raise needs_container(f"apt.txt (packages this host lacks: {', '.join(missing[:10])})")
            log("apt.txt: every package is already installed on this host\n")

    async def _interpreter_for(self, pack: BuildPack, repo: RepoFiles, log: LogFn) -> str:
        wanted = pack.python_version(repo)
        if wanted is None:
            return self.python
        return await self.find_interpreter(wanted, log)

    async def find_interpreter(self, version: str, log: LogFn = lambda line: None) -> str:
        """An interpreter of Python ``version`` (X.Y): the host's (the default one if it matches, else the first
        on the search path), else an installed managed one, else one installed from the configured source."""
        if host := await asyncio.to_thread(self.host_interpreter, version):
            return host
        managed = self.managed_pythons()
        if found := await asyncio.to_thread(managed.find, version):
            log(f"Using the managed {found.implementation} {found.version} (this host has no Python {version})\n")
            return found.path
        if managed.source_configured and (installed := await managed.install(version, log)):
            if installed.implementation != "cpython":
                log(
                    f"Note: Python {version} is {installed.implementation} {installed.version} here: the source has "
                    "no CPython of that version (c.EnvBuilder.python_implementations allows it)\n"
                )
            return installed.path
        raise LaunchError(await asyncio.to_thread(self._missing_python_reason, version, managed), 400)

    def host_interpreter(self, version: str) -> str | None:
        """The host's interpreter of Python ``version``: the default one if it matches, else the first on the search path."""
        candidates = [self.python, *(str(Path(d) / f"python{version}") for d in self.python_search_path)]
        for candidate in candidates:
            if self._runnable_by_builds(candidate) and _interpreter_version(candidate) == version:
                return candidate
        return None

    def host_versions(self) -> list[str]:
        return sorted(
            {
                v
                for candidate in [self.python, *(str(p) for d in self.python_search_path for p in Path(d).glob("python3.*"))]
                if self._runnable_by_builds(candidate) and (v := _interpreter_version(candidate))
            }
        )

    def _missing_python_reason(self, version: str, managed: ManagedPythons) -> str:
        available = ", ".join(self.host_versions()) or "none"
        if installed := managed.describe_installed():
            available += f"; installed from a mirror: {installed}"
        if managed.source_configured:
            where = (
                f"and the configured source of Python builds has no {' or '.join(managed.implementations)} {version} "
                "(c.EnvBuilder.python_implementations lists the implementations accepted)"
            )
        else:
            where = (
                "and no source of Python builds is configured (c.EnvBuilder.python_install_mirror, "
                "pypy_install_mirror or python_downloads_json_url)"
            )
        return (
            f"the repository asks for Python {version}, which this host does not have (available: {available}) {where}: "
            "ask for one of those in runtime.txt, or have the operator configure a source or add an interpreter to "
            "c.EnvBuilder.python_search_path"
        )

    def managed_pythons(self) -> ManagedPythons:
        return ManagedPythons(
            uv_bin=self.uv_bin,
            install_dir=self.effective_python_install_dir(),
            environ=self._uv_environ(),
            implementations=tuple(self.python_implementations),
            downloads_json_url=self.python_downloads_json_url,
            mirror=self.python_install_mirror,
            pypy_mirror=self.pypy_install_mirror,
        )

    def interpreter_dirs(self, interpreter: str) -> list[str]:
        """Host directories a sandbox must show for an environment of ``interpreter``: the managed Pythons'
        directory when it is one of them (the whole directory: uv links versions to each other inside it)."""
        managed = self.effective_python_install_dir()
        return [str(managed)] if self.managed_pythons().owns(interpreter) else []

    def effective_python_install_dir(self) -> Path:
        return Path(self.python_install_dir).resolve() if self.python_install_dir else self.cache.root / ".pythons"

    def _runnable_by_builds(self, interpreter: str) -> bool:
        """Sandboxed builds (and sessions) run as other uids: an interpreter under a private home is no use."""
        return not (self.sandboxed and os.geteuid() == 0) or _usable_by_everyone(interpreter)

    async def _post_build(self, repo: RepoFiles, build_dir: Path, run, jail) -> None:
        if not repo.has("postBuild"):
            return
        script = repo.path("postBuild")
        script.chmod(script.stat().st_mode | 0o111)
        env = Environment(key="", root=build_dir)
        # HOME is the checkout, as in repo2docker: what postBuild writes to ~ is in every session's home
        # (inside the sandbox both are /home/jovyan); an allow-listed environment (environ.py): never the
        # service's own, which holds its hub token. Download caches (pip's, npm's) go beside the build,
        # not into ~, which every session gets a copy of.
        caches = build_dir / "postbuild-caches"
        caches.mkdir(exist_ok=True)
        if jail is not None:
            await asyncio.to_thread(jail.own, caches)
        # the checkout as postBuild sees it: /home/jovyan in the sandbox (its cwd there), else its own path
        repo_dir = str(jail.home_inside) if jail is not None else str(repo.root)
        environ = build_environ(
            HOME=repo_dir,
            PIP_CACHE_DIR=str(caches / "pip"),
            NPM_CONFIG_CACHE=str(caches / "npm"),
            XDG_CACHE_HOME=str(caches),
        )
        if self.index_url:
            environ["PIP_INDEX_URL"] = self.index_url
        try:
            cwd = None if jail is not None else repo.root
            result = await run([str(script)], cwd, env.session_environ(environ, repo_dir=repo_dir))
        finally:
            await asyncio.to_thread(shutil.rmtree, caches, True)
        if result.returncode:
            last = next((line for line in reversed(result.tail) if line.strip()), "no output")
            raise LaunchError(f"postBuild failed with exit status {result.returncode}: {last.strip()}", 500)

    def _open_to_session_layers(self, env_dir: Path) -> None:
        """Directories of the environment group-writable for Sandbox.layer_gid, which sessions hold only inside
        their sandbox, where the environment is read-only under a writable overlay of their own: so `pip install`
        in a session may change its layer (as in a repo2docker container), never the shared environment.
        Directories only: files are hardlinks into uv's cache, and pip replaces files rather than editing them."""
        if os.geteuid() != 0:
            return  # only root hands groups out; sessions of a non-root service keep a read-only environment
        from ..sessions.sandbox import Sandbox

        gid = Sandbox(parent=self).layer_gid
        for directory, _dirnames, _files in os.walk(env_dir):
            os.chown(directory, -1, gid, follow_symlinks=False)
            os.chmod(directory, os.stat(directory).st_mode | 0o070)

    def _disk_limit_reason(self, used_bytes: int) -> str | None:
        if used_bytes <= self.disk_limit:
            return None
        return (
            f"the build used more than {self.disk_limit / GiB:.3g} GiB of new disk and was stopped "
            "(limit: c.EnvBuilder.disk_limit)"
        )

    def _write_metadata(
        self,
        build_dir: Path,
        key: str,
        pack: BuildPack,
        own_bytes: int,
        left_out: dict[str, str],
        interpreter_dirs: list[str],
    ) -> None:
        meta = {
            "interpreter_dirs": interpreter_dirs,
            "left_out": left_out,
            "key": key,
            "buildpack": pack.name,
            "builder_version": self.version,
            "created": time.time(),
            "own_bytes": own_bytes,
            "env": {},
        }
        (build_dir / "environment.json").write_text(json.dumps(meta, indent=2) + "\n")

    def _uv_environ(self) -> dict[str, str]:
        environ = build_environ()  # an allow-list: never the service's own variables (its hub token)
        environ.update(UV_LINK_MODE="hardlink", UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1", NO_COLOR="1")
        if uv_cache := self.effective_uv_cache_dir():
            environ["UV_CACHE_DIR"] = uv_cache
        if self.index_url:
            environ["UV_INDEX_URL"] = self.index_url
        if self.find_links:
            environ["UV_FIND_LINKS"] = ",".join(self.find_links)
        return environ


def _readable_by_everyone(root: Path) -> None:
    """The built repository is every session's template (its ``start`` runs from it, as other uids): readable
    and searchable by all, whatever modes the source had (a local directory may be 0700)."""
    for directory, _dirnames, files in os.walk(root):
        os.chmod(directory, os.stat(directory).st_mode | 0o555)
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)


def without_host_paths(log: LogFn, places: dict[Path, str]) -> LogFn:
    """``log`` with each of ``places``' host paths (and what they resolve to) replaced by its placeholder;
    a file below the repository becomes its path relative to the repository (``./setup.py`` → ``setup.py``)."""
    pairs: list[tuple[str, str]] = []
    for path, placeholder in places.items():
        for spelling in {str(path), str(Path(path).resolve())}:
            inside = "" if placeholder == "." else f"{placeholder}/"
            pairs += [(f"{spelling}/", inside), (spelling, placeholder)]
    pairs.sort(key=lambda pair: len(pair[0]), reverse=True)  # longest first: a path before its parent

    def relative(line: str) -> None:
        for host, placeholder in pairs:
            line = line.replace(host, placeholder)
        log(line)

    return relative


@lru_cache(maxsize=64)
def _usable_by_everyone(path: str) -> bool:
    """World-executable, with every directory above it world-searchable (symlinks followed)."""
    real = Path(path).resolve()
    if not real.is_file() or not real.stat().st_mode & 0o001:
        return False
    return all(parent.stat().st_mode & 0o001 for parent in real.parents)


def _interpreter_version(path: str) -> str | None:
    """``X.Y`` of the interpreter at ``path``, or None when it is missing or does not run (e.g. a stale shim)."""
    try:
        out = subprocess.run(
            [path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def _host_has_deb(package: str) -> bool:
    try:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0 and result.stdout.strip().endswith(" installed")
