"""Configurations only a container image can provide: in local mode they fail naming the container builder."""

from __future__ import annotations

from .base import ContainerOnlyBuildPack, RepoFiles


class DockerfileBuildPack(ContainerOnlyBuildPack):
    name = "dockerfile"
    needs = "A Dockerfile"

    def detect(self, repo: RepoFiles) -> bool:
        return repo.has("Dockerfile")


class JuliaBuildPack(ContainerOnlyBuildPack):
    name = "julia"
    needs = "A Julia environment (Project.toml / REQUIRE)"

    def detect(self, repo: RepoFiles) -> bool:
        return repo.has("Project.toml") or repo.has("JuliaProject.toml") or repo.has("REQUIRE")


class NixBuildPack(ContainerOnlyBuildPack):
    name = "nix"
    needs = "A Nix environment (default.nix)"

    def detect(self, repo: RepoFiles) -> bool:
        return repo.has("default.nix")


class RBuildPack(ContainerOnlyBuildPack):
    name = "r"
    needs = "An R environment (runtime.txt r-..., DESCRIPTION)"

    def detect(self, repo: RepoFiles) -> bool:
        description_at_root = repo.binder_dir is None and (repo.root / "DESCRIPTION").is_file()
        return repo.runtime.startswith("r-") or description_at_root
