"""Python versions the host lacks come as uv's managed Python from the operator's source: here a loopback
mirror the test fills itself with a real interpreter of a version the host does not have (Debian's
PyPy 3.9, see tests/pythonmirror.py). No test touches any other network for Python builds."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bia_binder.builder import EnvBuilder
from bia_binder.events import LaunchError
from tests.pythonmirror import MirrorUnavailable, PythonMirror, debian_pypy_build, host_arch_supported

pytestmark = pytest.mark.skipif(not host_arch_supported(), reason="needs a Debian-like Linux host (apt-get, dpkg-deb)")


@pytest.fixture(scope="session")
def pypy_build():
    try:
        return debian_pypy_build()
    except MirrorUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def mirror(pypy_build, tmp_path_factory):
    version = pypy_build.minor_version
    if EnvBuilder(cache_dir=str(tmp_path_factory.mktemp("probe"))).host_interpreter(version):
        pytest.skip(f"this host has Python {version}: the mirror's interpreter would prove nothing")
    mirror = PythonMirror([pypy_build], tmp_path_factory.mktemp("python-mirror")).start()
    yield mirror
    mirror.stop()


def reported(python: str) -> tuple[str, str]:
    out = subprocess.run(
        [python, "-c", "import platform; print(platform.python_implementation(), platform.python_version())"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout.split()  # fmt: skip
    return out[0], ".".join(out[1].split(".")[:2])


def test_a_source_without_cpython_of_that_version_is_a_400_naming_it(mirror: PythonMirror, tmp_path: Path) -> None:
    version = mirror.builds[0].minor_version
    builder = EnvBuilder(cache_dir=str(tmp_path / "envs"), python_downloads_json_url=mirror.downloads_json_url)
    with pytest.raises(LaunchError) as info:
        asyncio.run(builder.find_interpreter(version))
    assert info.value.status_code == 400
    assert f"the configured source of Python builds has no cpython {version}" in info.value.message
    assert "/downloads.json" in mirror.served, "uv did not ask the configured downloads list"
    assert not any(path.endswith(".tar.gz") for path in mirror.served), "PyPy was fetched though not allowed"


def test_pypy_from_the_mirror_where_allowed_then_reused_without_a_source(mirror: PythonMirror, tmp_path: Path) -> None:
    build = mirror.builds[0]
    cache_dir = str(tmp_path / "envs")
    log: list[str] = []
    builder = EnvBuilder(
        cache_dir=cache_dir, python_downloads_json_url=mirror.downloads_json_url, python_implementations=["cpython", "pypy"]
    )
    python = asyncio.run(builder.find_interpreter(build.minor_version, log.append))

    assert Path(python).is_relative_to(tmp_path / "envs" / ".pythons")
    assert reported(python) == ("PyPy", build.minor_version)
    assert f"/{build.tarball.name}" in mirror.served
    assert any("the source has no CPython of that version" in line for line in log), "the log hides the substitute"
    linked = Path.home() / ".local" / "bin" / f"pypy{build.minor_version}"
    assert not (linked.exists() and linked.resolve().is_relative_to(tmp_path)), "uv linked it into ~/.local/bin"

    # installed once: a builder with no source at all uses it, without asking the mirror again
    fetched = len(mirror.served)
    offline = EnvBuilder(cache_dir=cache_dir, python_implementations=["cpython", "pypy"])
    assert asyncio.run(offline.find_interpreter(build.minor_version)) == python
    assert len(mirror.served) == fetched

    # and one that accepts only CPython says what it has, including the managed one it would not use
    with pytest.raises(LaunchError) as info:
        asyncio.run(EnvBuilder(cache_dir=cache_dir).find_interpreter(build.minor_version))
    assert f"installed from a mirror: pypy {build.minor_version}" in info.value.message
    assert "no source of Python builds is configured (c.EnvBuilder.python_install_mirror" in info.value.message


def test_environment_yml_asking_for_that_version_gets_it_too(mirror: PythonMirror, tmp_path: Path) -> None:
    build = mirror.builds[0]
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "environment.yml").write_text(
        f"dependencies:\n  - python={build.minor_version}\n  - pip\n  - pip:\n    - six\n"
    )
    builder = EnvBuilder(
        cache_dir=str(tmp_path / "envs"),
        session_packages=[], extra_packages={},
        python_downloads_json_url=mirror.downloads_json_url, python_implementations=["cpython", "pypy"],
    )  # fmt: skip
    env = asyncio.run(builder.build(repo, "conda-k", lambda line: None))
    assert env.buildpack == "conda"
    assert reported(str(env.bin_dir / "python")) == ("PyPy", build.minor_version)
    install_dir = (tmp_path / "envs" / ".pythons").resolve()
    assert env.interpreter_dirs == [str(install_dir)]
    # what the hub's spawner shows a session of it: the environment and the managed Python, read-only
    from bia_binder.builder.base import Environment
    from bia_binder.sessions.spawner import BinderSpawner

    spawner = BinderSpawner(user=SimpleNamespace(name="alice", url="/user/alice/"))
    shown = spawner.readonly_paths(Environment.load(env.root))
    assert env.root in shown and install_dir in shown


def bia_binder(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bia_binder.cli", *args], capture_output=True, text=True, timeout=timeout)


POST_BUILD = """\
#!/bin/sh
# a hostile build: try to change the interpreter other repositories' environments link to
base=$(python -c 'import sys; print(sys.base_prefix)')
touch "$base/poisoned-by-postbuild" 2>/dev/null && echo yes > "$HOME/poisoned"
echo "postBuild saw $(python -c 'import platform; print(platform.python_implementation())')"
"""

SESSION_CHECK = """\
import json, os, platform, sys
import psutil  # built from source in the sandboxed build, against the managed PyPy's own headers
print(json.dumps({"implementation": platform.python_implementation(), "version": platform.python_version(),
                  "prefix": sys.prefix, "base_prefix": sys.base_prefix, "uid": os.getuid(),
                  "cpus": psutil.cpu_count()}))
