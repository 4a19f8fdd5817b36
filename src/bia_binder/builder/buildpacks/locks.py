"""Lock files installed exactly as locked: ``uv.lock`` (with ``pyproject.toml``) and ``pylock.toml`` (PEP 751).

The session packages are added afterwards, constrained to the locked versions, so they never move a pin.
"""

from __future__ import annotations

from .base import BuildContext, BuildPack, RepoFiles


async def add_session_packages(ctx: BuildContext) -> None:
    constraints = ctx.uv.pin_installed(ctx.scratch_dir / "locked-constraints.txt")
    await ctx.uv.install_session_packages(ctx.session_packages, constraints, cwd=ctx.repo.root)


class UvLockBuildPack(BuildPack):
    name = "uv-lock"

    def detect(self, repo: RepoFiles) -> bool:
        return repo.has("uv.lock") and repo.has("pyproject.toml")

    async def install(self, ctx: BuildContext) -> None:
        await ctx.uv.sync_project(ctx.repo.config_dir)
        await add_session_packages(ctx)


class PylockBuildPack(BuildPack):
    name = "pylock"

    def detect(self, repo: RepoFiles) -> bool:
        return repo.has("pylock.toml")

    async def install(self, ctx: BuildContext) -> None:
        await ctx.uv.pip_install(
            ["--preview-features", "pylock", "-r", str(ctx.repo.path("pylock.toml"))],
            cwd=ctx.repo.config_dir,
            what="installing pylock.toml",
        )
        await add_session_packages(ctx)
