"""What every buildpack shares: where a repository's configuration lives, and the build context.

Detection follows repo2docker's contract: a ``binder/`` or ``.binder/`` folder, when present, is the
only place configuration files are read (both present is an error); otherwise the repository root.
Package metadata of the repository itself (``setup.py``, ``pyproject.toml``) is only honoured at the
root when there is no binder folder, as in repo2docker.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ...events import LaunchError

if TYPE_CHECKING:
    from ..conda import CondaInstaller
    from ..uv import UvInstaller

BINDER_DIRS = ("binder", ".binder")


class RepoFiles:
    """The configuration files of one checked-out repository, read with repo2docker's rules."""

    def __init__(self, root: Path):
        self.root = root
        present = [name for name in BINDER_DIRS if (root / name).is_dir()]
        if len(present) > 1:
            raise LaunchError("the repository has both a 'binder' and a '.binder' folder: keep only one of them", 400)
        self.binder_dir: Path | None = root / present[0] if present else None
        self.config_dir = self.binder_dir or root

    def path(self, name: str) -> Path:
        return self.config_dir / name

    def has(self, name: str) -> bool:
        return self.path(name).exists()

    def read(self, name: str) -> str:
        return self.path(name).read_text(encoding="utf-8", errors="replace")

    @property
    def has_own_package(self) -> bool:
        """The repository is itself an installable Python package (only when there is no binder folder).

        A ``pyproject.toml`` counts when it describes a project; one holding only tool settings does not.
        """
        if self.binder_dir is not None:
            return False
        if (self.root / "setup.py").is_file():
            return True
        pyproject = self.root / "pyproject.toml"
        try:
            tables = tomllib.loads(pyproject.read_text(encoding="utf-8")) if pyproject.is_file() else {}
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            raise LaunchError("pyproject.toml is not valid TOML: fix its syntax", 400) from None
        return "project" in tables or "build-system" in tables

    @property
    def runtime(self) -> str:
        """The first line of ``runtime.txt`` (e.g. ``python-3.11``, ``r-4.3-2024-01-01``), or ``""``."""
        if not self.has("runtime.txt"):
            return ""
        lines = self.read("runtime.txt").strip().splitlines()
        return lines[0].strip() if lines else ""

    @property
    def asks_for_python(self) -> bool:
        """``runtime.txt`` names a Python (``python-3`` included)."""
        return self.runtime.startswith("python-")

    @property
    def runtime_python(self) -> str | None:
        """The ``X.Y`` that ``runtime.txt`` asks for; None when it names none, or just ``python-3``
        (repo2docker's "any Python 3": the default one)."""
        runtime = self.runtime
        if not runtime.startswith("python-") or runtime == "python-3":
            return None
        match = re.fullmatch(r"python-(\d+)\.(\d+)(\.\d+)?", runtime)
        if not match or match[1] != "3":
            raise LaunchError(
                f"runtime.txt says {runtime!r}: write 'python-3.X' (for example python-3.11) or 'python-3'", 400
            )
        return f"{match[1]}.{match[2]}"

    @property
    def environment_file(self) -> str | None:
        """``environment.yml``, or ``environment.yaml`` as repo2docker also accepts, if present."""
        return next((name for name in ("environment.yml", "environment.yaml") if self.has(name)), None)


@dataclass
class BuildContext:
    """What a buildpack's install step works with."""

    repo: RepoFiles  # read with the rules above; ``repo.root`` is the copy inside the entry being built
    interpreter: str  # the Python the environment is created with
    uv: UvInstaller  # installs into the environment being built
    conda: CondaInstaller  # conda solver and installer for the same environment
    session_packages: list[str]  # the notebook server every session needs (jupyterlab, jupyterhub-singleuser)
    scratch_dir: Path  # for generated files (requirements lists, constraints); not published


class BuildPack:
    """One way to build an environment: a detection rule and an install step (repo2docker's model)."""

    name: ClassVar[str] = ""

    def detect(self, repo: RepoFiles) -> bool:
        raise NotImplementedError

    def python_version(self, repo: RepoFiles) -> str | None:
        """The ``X.Y`` interpreter the repository asks for, or None for the builder's default."""
        return repo.runtime_python

    async def create_environment(self, ctx: BuildContext) -> None:
        """Create the environment's prefix with its Python (a relocatable virtual environment)."""
        await ctx.uv.create_venv(ctx.interpreter)

    async def install(self, ctx: BuildContext) -> None:
        """Install the repository's packages and the session packages into the new environment."""
        raise NotImplementedError


class ContainerOnlyBuildPack(BuildPack):
    """A configuration only a container image can provide: the local builder refuses it (see needs_container)."""

    #: what needs the container, for the error message
    needs: ClassVar[str] = ""


class NeedsContainer(LaunchError):
    """The local builder cannot make this environment; the launch service may hand it to the container builder."""

    def __init__(self, what: str):
        super().__init__(
            f"{what} needs a container image, which the local builder cannot make: the operator can turn on the "
            "container builder (repo2docker on Docker or Podman) with c.BinderService.container_builds = 'fallback'",
            400,
        )
        self.what = what


def needs_container(what: str) -> NeedsContainer:
    return NeedsContainer(what)
