"""The uv executor: virtual environments and installs hardlinked from uv's cache.

uv is used as a command (the binary shipped with the ``uv`` PyPI package) rather than a library:
it has no Python API, and its command line is its stable interface.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..events import LaunchError
from .process import CommandResult

#: runs one command (argv, working directory, extra environment variables) with the build's log and limits
RunFn = Callable[[Sequence[str], Path | None, dict[str, str]], Awaitable[CommandResult]]


#: a plain requirement (name, extras, version, marker): nothing that points at files, URLs or options
_PLAIN_REQUIREMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[A-Za-z0-9._,\s-]*\])?\s*([<>=!~][^;@]*)?(;[^@]*)?$")


@dataclass
class ResolutionCache:
    """Recent resolutions of plain requirement lists, reused for equal inputs.

    Resolving needs the package index even when uv's cache holds every package (uv revalidates its
    index pages); reusing an equal resolution for a short while makes a rebuild of an equal
    environment a pure offline install from the cache. Inputs naming files, URLs or options are never reused.
    """

    directory: Path
    max_age: float
    salt: str = ""  # what else decides a resolution (the builder's configuration: index, session packages)

    def key(self, args: Sequence[str], interpreter: str) -> str | None:
        lines: list[str] = []
        items = iter(args)
        for arg in items:
            if arg in ("-r", "-c"):
                # constraints count too (they differ from requirements only in what they may add)
                prefix = "" if arg == "-r" else "-c "
                text = Path(next(items)).read_text(encoding="utf-8", errors="replace")
                lines += [prefix + line if line.split("#")[0].strip() else line for line in text.splitlines()]
            else:
                lines.append(arg)
        requirements = sorted({line.split("#")[0].strip() for line in lines} - {""})
        plain = all(_PLAIN_REQUIREMENT.match(line.removeprefix("-c ")) for line in requirements)
        if self.max_age <= 0 or not plain:
            return None
        return hashlib.sha256(json.dumps([self.salt, interpreter, requirements]).encode()).hexdigest()[:32]

    def get(self, key: str) -> Path | None:
        path = self.directory / f"{key}.txt"
        try:
            fresh = time.time() - path.stat().st_mtime < self.max_age
        except FileNotFoundError:
            return None
        return path if fresh else None

    def put(self, key: str, pins: Path) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        staged = self.directory / f".{key}.{os.getpid()}"
        shutil.copyfile(pins, staged)
        os.replace(staged, self.directory / f"{key}.txt")


class UvInstaller:
    """Creates one environment and installs into it."""

    def __init__(
        self,
        uv_bin: str,
        env_dir: Path,
        run: RunFn,
        interpreter: str,
        resolutions: ResolutionCache,
        scratch_dir: Path,
        only_binary_unless_cpython: Sequence[str] = (),
    ):
        self.uv_bin = uv_bin
        self.env_dir = env_dir
        self.run = run
        self.interpreter = interpreter
        self.resolutions = resolutions
        self.scratch_dir = scratch_dir
        self.only_binary_unless_cpython = list(only_binary_unless_cpython)

    @property
    def implementation(self) -> str:
        """The environment's Python implementation as its pyvenv.cfg names it (``CPython``, ``PyPy``)."""
        try:
            text = (self.env_dir / "pyvenv.cfg").read_text()
        except OSError:
            return "CPython"
        match = re.search(r"^implementation\s*=\s*(\S+)", text, re.MULTILINE)
        return match[1] if match else "CPython"

    def _install_options(self) -> list[str]:
        """Options of every ``uv pip install`` into this environment: packages other implementations must get as
        wheels (uv then picks their newest release that has one) because their sources need a Rust toolchain."""
        if self.implementation == "CPython" or not self.only_binary_unless_cpython:
            return []
        return ["--only-binary", ",".join(self.only_binary_unless_cpython)]

    @property
    def python(self) -> Path:
        return self.env_dir / "bin" / "python"

    async def create_venv(self, interpreter: str) -> None:
        # relocatable: the environment is built under a temporary name and then renamed into the cache;
        # seeded: the environment has its own pip, so `pip install` in postBuild, a terminal or `%pip` in a
        # notebook installs into it (never into whatever pip the host has on PATH), and `pip list` shows it
        # --no-project: the working directory's pyproject.toml (the service's own checkout) is no business of it
        argv = [self.uv_bin, "venv", "--no-project", "--relocatable", "--seed", "--python", interpreter, str(self.env_dir)]
        result = await self.run(argv, None, {})
        if result.returncode:
            raise LaunchError(f"creating the environment failed: {explain_uv_failure(result.tail)}", 500)

    async def pip_install(self, args: Sequence[str], cwd: Path, what: str = "pip install") -> None:
        failed = await self.try_pip_install(args, cwd)
        if failed is not None:
            raise LaunchError(f"{what} failed: {explain_uv_failure(failed.tail)}", failure_status(failed.tail))

    async def try_pip_install(self, args: Sequence[str], cwd: Path) -> CommandResult | None:
        """``uv pip install args`` into the environment; None when it worked, else the failed command's result."""
        key = self.resolutions.key(args, self.interpreter)
        if key and (pins := self.resolutions.get(key)) and await self._install_pinned_offline(pins, cwd):
            return None
        argv = [self.uv_bin, "pip", "install", "--python", str(self.python), *self._install_options(), *args]
        result = await self.run(argv, cwd, {})
        if result.returncode:
            return result
        if key:
            self.resolutions.put(key, self.pin_installed(self.scratch_dir / "resolution.txt"))
        return None

    async def install_requirements(
        self, requirements: Sequence[str], server: Sequence[str], cwd: Path, what: str = "pip install"
    ) -> None:
        """The repository's requirements together with the notebook server, in one resolution (as in
        repo2docker's environments, which hold both). On failure, find out whose it is: a repository whose
        requirements cannot be installed even alone is told so; otherwise they conflict with the server."""
        failed = await self.try_pip_install([*server, *requirements], cwd)
        if failed is None:
            return
        if requirements and server:
            argv = [self.uv_bin, "pip", "install", "--dry-run", "--python", str(self.python), *self._install_options()]
            argv += requirements
            alone = await self.run(argv, cwd, {})
            if not alone.returncode:
                raise LaunchError(
                    f"{what} failed: the repository's requirements conflict with the notebook server every session "
                    f"needs ({', '.join(server)}): {explain_uv_failure(failed.tail)}",
                    400,
                )
            failed = alone
        raise LaunchError(f"{what} failed: {explain_uv_failure(failed.tail)}", failure_status(failed.tail))

    async def add_optional(self, groups: Mapping[str, Sequence[str]], cwd: Path) -> dict[str, str]:
        """Add each group of optional packages that fits the environment as it is, every installed version
        held (so the repository's resolution never moves); returns group -> why it was left out."""
        groups = {name: list(reqs) for name, reqs in groups.items() if reqs}
        if not groups:
            return {}
        everything = [req for reqs in groups.values() for req in reqs]
        # the usual case: everything fits, one resolution
        if await self.try_pip_install(["-c", str(self._held()), *everything], cwd) is None:
            return {}
        left_out = {}
        for name, reqs in groups.items():
            failed = await self.try_pip_install(["-c", str(self._held()), *reqs], cwd)
            if failed is not None:
                left_out[name] = explain_uv_failure(failed.tail)
        return left_out

    def _held(self) -> Path:
        return self.pin_installed(self.scratch_dir / "installed-constraints.txt")

    async def _install_pinned_offline(self, pins: Path, cwd: Path) -> bool:
        """Install a recent equal resolution from uv's cache alone; False if the cache cannot serve it."""
        argv = [self.uv_bin, "pip", "install", "--python", str(self.python), "--offline", "--no-deps", "-r", str(pins)]
        return (await self.run(argv, cwd, {})).returncode == 0

    async def sync_project(self, project_dir: Path) -> None:
        """Install a uv project exactly as ``uv.lock`` pins it (non-editable: the tree is moved after the build)."""
        argv = [self.uv_bin, "sync", "--frozen", "--no-editable", "--python", str(self.python)]
        result = await self.run(argv, project_dir, {"UV_PROJECT_ENVIRONMENT": str(self.env_dir)})
        if result.returncode:
            raise LaunchError(f"installing uv.lock failed: {explain_uv_failure(result.tail)}", 500)

    @property
    def site_packages(self) -> Path:
        # lib/python3.X/ for CPython, lib/pypy3.X/ for PyPy
        return next(self.env_dir.glob("lib/*/site-packages"))

    def pin_installed(self, path: Path) -> Path:
        """Write the installed ``name==version`` pins to ``path`` (constraints for later installs)."""
        pins = sorted(
            f"{dist.metadata['Name']}=={dist.version}"
            for dist in importlib.metadata.distributions(path=[str(self.site_packages)])
        )
        path.write_text("\n".join(pins) + "\n")
        return path

    async def install_session_packages(self, packages: Sequence[str], constraints: Path, cwd: Path) -> None:
        """Add the notebook server without moving any version the repository locked."""
        if not packages:
            return
        failed = await self.try_pip_install(["-c", str(constraints), *packages], cwd)
        if failed is not None:
            raise LaunchError(
                f"installing the notebook server ({', '.join(packages)}) failed: it does not fit the locked versions: "
                f"{explain_uv_failure(failed.tail)}",
                failure_status(failed.tail),
            )


