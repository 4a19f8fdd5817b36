"""runtime.txt's python-X.Y picks among the interpreters the host has (stale shims skipped), or says what is missing."""

from __future__ import annotations

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
    assert builder.find_interpreter(HOST_VERSION) == str(tmp_path / "real" / f"python{HOST_VERSION}")


def test_a_missing_version_names_what_the_host_has(tmp_path: Path) -> None:
    builder = EnvBuilder(cache_dir=str(tmp_path / "envs"), python=HOST_PYTHON, python_search_path=search_dirs(tmp_path))
    with pytest.raises(LaunchError) as info:
        builder.find_interpreter("3.99")
    message = info.value.message
    assert f"asks for Python 3.99, which this host does not have (available: {HOST_VERSION})" in message
    assert "c.EnvBuilder.python_search_path" in message and info.value.status_code == 400
