"""``environment.yml``: conda environments.

An environment whose conda part asks only for ``python`` (optionally versioned) and ``pip`` takes the
fast Python path: its ``pip:`` section is installed with uv. Other conda packages are solved and
installed with rattler into the same prefix, next to the host Python's virtual environment; packages
that need conda's own Python are refused with a clear message (not supported by the local builder).
With a ``setup.py``/``pyproject.toml`` next to it, the repository's own package is installed too
(repo2docker issue #1265).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from ...events import LaunchError
from .base import BuildContext, BuildPack, RepoFiles
from .python import own_package_args

FAST_PATH_PACKAGES = {"python", "pip"}
_CONDA_SPEC = re.compile(r"^\s*(?:[\w.-]+::)?([A-Za-z0-9_.-]+)\s*(.*)$")


def read_environment_yml(repo: RepoFiles) -> dict[str, Any]:
    try:
        spec = yaml.safe_load(repo.read(repo.environment_file or "environment.yml")) or {}
    except yaml.YAMLError as e:
        raise LaunchError(
            f"environment.yml is not valid YAML ({str(e).splitlines()[0]}): fix its syntax", 400
        ) from None
    if not isinstance(spec, dict) or not isinstance(spec.get("dependencies", []), list):
        raise LaunchError("environment.yml must be a mapping with a 'dependencies' list", 400)
    return spec


def conda_specs(spec: dict[str, Any]) -> dict[str, str]:
    """Conda package name -> version constraint (``""`` when unconstrained)."""
    specs: dict[str, str] = {}
    for dep in spec.get("dependencies") or []:
        if isinstance(dep, str) and (match := _CONDA_SPEC.match(dep)):
            specs[match[1].lower()] = match[2].strip()
    return specs


def pip_requirements(spec: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for dep in spec.get("dependencies") or []:
        if isinstance(dep, dict) and isinstance(dep.get("pip"), list):
            lines += [str(line) for line in dep["pip"]]
    return lines


def python_minor(constraint: str) -> str | None:
    """``X.Y`` from a conda python constraint such as ``=3.11``, ``==3.11.*``, ``3.11.4``."""
    match = re.match(r"^(?:==?)?\s*(\d+\.\d+)", constraint)
    return match[1] if match else None


class CondaBuildPack(BuildPack):
    name = "conda"

    def detect(self, repo: RepoFiles) -> bool:
        return repo.environment_file is not None

    def python_version(self, repo: RepoFiles) -> str | None:
        return python_minor(conda_specs(read_environment_yml(repo)).get("python", "")) or repo.runtime_python

    async def create_environment(self, ctx: BuildContext) -> None:
        await super().create_environment(ctx)
        spec = read_environment_yml(ctx.repo)
        specs = [
            dep
            for dep in spec.get("dependencies") or []
            if isinstance(dep, str) and _package_name(dep) not in FAST_PATH_PACKAGES
        ]
        if specs:
            channels = [str(c) for c in spec.get("channels") or ["conda-forge"]]
            await install_conda_packages(ctx, await ctx.conda.solve(channels, specs))

    async def install(self, ctx: BuildContext) -> None:
        spec = read_environment_yml(ctx.repo)
        requirements = ctx.scratch_dir / "environment-pip.txt"
        requirements.write_text("\n".join(pip_requirements(spec)) + "\n")
        args = ["-r", str(requirements), *own_package_args(ctx.repo)]
        await ctx.uv.install_requirements(
            args, ctx.session_packages, cwd=ctx.repo.config_dir, what="installing environment.yml's pip packages"
        )


async def install_conda_packages(ctx: BuildContext, records: list) -> None:
    """Install solved or locked conda packages into the environment, next to its (host) Python."""
    needs_python = sorted({r.name.normalized for r in records} & FAST_PATH_PACKAGES)
    if needs_python:
        raise LaunchError(
            f"the conda packages need conda's own {needs_python[0]}, which the local builder does not install: "
            "list Python packages as pip/PyPI dependencies, or use the container builder",
            400,
        )
    await ctx.conda.install(records)


def _package_name(conda_spec: str) -> str:
    match = _CONDA_SPEC.match(conda_spec)
    return match[1].lower() if match else conda_spec
