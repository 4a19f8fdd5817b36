"""Launches through the container builder (c.BinderService.container_builds = "fallback") on a whole stack.

The engine is a stand-in `docker` first on the stack's PATH: it records each `run` command line,
prints repo2docker-like log lines and remembers the images it "built", so `image inspect` answers
"no such image" until then, as a real engine does.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from bia_binder.builder.container import ContainerBuilder
from tests.stack import PROJECT_ROOT, BinderStack

pytestmark = pytest.mark.slow

FAKE_ENGINE = textwrap.dedent(
    """\
    #!/bin/sh
    state="$(dirname "$0")/state"
    mkdir -p "$state/images"
    if [ "$1" = image ] && [ "$2" = inspect ]; then
        if [ -e "$state/images/$3" ]; then echo '[{"Id": "sha256:0123"}]'; exit 0; fi
        echo "Error: No such image: $3" >&2
        exit 1
    fi
    if [ "$1" != run ]; then echo "fake engine: unexpected command $1" >&2; exit 2; fi
    printf '%s\\n' "$0" "$@" > "$state/run.$$"
    for last; do :; done
    while [ "$#" -gt 0 ]; do
        if [ "$1" = --image-name ]; then image="$2"; fi
        shift
    done
    echo "Picked Git content provider."
    echo "Cloning into '/tmp/repo2dockerabc'..."
    case "$last" in
        *broken*)
            echo "Step 3/9 : RUN apt-get install -y nosuch"
            echo "E: Unable to locate package nosuch"
            exit 100;;
    esac
    echo "Step 1/2 : FROM docker.io/library/buildpack-deps:jammy"
    echo "Successfully tagged $image:latest"
    touch "$state/images/$image"
    """
)


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory) -> Path:
    bin_dir = tmp_path_factory.mktemp("engine")
    engine = bin_dir / "docker"
    engine.write_text(FAKE_ENGINE)
    engine.chmod(0o755)
    return bin_dir


@pytest.fixture(scope="module")
def stack(engine_dir):
    path = os.pathsep.join([str(engine_dir), str(PROJECT_ROOT / "node_modules" / ".bin"), os.environ.get("PATH", "")])
    config = 'c.BinderService.container_builds = "fallback"\n'
    with BinderStack(config=config, env={"PATH": path}) as running:
        yield running


def runs(engine_dir: Path) -> list[list[str]]:
    """The command lines of every `docker run` so far (argv[0] as invoked, then the arguments)."""
    state = engine_dir / "state"
    return [path.read_text().splitlines() for path in sorted(state.glob("run.*"), key=lambda p: p.stat().st_mtime)]


def phases(events: list[dict]) -> list[str]:
    return [item["phase"] for item in events]


def git_repo(stack: BinderStack, name: str, files: dict[str, str]) -> tuple[str, str, str]:
    """A repository on the stack's git server: (spec, clone URL, commit sha)."""
    url, sha = stack.git.create_repo(name, files)
    return f"git/{quote(url, safe='')}/HEAD", url, sha


DOCKERFILE_REPO = {"Dockerfile": "FROM docker.io/library/python:3.12\nRUN pip install six\n", "hello.py": "print(1)\n"}


@pytest.fixture(scope="module")
def dockerfile_launch(stack, engine_dir):
    spec, url, sha = git_repo(stack, "lab/with-dockerfile", DOCKERFILE_REPO)
    return url, sha, stack.launch(spec, timeout=120)


def test_dockerfile_repo_is_built_by_repo2docker_on_the_engine(dockerfile_launch, engine_dir):
    url, sha, events = dockerfile_launch
    builder = ContainerBuilder()  # the stack's configuration: engine docker, default repo2docker image
    key = builder.cache_key("git", sha)
    recorded = runs(engine_dir)
    assert len(recorded) == 1, recorded
    argv = recorded[0]
    assert Path(argv[0]).name == "docker"
    assert ["docker", *argv[1:]] == builder.engine_command(url, sha, key)

    building = [item["message"] for item in events if item["phase"] == "building"]
    assert "Picked Git content provider.\n" in building
    assert f"Successfully tagged {builder.image_name(key)}:latest\n" in building
    assert any("A Dockerfile needs a container image" in line for line in building)
    built = [item for item in events if item["phase"] == "built"]
    assert built and built[0]["imageName"] == builder.image_name(key)


