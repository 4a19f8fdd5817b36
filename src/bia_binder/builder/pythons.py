"""Python versions the host lacks: uv's managed Python, installed from a source the operator configures.

A repository may ask for a Python the host does not have (``runtime.txt`` ``python-3.9``,
``environment.yml``'s ``python=3.9``). uv can install one ("managed Python": python-build-standalone
builds for CPython, upstream builds for PyPy), from a mirror (``UV_PYTHON_INSTALL_MIRROR``,
``UV_PYPY_INSTALL_MIRROR``) or from a downloads list of the operator's own
(``UV_PYTHON_DOWNLOADS_JSON_URL``: the same JSON as uv's built-in list, each entry with its URL and
sha256). Nothing is downloaded unless one of them is configured: by default a public service
fetches no interpreter from the internet on a stranger's request.

Installations go into one directory of the service's data dir (``EnvBuilder.python_install_dir``).
They are made by the service itself, never inside a build's sandbox: a build runs a stranger's code
and must not be able to change an interpreter other repositories' environments link to. Builds
and sessions whose environment links to one see that directory read-only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..events import LaunchError
from .base import LogFn
from .process import run_streaming

#: implementations uv installs as managed Python (`uv python install <implementation>@X.Y`)
KNOWN_IMPLEMENTATIONS = ("cpython", "pypy", "graalpy")
#: uv's answer when the source has no build of the request (the source is fine; it lacks this version)
_NO_DOWNLOAD = re.compile(r"No download found for request")
#: seconds a look-up of installed interpreters may take (uv inspects each one once, then caches it)
LOOKUP_TIMEOUT = 60


@dataclass(frozen=True)
class ManagedPython:
    implementation: str  # "cpython", "pypy"
    version: str  # "3.9.16"
    path: str  # the interpreter's executable


@dataclass
class ManagedPythons:
    """uv's managed Python installations in ``install_dir``, and how to install more."""

    uv_bin: str
    install_dir: Path
    #: the build's allow-listed environment (environ.build_environ), plus uv's cache
    environ: Mapping[str, str]
    implementations: Sequence[str] = ("cpython",)
    downloads_json_url: str = ""
    mirror: str = ""
    pypy_mirror: str = ""
    _installed: list[ManagedPython] | None = field(default=None, repr=False)

    @property
    def source_configured(self) -> bool:
        return bool(self.downloads_json_url or self.mirror or self.pypy_mirror)

    def uv_environ(self) -> dict[str, str]:
        env = {
            name: value
            for name, value in self.environ.items()
            # ours decide where from and where to; none of the service's own uv settings of the kind
            if not name.startswith(("UV_PYTHON_", "UV_PYPY_", "UV_GRAALPY_"))
        }
        env["UV_PYTHON_INSTALL_DIR"] = str(self.install_dir)
        if self.downloads_json_url:
            env["UV_PYTHON_DOWNLOADS_JSON_URL"] = self.downloads_json_url
        if self.mirror:
            env["UV_PYTHON_INSTALL_MIRROR"] = self.mirror
        if self.pypy_mirror:
            env["UV_PYPY_INSTALL_MIRROR"] = self.pypy_mirror
        return env

    def installed(self) -> list[ManagedPython]:
        """What ``install_dir`` holds (uv's own listing; empty when the directory does not exist yet)."""
        if self._installed is None:
            self._installed = self._list_installed() if self.install_dir.is_dir() else []
        return self._installed

    def _list_installed(self) -> list[ManagedPython]:
        argv = [self.uv_bin, "python", "list", "--only-installed", "--managed-python", "--output-format", "json"]
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, env=self.uv_environ(), cwd=self.install_dir,
                timeout=LOOKUP_TIMEOUT, check=True,
            )  # fmt: skip
            entries = json.loads(result.stdout or "[]")
        except (OSError, subprocess.SubprocessError, ValueError):
            return []
        # paths are printed relative to the working directory: the install directory here
        return [
            ManagedPython(e["implementation"], e["version"], str((self.install_dir / e["path"]).resolve(strict=False)))
            for e in entries
            if e.get("implementation") and e.get("version") and e.get("path")
        ]

    def find(self, version: str) -> ManagedPython | None:
        """An installed interpreter of ``version`` (X.Y), the first of ``implementations`` that has one."""
        return next(
            (python for i in self.implementations if (python := self.find_exactly(i, version))), None
        )

    def describe_installed(self) -> str:
        names = sorted({f"{p.implementation} {_minor(p.version)}" for p in self.installed()})
        return ", ".join(names)

    async def install(self, version: str, log: LogFn) -> ManagedPython | None:
        """Install Python ``version`` from the configured source, trying ``implementations`` in order;
        None when the source has it in none of them. A source that fails is the service's error (502)."""
        for implementation in self.implementations:
            request = f"{implementation}@{version}"
            log(f"Installing Python {version} ({implementation}) from the configured source of Python builds\n")
            self.install_dir.mkdir(parents=True, exist_ok=True)
            # --no-bin: into this directory only, no executable linked into the service user's ~/.local/bin
            argv = [self.uv_bin, "python", "install", "--no-bin", request]
            result = await run_streaming(argv, log, env=self.uv_environ())
            self._installed = None
            if result.returncode == 0:
                if python := self.find_exactly(implementation, version):
                    return python
                raise LaunchError(f"uv installed {request} but it is not in {self.install_dir}", 500)
            tail = " ".join(line.strip() for line in result.tail if line.strip())
            if _NO_DOWNLOAD.search(tail):
                log(f"The source has no {implementation} {version}\n")
                continue
            from .uv import explain_uv_failure

            raise LaunchError(
                f"installing Python {version} ({implementation}) from the configured source failed: "
                f"{explain_uv_failure(result.tail)}",
                502,
            )
        return None

    def find_exactly(self, implementation: str, version: str) -> ManagedPython | None:
        return next(
            (p for p in self.installed() if p.implementation == implementation and _minor(p.version) == version), None
        )

    def owns(self, interpreter: str) -> bool:
        """Whether ``interpreter`` is one of these installations (its environments need ``install_dir`` shown)."""
        path = Path(os.path.abspath(interpreter))
        return path.is_relative_to(self.install_dir) or Path(interpreter).resolve().is_relative_to(
            self.install_dir.resolve()
        )


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def validate_implementations(implementations: Sequence[str]) -> list[str]:
    unknown = [i for i in implementations if i not in KNOWN_IMPLEMENTATIONS]
    if unknown or not implementations:
        raise ValueError(
            f"python_implementations must list some of {', '.join(KNOWN_IMPLEMENTATIONS)} (got {list(implementations)})"
        )
    return list(implementations)