_MISSING = re.compile(r"Because (\S+) was not found in the package registry")
_NO_VERSION = re.compile(r"Because there is no version of (\S+?)(==|>=|<=|~=|!=|>|<)(\S+?) and")
#: uv's last "error:"/"cause:" message, up to its hints; lines are joined first (uv wraps long messages)
_LAST_MESSAGE = re.compile(r".*(?:error:|cause:|Caused by:|×|╰─▶)\s*(.+?)(?:\s+(?:help|hint):.*)?$")
MAX_REASON = 300
#: uv's words for "these requirements cannot be satisfied" (the repository's to fix, not the service's)
_UNSATISFIABLE = re.compile(r"No solution found|unsatisfiable|not found in the package registry|no version of")


def failure_status(tail: Sequence[str]) -> int:
    """400 when the requirements cannot be satisfied (the repository's to change), else 500."""
    return 400 if _UNSATISFIABLE.search(" ".join(line.strip() for line in tail)) else 500


def explain_uv_failure(tail: Sequence[str]) -> str:
    """One line naming the cause of a failed uv command, from the last lines of its output."""
    text = " ".join(line.strip() for line in tail if line.strip())
    if match := _MISSING.search(text):
        return f"No matching distribution for {match[1]!r} (no such package on the package index)"
    if match := _NO_VERSION.search(text):
        return f"No matching distribution for '{match[1]}{match[2]}{match[3]}' (no such version on the package index)"
    match = _LAST_MESSAGE.match(text)
    reason = match[1] if match else (text or "no output")
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"
