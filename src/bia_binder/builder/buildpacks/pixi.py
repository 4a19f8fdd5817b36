"""pixi workspaces: ``pixi.lock`` installed exactly as locked, or ``pixi.toml`` solved (conda with rattler, PyPI with uv)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomllib

from ...events import LaunchError
from .base import BuildContext, BuildPack, RepoFiles
from .conda import FAST_PATH_PACKAGES, install_conda_packages, python_minor
from .locks import add_session_packages


def read_manifest(repo: RepoFiles) -> dict[str, Any]:
    if not repo.has("pixi.toml"):
        return {}
    try:
        return tomllib.loads(repo.read("pixi.toml"))
    except tomllib.TOMLDecodeError as e:
        raise LaunchError(f"pixi.toml is not valid TOML ({e}): fix its syntax", 400) from None


def conda_spec(name: str, value: Any) -> str:
    version = value.get("version", "*") if isinstance(value, dict) else str(value)
    return name if version.strip() in ("", "*") else f"{name} {version.strip()}"


def pypi_requirement(name: str, value: Any, base_dir: Path) -> str:
    if isinstance(value, dict):
        if "path" in value:
            return str((base_dir / value["path"]).resolve())
        extras = f"[{','.join(value['extras'])}]" if value.get("extras") else ""
        value = f"{extras}{value.get('version', '')}"
    value = str(value).strip()
    return name if value in ("", "*") else f"{name}{value}"


class PixiBuildPack(BuildPack):
    name = "pixi"

    def detect(self, repo: RepoFiles) -> bool:
        return repo.has("pixi.toml") or repo.has("pixi.lock")

    def python_version(self, repo: RepoFiles) -> str | None:
        python = read_manifest(repo).get("dependencies", {}).get("python")
        constraint = python.get("version", "") if isinstance(python, dict) else str(python or "")
        return python_minor(constraint.strip()) or repo.runtime_python

    async def create_environment(self, ctx: BuildContext) -> None:
        await super().create_environment(ctx)
        if ctx.repo.has("pixi.lock"):
            records, _ = ctx.conda.read_lock(ctx.repo.path("pixi.lock"))
        else:
            manifest = read_manifest(ctx.repo)
            specs = [
                conda_spec(name, value)
                for name, value in manifest.get("dependencies", {}).items()
                if name not in FAST_PATH_PACKAGES
            ]
            if not specs:
                return
            workspace = manifest.get("workspace") or manifest.get("project") or {}
            records = await ctx.conda.solve([str(c) for c in workspace.get("channels") or ["conda-forge"]], specs)
        await install_conda_packages(ctx, records)

    async def install(self, ctx: BuildContext) -> None:
        requirements = ctx.scratch_dir / "pixi-pypi.txt"
        if ctx.repo.has("pixi.lock"):
            _, locked = ctx.conda.read_lock(ctx.repo.path("pixi.lock"))
            if locked:
                requirements.write_text("\n".join(locked) + "\n")
                await ctx.uv.pip_install(
                    ["--no-deps", "-r", str(requirements)],
                    cwd=ctx.repo.config_dir,
                    what="installing pixi.lock's PyPI packages",
                )
            await add_session_packages(ctx)
            return
        pypi = read_manifest(ctx.repo).get("pypi-dependencies", {})
        requirements.write_text("\n".join(pypi_requirement(n, v, ctx.repo.config_dir) for n, v in pypi.items()) + "\n")
        await ctx.uv.install_requirements(
            ["-r", str(requirements)],
            ctx.session_packages,
            cwd=ctx.repo.config_dir,
            what="installing pixi.toml's PyPI packages",
        )
