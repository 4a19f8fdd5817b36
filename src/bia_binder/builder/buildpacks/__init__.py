"""Buildpacks in repo2docker's order of precedence: the first whose ``detect`` matches builds the repository."""

from __future__ import annotations

from .base import BuildContext, BuildPack, ContainerOnlyBuildPack, RepoFiles, needs_container
from .conda import CondaBuildPack
from .container import DockerfileBuildPack, JuliaBuildPack, NixBuildPack, RBuildPack
from .locks import PylockBuildPack, UvLockBuildPack
from .pipfile import PipfileBuildPack
from .pixi import PixiBuildPack
from .python import DefaultBuildPack, PythonBuildPack

BUILDPACKS: tuple[type[BuildPack], ...] = (
    DockerfileBuildPack,
    JuliaBuildPack,
    NixBuildPack,
    RBuildPack,
    PixiBuildPack,
    CondaBuildPack,
    PipfileBuildPack,
    UvLockBuildPack,
    PylockBuildPack,
    PythonBuildPack,
    DefaultBuildPack,
)


def detect_buildpack(repo: RepoFiles) -> BuildPack:
    return next(pack for pack in (cls() for cls in BUILDPACKS) if pack.detect(repo))


__all__ = [
    "BUILDPACKS",
    "BuildContext",
    "BuildPack",
    "ContainerOnlyBuildPack",
    "RepoFiles",
    "detect_buildpack",
    "needs_container",
]