"""


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="a sandboxed build and session need root (uid switch, bubblewrap)")
def test_a_repository_asking_for_that_version_builds_from_the_mirror_and_runs_sandboxed(
    mirror: PythonMirror, tmp_path: Path
) -> None:
    build = mirror.builds[0]
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "runtime.txt").write_text(f"python-{build.minor_version}\n")
    # what a PyPy 3.9 repository declares: psutil 6+ uses C API that PyPy 3.9 lacks
    (repo / "requirements.txt").write_text("psutil<6\n")
    (repo / "postBuild").write_text(POST_BUILD)
    (repo / "check_session.py").write_text(SESSION_CHECK)
    config = tmp_path / "bia_binder_config.py"
    config.write_text(
        f"c.EnvBuilder.python_downloads_json_url = {mirror.downloads_json_url!r}\n"
        'c.EnvBuilder.python_implementations = ["cpython", "pypy"]\n'
    )
    data_dir = tmp_path / "data"

    built = bia_binder("build", str(repo), "--data-dir", str(data_dir), "--config", str(config), "--json")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    events = [json.loads(line) for line in built.stdout.splitlines()]
    log = "".join(e["message"] for e in events)
    assert f"/{build.tarball.name}" in mirror.served
    assert "postBuild saw PyPy" in log
    environment = Path(events[-1]["environment"])
    install_dir = data_dir / "envs" / ".pythons"
    metadata = json.loads((environment.parent / "environment.json").read_text())
    assert metadata["interpreter_dirs"] == [str(install_dir.resolve())]
    assert not list(install_dir.rglob("poisoned-by-postbuild")), "the build changed the shared managed Python"
    assert not (environment.parent / "repo" / "poisoned").exists()

    # a session of it: its own uid in the sandbox, where the data dir is hidden but the interpreter shown
    ran = bia_binder(
        "run", str(repo), "--data-dir", str(data_dir), "--config", str(config),
        "--", "sh", "-c", "python check_session.py && jupyterhub-singleuser --version",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    facts_line, singleuser_version = ran.stdout.strip().splitlines()[-2:]
    facts = json.loads(facts_line)
    assert (facts["implementation"], facts["version"].rsplit(".", 1)[0]) == ("PyPy", build.minor_version)
    assert Path(facts["prefix"]) == environment
    assert Path(facts["base_prefix"]).is_relative_to(install_dir.resolve())
    assert facts["uid"] != 0 and facts["cpus"] >= 1
    assert singleuser_version.split(".")[0].isdigit(), "the notebook server did not start on the managed Python"
