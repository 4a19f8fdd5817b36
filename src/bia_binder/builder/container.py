"""The container builder: repo2docker, for what the local builder cannot do (Dockerfile, apt, R, Julia, nix).

On a host with Docker or Podman it runs repo2docker's own image against the engine's socket; on
Kubernetes it describes a build pod (BinderHub's model), which
:class:`bia_binder.builder.kubernetes.KubernetesBuilder` creates and follows through the API.
The result is an image name, used by a container spawner instead of an environment directory.
The launch service uses it when ``c.BinderService.container_builds`` is ``fallback`` or ``always``.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from traitlets import Dict, Enum, Int, Unicode
from traitlets.config import LoggingConfigurable

from ..events import LaunchError
from .base import LogFn, cache_key
from .process import run_streaming

#: Docker and Podman sockets repo2docker talks to (Podman serves the Docker API on its socket)
DEFAULT_SOCKETS = {"docker": "/var/run/docker.sock", "podman": "/run/podman/podman.sock"}


class ContainerBuilder(LoggingConfigurable):
    engine = Enum(
        ["docker", "podman", "kubernetes"],
        default_value="docker",
        config=True,
        help="Where repo2docker runs: a local Docker or Podman engine, or build pods on Kubernetes.",
    )
    repo2docker_image = Unicode(
        "quay.io/jupyterhub/repo2docker:2024.07.0",
        config=True,
        help="Container image of repo2docker used for builds (pin a tag: it decides what images contain).",
    )
    image_prefix = Unicode(
        "bia-binder-env-",
        config=True,
        help="Prefix of built image names, e.g. 'registry.example.org/binder/env-' (images are <prefix><key>).",
    )
    push = Enum(
        ["auto", "always", "never"],
        default_value="auto",
        config=True,
        help="Push built images to their registry: 'auto' pushes on Kubernetes (nodes pull from the registry).",
    )
    engine_socket = Unicode(
        "", config=True, help="Engine socket mounted into the repo2docker container (default: the engine's usual one)."
    )
    namespace = Unicode("binder", config=True, help="Kubernetes namespace of build pods.")
    build_memory_limit = Unicode("4Gi", config=True, help="Memory limit of a build (Kubernetes quantity).")
    build_cpu_limit = Unicode("2", config=True, help="CPU limit of a build (Kubernetes quantity).")
    build_node_selector = Dict(config=True, help="Kubernetes nodeSelector of build pods (e.g. dedicated build nodes).")
    registry_secret = Unicode(
        "", config=True, help="Kubernetes secret with a Docker config.json for pushing (mounted at /root/.docker)."
    )
    build_timeout = Int(3600, config=True, help="Seconds a build pod may run (activeDeadlineSeconds).")

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        #: images this process built: on Kubernetes the only ones known to exist (see image_exists)
        self._built: set[str] = set()

    def cache_key(self, provider: str, ref: str) -> str:
        """The image of a resolved repository: what repo2docker puts in it depends on its own version only."""
        return cache_key("container", provider, ref, self.repo2docker_image)

    def image_name(self, key: str) -> str:
        return f"{self.image_prefix}{key}"

    def describe(self) -> str:
        """For /versions: where builds run."""
        where = "Kubernetes build pods" if self.engine == "kubernetes" else self.engine
        return f"repo2docker ({self.repo2docker_image}) on {where}"

    async def image_exists(self, key: str) -> bool:
        """Whether the image of ``key`` is built already, so a launch can skip the build.

        Docker/Podman: ``<engine> image inspect`` on this host. Kubernetes: the image lives in a
        registry this service does not query, so only images built by this process count; after a
        restart the first launch of each ref builds again (repo2docker then reuses the node's layers).
        """
        if self.engine == "kubernetes":
            return key in self._built
        try:
            proc = await asyncio.create_subprocess_exec(
                self.engine, "image", "inspect", self.image_name(key),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        except FileNotFoundError:
            raise self._engine_missing() from None
        return await proc.wait() == 0

    def _engine_missing(self) -> LaunchError:
        return LaunchError(
            f"the container builder needs {self.engine}, which is not installed here: install it or set "
            "c.ContainerBuilder.engine",
            500,
        )

    def should_push(self) -> bool:
        return self.push == "always" or (self.push == "auto" and self.engine == "kubernetes")

    def repo2docker_args(self, repo_url: str, ref: str, key: str) -> list[str]:
        """repo2docker's command line: build ``repo_url`` at ``ref`` into the image for ``key``, without running it."""
        if not re.fullmatch(r"[0-9A-Za-z_][0-9A-Za-z._/-]*", ref):  # never an option, never shell syntax
            raise LaunchError(f"ref {ref!r} is not a plain git ref or commit: use a branch, tag or commit sha", 400)
        args = ["jupyter-repo2docker", "--no-run", "--ref", ref, "--image-name", self.image_name(key)]
        if self.should_push():
            args.append("--push")
        return [*args, "--", repo_url]

    def engine_command(self, repo_url: str, ref: str, key: str) -> list[str]:
        """The command that builds on a Docker/Podman host (repo2docker in its container, on the engine's socket)."""
        if self.engine == "kubernetes":
            raise ValueError("on Kubernetes builds run as pods: use build_pod_manifest()")
        socket = self.engine_socket or DEFAULT_SOCKETS[self.engine]
        return [
            self.engine, "run", "--rm",
            "--volume", f"{socket}:/var/run/docker.sock",
            "--label", f"bia-binder.build={key}",
            self.repo2docker_image,
            *self.repo2docker_args(repo_url, ref, key),
        ]  # fmt: skip

    def build_pod_manifest(self, repo_url: str, ref: str, key: str) -> dict[str, Any]:
        """A Kubernetes build pod (as BinderHub runs them): repo2docker against the node's container engine."""
        socket = self.engine_socket or DEFAULT_SOCKETS["docker"]
        volumes: list[dict[str, Any]] = [{"name": "engine-socket", "hostPath": {"path": socket, "type": "Socket"}}]
        mounts: list[dict[str, Any]] = [{"name": "engine-socket", "mountPath": "/var/run/docker.sock"}]
        if self.registry_secret:
            # a kubernetes.io/dockerconfigjson Secret: its .dockerconfigjson is docker's config.json
            volumes.append(
                {
                    "name": "registry-credentials",
                    "secret": {
                        "secretName": self.registry_secret,
                        "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                    },
                }
            )
            mounts.append({"name": "registry-credentials", "mountPath": "/root/.docker", "readOnly": True})
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"build-{key[:40]}".lower(),
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/name": "bia-binder", "component": "build", "bia-binder.build": key[:63]},
                "annotations": {"bia-binder.repo-url": repo_url, "bia-binder.ref": ref},
            },
            "spec": {
                "restartPolicy": "Never",
                # repositories' code runs here: no credential for the Kubernetes API
                "automountServiceAccountToken": False,
                "activeDeadlineSeconds": self.build_timeout,
                "nodeSelector": dict(self.build_node_selector),
                "containers": [
                    {
                        "name": "build",
                        "image": self.repo2docker_image,
                        "args": self.repo2docker_args(repo_url, ref, key),
                        "env": [{"name": "DOCKER_CONFIG", "value": "/root/.docker"}],
                        "volumeMounts": mounts,
                        "resources": {
                            "limits": {"memory": self.build_memory_limit, "cpu": self.build_cpu_limit},
                            "requests": {"memory": self.build_memory_limit, "cpu": "0.5"},
                        },
                    }
                ],
                "volumes": volumes,
            },
        }

    async def build(self, repo_url: str, ref: str, key: str, log: LogFn) -> str:
        """Build on the local engine, streaming repo2docker's log; the image name."""
        if self.engine == "kubernetes":
            raise LaunchError(
                "ContainerBuilder runs repo2docker on Docker or Podman only: on Kubernetes, create build pods with "
                "bia_binder.builder.kubernetes.KubernetesBuilder (the binder service does when "
                "c.ContainerBuilder.engine = 'kubernetes')",
                501,
            )
        command = self.engine_command(repo_url, ref, key)
        try:
            result = await asyncio.wait_for(run_streaming(command, log), self.build_timeout)
        except FileNotFoundError:
            raise self._engine_missing() from None
        except TimeoutError:
            raise LaunchError(
                f"the container build took longer than {self.build_timeout} s and was stopped "
                "(limit: c.ContainerBuilder.build_timeout)",
                500,
            ) from None
        if result.returncode:
            last = next((line.strip() for line in reversed(result.tail) if line.strip()), "no output")
            raise LaunchError(f"the container build failed (exit status {result.returncode}): {last}", 500)
        self._built.add(key)
        return self.image_name(key)
