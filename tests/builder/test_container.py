"""The container builder's command lines and build pods, checked offline (no engine or cluster needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bia_binder.builder.container import ContainerBuilder
from bia_binder.events import LaunchError

URL, SHA, KEY = "https://github.com/org/repo", "0123456789abcdef0123456789abcdef01234567", "a" * 32


def test_docker_command_runs_repo2docker_on_the_engine_socket() -> None:
    builder = ContainerBuilder(engine="docker", repo2docker_image="quay.io/jupyterhub/repo2docker:2024.07.0")
    assert builder.engine_command(URL, SHA, KEY) == [
        "docker", "run", "--rm",
        "--volume", "/var/run/docker.sock:/var/run/docker.sock",
        "--label", f"bia-binder.build={KEY}",
        "quay.io/jupyterhub/repo2docker:2024.07.0",
        "jupyter-repo2docker", "--no-run", "--ref", SHA, "--image-name", f"bia-binder-env-{KEY}", "--", URL,
    ]  # fmt: skip


def test_podman_uses_its_own_socket_and_can_push() -> None:
    builder = ContainerBuilder(engine="podman", push="always", image_prefix="registry.example.org/binder/env-")
    command = builder.engine_command(URL, "v1.0", KEY)
    assert command[:3] == ["podman", "run", "--rm"]
    assert "/run/podman/podman.sock:/var/run/docker.sock" in command
    assert command[-7:] == [
        "--ref",
        "v1.0",
        "--image-name",
        f"registry.example.org/binder/env-{KEY}",
        "--push",
        "--",
        URL,
    ]


@pytest.mark.parametrize("ref", ["main; rm -rf /", "--help", "$(id)", ""])
def test_refs_that_are_not_refs_are_refused(ref: str) -> None:
    with pytest.raises(LaunchError) as info:
        ContainerBuilder().repo2docker_args(URL, ref, KEY)
    assert info.value.status_code == 400 and "\n" not in info.value.message


def test_build_pod_manifest() -> None:
    builder = ContainerBuilder(
        engine="kubernetes",
        namespace="binder-builds",
        registry_secret="registry-push",
        build_node_selector={"hub.jupyter.org/node-purpose": "build"},
        build_memory_limit="6Gi",
    )
    pod = builder.build_pod_manifest(URL, SHA, KEY)
    assert pod["kind"] == "Pod" and pod["metadata"]["namespace"] == "binder-builds"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", pod["metadata"]["name"]), "a DNS-1123 label"
    assert all(len(value) <= 63 for value in pod["metadata"]["labels"].values())
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] == builder.build_timeout
    assert spec["nodeSelector"] == {"hub.jupyter.org/node-purpose": "build"}
    (container,) = spec["containers"]
    assert container["args"] == builder.repo2docker_args(URL, SHA, KEY)
    assert "--push" in container["args"], "on Kubernetes nodes pull the image from the registry"
    assert container["resources"]["limits"]["memory"] == "6Gi"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert mounts == {"engine-socket": "/var/run/docker.sock", "registry-credentials": "/root/.docker"}
    assert volumes["registry-credentials"]["secret"]["secretName"] == "registry-push"
    assert volumes["engine-socket"]["hostPath"]["type"] == "Socket"


def test_kubernetes_has_no_engine_command() -> None:
    with pytest.raises(ValueError):
        ContainerBuilder(engine="kubernetes").engine_command(URL, SHA, KEY)


def write_engine(bin_dir: Path, script: str) -> None:
    """A stand-in `docker` that behaves like the real client at its edges: output lines and an exit status."""
    bin_dir.mkdir(exist_ok=True)
    engine = bin_dir / "docker"
    engine.write_text("#!/bin/sh\n" + script)
    engine.chmod(0o755)


async def test_build_streams_the_log_and_returns_the_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_engine(tmp_path / "bin", 'for arg in "$@"; do echo "arg: $arg"; done\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    lines: list[str] = []
    image = await ContainerBuilder(engine="docker").build(URL, SHA, KEY, lines.append)
    assert image == f"bia-binder-env-{KEY}"
    assert lines[-1] == f"arg: {URL}\n" and "arg: --no-run\n" in lines


async def test_failed_container_build_names_the_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_engine(
        tmp_path / "bin",
        'echo "Step 3/9 : RUN apt-get install nosuch"\necho "E: Unable to locate package nosuch"\nexit 100\n',
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    with pytest.raises(LaunchError, match=r"exit status 100\): E: Unable to locate package nosuch"):
        await ContainerBuilder(engine="docker").build(URL, SHA, KEY, lambda line: None)


async def test_missing_engine_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LaunchError, match="needs podman, which is not installed here"):
        await ContainerBuilder(engine="podman").build(URL, SHA, KEY, lambda line: None)


def test_image_key_follows_the_ref_and_repo2docker_version() -> None:
    builder = ContainerBuilder()
    assert builder.cache_key("gh", SHA) == builder.cache_key("gh", SHA)
    assert builder.cache_key("gh", SHA) != builder.cache_key("gh", "f" * 40)
    newer = ContainerBuilder(repo2docker_image="quay.io/jupyterhub/repo2docker:2025.01.0")
    assert newer.cache_key("gh", SHA) != builder.cache_key("gh", SHA), "another repo2docker makes another image"


async def test_image_exists_asks_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # answers like `docker image inspect`: 0 with JSON for a known image, 1 and "No such image" otherwise
    write_engine(
        tmp_path / "bin",
        f'echo "$@" >> {tmp_path}/calls\n'
        f'[ "$3" = "bia-binder-env-{KEY}" ] && {{ echo "[{{}}]"; exit 0; }}\n'
        'echo "Error: No such image: $3" >&2; exit 1\n',
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    builder = ContainerBuilder(engine="docker")
    assert await builder.image_exists(KEY) is True
    assert await builder.image_exists("b" * 32) is False
    assert (tmp_path / "calls").read_text().splitlines() == [
        f"image inspect bia-binder-env-{KEY}",
        f"image inspect bia-binder-env-{'b' * 32}",
    ]


async def test_image_exists_without_the_engine_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LaunchError, match="needs docker, which is not installed here"):
        await ContainerBuilder(engine="docker").image_exists(KEY)


async def test_container_build_time_limit_stops_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_engine(tmp_path / "bin", f'echo $$ > {tmp_path}/pid\necho "Step 1/9"\nexec sleep 60\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    with pytest.raises(LaunchError, match=r"longer than 1 s .*c\.ContainerBuilder\.build_timeout"):
        await ContainerBuilder(engine="docker", build_timeout=1).build(URL, SHA, KEY, lambda line: None)
    pid = int((tmp_path / "pid").read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


async def test_kubernetes_builds_are_refused_with_a_reason() -> None:
    builder = ContainerBuilder(engine="kubernetes")
    assert await builder.image_exists(KEY) is False, "the registry is not queried"
    with pytest.raises(LaunchError, match="on Kubernetes, create build pods") as info:
        await builder.build(URL, SHA, KEY, lambda line: None)
    assert info.value.status_code == 501


def test_local_mode_message_names_the_setting() -> None:
    from bia_binder.builder.buildpacks import needs_container

    message = needs_container("A Dockerfile").message
    assert message.startswith("A Dockerfile needs a container image")
    assert "c.BinderService.container_builds = 'fallback'" in message and "\n" not in message


@pytest.mark.parametrize(
    ("mode", "backend"),
    [
        ("never", "uv (no containers)"),
        ("fallback", "uv (no containers); what needs a container: repo2docker (r2d:1) on podman"),
        ("always", "repo2docker (r2d:1) on podman"),
    ],
)
def test_versions_name_the_active_builder(tmp_path: Path, mode: str, backend: str) -> None:
    from traitlets.config import Config

    from bia_binder.service.app import BinderService

    config = Config()
    config.ContainerBuilder.engine = "podman"
    config.ContainerBuilder.repo2docker_image = "r2d:1"
    service = BinderService(config=config, data_dir=str(tmp_path), container_builds=mode)
    service.setup()
    info = service.builder_info()
    assert info["build_backend"] == backend and info["container_builds"] == mode
    assert ("build_image" in info) == (mode != "never")
