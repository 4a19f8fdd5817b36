"""runtime.txt's python-X.Y picks among the interpreters the host has (stale shims skipped), or says what is missing."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from bia_binder.builder import EnvBuilder
from bia_binder.events import LaunchError

HOST_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
HOST_PYTHON = getattr(sys, "_base_executable", sys.executable)


def search_dirs(tmp_path: Path) -> list[str]:
    """A directory with a broken pyenv-style shim, then one with a working interpreter."""
    shims, real = tmp_path / "shims", tmp_path / "real"
    shims.mkdir()
    real.mkdir()
    shim = shims / f"python{HOST_VERSION}"
    shim.write_text("#!/bin/sh\necho 'pyenv: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    (real / f"python{HOST_VERSION}").symlink_to(HOST_PYTHON)
    return [str(shims), str(real)]


def test_a_version_is_found_on_the_search_path_past_broken_shims(tmp_path: Path) -> None:
    builder = EnvBuilder(
        cache_dir=str(tmp_path / "envs"),
        python=str(tmp_path / "no-such-python"),
        python_search_path=search_dirs(tmp_path),
    )
    assert asyncio.run(builder.find_interpreter(HOST_VERSION)) == str(tmp_path / "real" / f"python{HOST_VERSION}")


def test_a_missing_version_names_what_the_host_has_and_how_to_configure_a_source(tmp_path: Path, monkeypatch) -> None:
    for name in ("UV_PYTHON_DOWNLOADS_JSON_URL", "UV_PYTHON_INSTALL_MIRROR", "UV_PYPY_INSTALL_MIRROR"):
        monkeypatch.delenv(name, raising=False)
    builder = EnvBuilder(cache_dir=str(tmp_path / "envs"), python=HOST_PYTHON, python_search_path=search_dirs(tmp_path))
    with pytest.raises(LaunchError) as info:
        asyncio.run(builder.find_interpreter("3.99"))
    message = info.value.message
    assert f"asks for Python 3.99, which this host does not have (available: {HOST_VERSION})" in message
    assert "no source of Python builds is configured (c.EnvBuilder.python_install_mirror" in message
    assert "c.EnvBuilder.python_search_path" in message and info.value.status_code == 400
    assert "\n" not in message
    assert not (tmp_path / "envs" / ".pythons").exists(), "nothing is installed without a source"


def test_the_sources_default_to_uvs_own_variables(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("UV_PYTHON_INSTALL_MIRROR", "http://127.0.0.1:9/python")
    builder = EnvBuilder(cache_dir=str(tmp_path / "envs"))
    assert builder.python_install_mirror == "http://127.0.0.1:9/python"
    managed = builder.managed_pythons()
    assert managed.source_configured and managed.uv_environ()["UV_PYTHON_INSTALL_DIR"] == str(tmp_path / "envs" / ".pythons")


def test_unknown_implementations_are_refused(tmp_path: Path) -> None:
    from traitlets import TraitError

    with pytest.raises(TraitError, match="python_implementations must list some of cpython, pypy, graalpy"):
        EnvBuilder(cache_dir=str(tmp_path / "envs"), python_implementations=["jython"])


def test_a_source_that_fails_is_the_services_error_in_one_line(tmp_path: Path) -> None:
    # a closed loopback port: uv cannot fetch the downloads list
    builder = EnvBuilder(
        cache_dir=str(tmp_path / "envs"), python=HOST_PYTHON, python_search_path=[],
        python_downloads_json_url="http://127.0.0.1:9/downloads.json",
    )  # fmt: skip
    with pytest.raises(LaunchError) as info:
        asyncio.run(builder.find_interpreter("3.99"))
    assert info.value.status_code == 502
    assert info.value.message.startswith("installing Python 3.99 (cpython) from the configured source failed: ")
    assert "\n" not in info.value.message
