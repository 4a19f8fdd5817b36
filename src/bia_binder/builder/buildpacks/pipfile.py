"""Pipenv repositories: ``Pipfile.lock`` installed exactly (default and develop sections), ``Pipfile`` alone resolved.

Pipenv itself is not used: uv installs the same requirement lines much faster, and a Pipfile's
format is small (TOML / JSON entries of version, extras, markers, path or git).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import tomllib

from ...events import LaunchError
from .base import BuildContext, BuildPack, RepoFiles
from .locks import add_session_packages


def requirement_line(name: str, entry: Any, base_dir: Path) -> str:
    """One requirements.txt line for a Pipfile / Pipfile.lock entry."""
    if isinstance(entry, str):
        return name if entry.strip() in ("", "*") else f"{name}{entry.strip()}"
    if not isinstance(entry, dict):
        raise LaunchError(f"Pipfile entry {name!r} = {entry!r} is not understood: use a version string or a table", 400)
    extras = f"[{','.join(entry['extras'])}]" if entry.get("extras") else ""
    if "path" in entry:
        target = str((base_dir / entry["path"]).resolve())
    elif "file" in entry:
        target = f"{name}{extras} @ {entry['file']}"
    elif "git" in entry:
        ref = entry.get("ref") or entry.get("tag") or entry.get("branch")
        target = f"{name}{extras} @ git+{entry['git']}" + (f"@{ref}" if ref else "")
    else:
        version = entry.get("version", "*")
        target = f"{name}{extras}" + ("" if version in ("", "*") else version)
    markers = [entry["markers"]] if entry.get("markers") else []
    markers += [
        f"{key} {value}" for key, value in entry.items() if key in ("sys_platform", "platform_machine", "os_name")
    ]
    return target + (f" ; {' and '.join(markers)}" if markers else "")


def requirement_lines(sections: list[dict[str, Any]], base_dir: Path) -> list[str]:
    return [requirement_line(name, entry, base_dir) for section in sections for name, entry in section.items()]


class PipfileBuildPack(BuildPack):
    name = "pipfile"

    def detect(self, repo: RepoFiles) -> bool:
        return repo.has("Pipfile") or repo.has("Pipfile.lock")

    def python_version(self, repo: RepoFiles) -> str | None:
        if repo.runtime_python:
            return repo.runtime_python
        requested = ""
        if repo.has("Pipfile.lock"):
            requested = self._lock(repo).get("_meta", {}).get("requires", {}).get("python_version", "")
        elif repo.has("Pipfile"):
            requested = self._pipfile(repo).get("requires", {}).get("python_version", "")
        match = re.match(r"(\d+\.\d+)", str(requested))
        return match[1] if match else None

    async def install(self, ctx: BuildContext) -> None:
        repo = ctx.repo
        requirements = ctx.scratch_dir / "pipfile-requirements.txt"
        if repo.has("Pipfile.lock"):
            lock = self._lock(repo)
            lines = requirement_lines([lock.get("default", {}), lock.get("develop", {})], repo.config_dir)
            requirements.write_text("\n".join(lines) + "\n")
            # --no-deps: the lock already lists every package; nothing outside it may come in
            await ctx.uv.pip_install(
                ["--no-deps", "-r", str(requirements)], cwd=repo.config_dir, what="installing Pipfile.lock"
            )
            await add_session_packages(ctx)
        else:
            pipfile = self._pipfile(repo)
            lines = requirement_lines([pipfile.get("packages", {}), pipfile.get("dev-packages", {})], repo.config_dir)
            requirements.write_text("\n".join(lines) + "\n")
            await ctx.uv.install_requirements(
                ["-r", str(requirements)], ctx.session_packages, cwd=repo.config_dir, what="installing Pipfile"
            )

    @staticmethod
    def _lock(repo: RepoFiles) -> dict[str, Any]:
        try:
            return json.loads(repo.read("Pipfile.lock"))
        except ValueError as e:
            raise LaunchError(f"Pipfile.lock is not valid JSON ({e}): regenerate it with 'pipenv lock'", 400) from None

    @staticmethod
    def _pipfile(repo: RepoFiles) -> dict[str, Any]:
        try:
            return tomllib.loads(repo.read("Pipfile"))
        except tomllib.TOMLDecodeError as e:
            raise LaunchError(f"Pipfile is not valid TOML ({e}): fix its syntax", 400) from None
