"""The emulated cluster for the build and launch tests: API, kubelet, registry, a git server, the repo2docker stand-in."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from bia_binder.builder.container import ContainerBuilder
from tests.deploy.cluster import Cluster, Kubelet, Registry
from tests.gitserver import GitServer
from tests.stack import PROJECT_ROOT

STANDIN = Path(__file__).with_name("repo2docker_standin.py")


@dataclass
class EmulatedCluster:
    cluster: Cluster
    registry: Registry
    kubelet: Kubelet
    git: GitServer
    workdir: Path

    @property
    def image_prefix(self) -> str:
        return f"{self.registry.host}/bia-binder/env-"


async def start_emulated_cluster(workdir: Path) -> EmulatedCluster:
    cluster = Cluster().start()
    registry = Registry(workdir / "registry").start()
    # the repo2docker image: its files are the stand-in, which builds with bia-binder and pushes to the registry
    image_bin = workdir / "repo2docker-image" / "bin"
    image_bin.mkdir(parents=True)
    entry = image_bin / "jupyter-repo2docker"
    entry.write_text(f'#!/bin/sh\nexec {sys.executable} {STANDIN} "$@"\n')
    entry.chmod(0o755)
    registry.add(
        ContainerBuilder().repo2docker_image,
        [str(image_bin)],
        env={
            "BIA_TEST_REGISTRY": str(registry.root),
            "BIA_TEST_BUILD_DATA": str(workdir / "build-data"),
            "BIA_TEST_BIA_BINDER": str(Path(sys.executable).with_name("bia-binder")),
        },
    )
    # what a node's containers inherit: this machine's settings (proxies, certificates, uv's cache), no hub's
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "KUBERNETES_", "PYTEST_"))}
    base_env.setdefault("UV_CACHE_DIR", str(PROJECT_ROOT / ".cache" / "uv"))
    kubelet = Kubelet(cluster, registry, workdir / "pods", base_env)
    git = GitServer(workdir / "git").start()
    return EmulatedCluster(cluster, registry, kubelet, git, workdir)


async def stop_emulated_cluster(emulated: EmulatedCluster) -> None:
    await emulated.kubelet.stop()
    emulated.git.stop()
    emulated.registry.stop()
    emulated.cluster.stop()
