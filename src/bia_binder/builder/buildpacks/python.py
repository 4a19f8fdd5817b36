"""pip-style repositories: ``requirements.txt``, ``setup.py``/``pyproject.toml``, or nothing at all (the default)."""

from __future__ import annotations

from .base import BuildContext, BuildPack, RepoFiles


def own_package_args(repo: RepoFiles) -> list[str]:
    """Install the repository itself when it is a package (non-editable: the tree moves after the build)."""
    return [str(repo.root)] if repo.has_own_package else []


class PythonBuildPack(BuildPack):
    name = "python"

    def detect(self, repo: RepoFiles) -> bool:
        return repo.has("requirements.txt") or repo.has_own_package or repo.asks_for_python

    async def install(self, ctx: BuildContext) -> None:
        args = []
        if ctx.repo.has("requirements.txt"):
            args += ["-r", str(ctx.repo.path("requirements.txt"))]
        args += own_package_args(ctx.repo)
        if args or ctx.session_packages:
            await ctx.uv.install_requirements(args, ctx.session_packages, cwd=ctx.repo.root)


class DefaultBuildPack(PythonBuildPack):
    """No configuration at all: the session packages only (repo2docker's default environment)."""

    def detect(self, repo: RepoFiles) -> bool:
        return True
