"""environment.yml with conda packages: solved and installed by rattler from a local channel the test writes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bia_binder.builder import EnvBuilder
from bia_binder.events import LaunchError

from .conda_channel import CondaPackage, write_channel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def channels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/bioimage-test``: a named channel under a file:// channel alias."""
    root = tmp_path_factory.mktemp("conda-channels")
    write_channel(
        root / "bioimage-test",
        [
            CondaPackage("hello-data", "1.0", {"share/hello-data/greeting.txt": "hello from a conda package\n"}),
            CondaPackage("hello-data", "2.0", {"share/hello-data/greeting.txt": "hello from version 2\n"}),
            CondaPackage(
                "hello-tool",
                "0.3",
                {"bin/hello-tool": '#!/bin/sh\ncat "$(dirname "$0")/../share/hello-data/greeting.txt"\n'},
                depends=["hello-data >=1,<2"],
            ),
            # stands in for conda's Python, which the local builder refuses to install
            CondaPackage("python", "3.11.0", {"share/fake-python/README": "not a python\n"}),
            CondaPackage("needs-conda-python", "1.0", {"share/needs/README": "x\n"}, depends=["python"]),
        ],
    )
    return root


@pytest.fixture(scope="module")
def builder(channels: Path, tmp_path_factory: pytest.TempPathFactory) -> EnvBuilder:
    return EnvBuilder(
        cache_dir=str(tmp_path_factory.mktemp("conda-envs")),
        session_packages=["packaging"], extra_packages={},
        conda_channel_alias=channels.as_uri(),
    )


def repo(tmp_path: Path, environment_yml: str) -> Path:
    (tmp_path / "environment.yml").write_text(environment_yml)
    return tmp_path


async def test_conda_packages_solved_and_installed_next_to_pip_ones(builder: EnvBuilder, tmp_path: Path) -> None:
    source = repo(
        tmp_path,
        "channels:\n  - bioimage-test\ndependencies:\n  - python=3.11\n  - pip\n  - hello-tool\n  - pip:\n    - six==1.16.0\n",
    )
    log: list[str] = []
    env = await builder.build(source, "conda-tool", log.append)
    environ = env.session_environ(os.environ)
    tool = subprocess.run(["hello-tool"], env=environ, capture_output=True, text=True, timeout=60)
    assert tool.stdout == "hello from a conda package\n", "the solver picked hello-data 1.x for hello-tool"
    six = subprocess.run(
        ["python", "-c", "import six; print(six.__version__)"], env=environ, capture_output=True, text=True
    )
    assert six.stdout.strip() == "1.16.0"
    assert any("hello-data==1.0" in line for line in log)
    conda_meta = {p.name.rsplit("-", 2)[0] for p in (env.env_dir / "conda-meta").glob("*.json")}
    assert conda_meta == {"hello-tool", "hello-data"}


async def test_channel_urls_are_used_as_given(builder: EnvBuilder, channels: Path, tmp_path: Path) -> None:
    source = repo(
        tmp_path, f"channels:\n  - {(channels / 'bioimage-test').as_uri()}\ndependencies:\n  - hello-data=2\n"
    )
    env = await builder.build(source, "conda-url", lambda line: None)
    assert (env.env_dir / "share" / "hello-data" / "greeting.txt").read_text() == "hello from version 2\n"


async def test_unknown_conda_package_fails_with_one_line(builder: EnvBuilder, tmp_path: Path) -> None:
    source = repo(tmp_path, "channels:\n  - bioimage-test\ndependencies:\n  - no-such-conda-package\n")
    with pytest.raises(LaunchError, match="solving environment.yml's conda packages failed") as info:
        await builder.build(source, "conda-missing", lambda line: None)
    assert "\n" not in info.value.message and "no-such-conda-package" in info.value.message
    assert builder.lookup("conda-missing") is None


async def test_packages_needing_conda_python_are_refused(builder: EnvBuilder, tmp_path: Path) -> None:
    source = repo(tmp_path, "channels:\n  - bioimage-test\ndependencies:\n  - needs-conda-python\n")
    with pytest.raises(LaunchError, match="need conda's own python, which the local builder does not install"):
        await builder.build(source, "conda-python", lambda line: None)


SIX_WHEEL = (
    "https://files.pythonhosted.org/packages/d9/5a/e7c31adbe875f2abbb91bd84cf2dc52d792b5a01506781dbcf25c91daf11/"
    "six-1.16.0-py2.py3-none-any.whl"
)


async def test_pixi_toml_is_solved(builder: EnvBuilder, tmp_path: Path) -> None:
    (tmp_path / "pixi.toml").write_text(
        '[workspace]\nname = "demo"\nchannels = ["bioimage-test"]\nplatforms = ["linux-64"]\n\n'
        '[dependencies]\npython = "3.11.*"\nhello-data = "*"\n\n[pypi-dependencies]\nsix = "==1.16.0"\n'
    )
    env = await builder.build(tmp_path, "pixi-toml", lambda line: None)
    assert (env.env_dir / "share" / "hello-data" / "greeting.txt").read_text() == "hello from version 2\n"
    assert next(env.env_dir.glob("lib/python3.11/site-packages/six-1.16.0.dist-info")).is_dir()


async def test_pixi_lock_is_installed_exactly(builder: EnvBuilder, channels: Path, tmp_path: Path) -> None:
    import rattler

    records = await rattler.solve(
        sources=[(channels / "bioimage-test").as_uri()], specs=["hello-data 1.*"], platforms=["noarch", "linux-64"]
    )
    platform = rattler.LockPlatform(str(rattler.Platform.current()))
    lock = rattler.LockFile([platform])
    for record in records:
        lock.add_conda_package("default", platform, record)
    lock.add_pypi_package("default", platform, "six", "1.16.0", SIX_WHEEL)
    lock.to_path(tmp_path / "pixi.lock")
    # the manifest alone would resolve to hello-data 2.0 and the newest six: the lock wins
    (tmp_path / "pixi.toml").write_text(
        '[workspace]\nname = "demo"\nchannels = ["bioimage-test"]\nplatforms = ["linux-64"]\n\n'
        '[dependencies]\nhello-data = "*"\n\n[pypi-dependencies]\nsix = "*"\n'
    )
    env = await builder.build(tmp_path, "pixi-lock", lambda line: None)
    assert (env.env_dir / "share" / "hello-data" / "greeting.txt").read_text() == "hello from a conda package\n"
    assert next(env.env_dir.glob("lib/python3.11/site-packages/six-1.16.0.dist-info")).is_dir()