def test_image_launch_ends_with_the_spawners_reason(dockerfile_launch):
    _url, _sha, events = dockerfile_launch
    assert phases(events)[-1] == "failed", events[-3:]
    failure = events[-1]
    assert "runs sessions without containers and cannot start image bia-binder-env-" in failure["message"]
    assert "KubeSpawner" in failure["message"] and "\n" not in failure["message"].strip()
    assert "Traceback" not in failure["message"]
    assert failure["status_code"] == 500


def test_a_built_image_is_not_built_again(stack, dockerfile_launch, engine_dir):
    url, _sha, _events = dockerfile_launch
    events = stack.launch(f"git/{quote(url, safe='')}/HEAD", timeout=120)
    assert len(runs(engine_dir)) == 1, "the second launch found the image"
    assert "building" not in phases(events) and "fetching" not in phases(events)
    assert events[phases(events).index("built")]["message"].startswith("Found built image")
    assert phases(events)[-1] == "failed"


def test_failing_container_build_is_one_clear_failure(stack, engine_dir):
    files = {**DOCKERFILE_REPO, "Dockerfile": "FROM docker.io/library/python:3.12\nRUN apt-get install -y nosuch\n"}
    spec, _url, _sha = git_repo(stack, "lab/broken-dockerfile", files)
    events = stack.launch(spec, timeout=120)
    assert phases(events)[-1] == "failed", events[-3:]
    assert "built" not in phases(events)
    failure = events[-1]
    assert failure["message"] == "the container build failed (exit status 100): E: Unable to locate package nosuch"
    assert failure["status_code"] == 500
    assert "E: Unable to locate package nosuch\n" in [item["message"] for item in events]


def test_plain_repo_still_builds_locally_in_fallback_mode(stack, engine_dir):
    before = len(runs(engine_dir))
    spec, _url, _sha = git_repo(stack, "lab/plain", {"requirements.txt": "six\n"})
    events = stack.launch(spec)
    assert phases(events)[-1] == "ready", events[-3:]
    assert "fetching" in phases(events)
    assert len(runs(engine_dir)) == before, "no container build for what the local builder can do"
    ready = events[-1]
    assert not ready["image"].startswith("bia-binder-env-"), "an environment key, not an image"


def test_versions_say_which_builder_is_active(stack):
    info = httpx.get(f"{stack.url}/versions", timeout=30).json()["builder_info"]
    assert info["container_builds"] == "fallback"
    assert info["build_backend"].startswith("uv (no containers); what needs a container: repo2docker")
    assert info["build_image"] == ContainerBuilder().repo2docker_image


async def test_always_mode_builds_every_repository_as_an_image(engine_dir, tmp_path, monkeypatch):
    """The pipeline alone (no hub): a plain repository goes to repo2docker too, without a local fetch."""
    from bia_binder.service.app import BinderService
    from bia_binder.service.pipeline import LaunchRequest
    from tests.gitserver import GitServer

    monkeypatch.setenv("PATH", f"{engine_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:9/hub/api")  # nothing listens: the launch stops there
    git = GitServer().start()
    try:
        url, sha = git.create_repo("lab/always", {"requirements.txt": "six\n", "always.txt": "yes\n"})
        service = BinderService(data_dir=str(tmp_path), allow_local_repos=True, container_builds="always")
        service.setup()
        events: list[dict] = []

        async def emit(item: dict) -> None:
            events.append(item)

        request = LaunchRequest("git", f"{quote(url, safe='')}/HEAD", "http://127.0.0.1/", "http://127.0.0.1", lambda: True)
        before = len(runs(engine_dir))
        await service.pipeline.run(request, emit)
    finally:
        git.stop()
    key = service.container_builder.cache_key("git", sha)
    assert "fetching" not in phases(events), "repo2docker fetches the repository itself"
    assert runs(engine_dir)[before:][0][1:] == service.container_builder.engine_command(url, sha, key)[1:]
    assert events[phases(events).index("built")]["imageName"] == service.container_builder.image_name(key)
    assert phases(events)[-1] == "failed" and events[-1]["status_code"] == 503, events[-1]
