"""A rebuild of an equal environment reuses the recent resolution and installs offline from uv's cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bia_binder.builder import EnvBuilder
from bia_binder.builder.uv import ResolutionCache


def requirements(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text,reusable",
    [
        ("six==1.16.0\nattrs>=23  # comment\n", True),
        ("dask[array]>=2024.8 ; python_version >= '3.10'\n", True),
        ("-e .\n", False),
        ("./localpkg\n", False),
        ("demo @ https://example.org/demo.whl\n", False),
        ("git+https://example.org/demo.git\n", False),
        ("--index-url https://example.org/simple\nsix\n", False),
    ],
)
def test_only_plain_requirement_lists_are_reused(tmp_path: Path, text: str, reusable: bool) -> None:
    cache = ResolutionCache(tmp_path / "resolutions", max_age=600)
    key = cache.key(["jupyterlab>=4", "-r", str(requirements(tmp_path, "requirements.txt", text))], "/usr/bin/python3")
    assert (key is not None) == reusable


def test_equal_lists_share_a_key_regardless_of_order_and_file_location(tmp_path: Path) -> None:
    cache = ResolutionCache(tmp_path / "resolutions", max_age=600)
    a = cache.key(["x", "-r", str(requirements(tmp_path, "a.txt", "six\nattrs\n"))], "py")
    b = cache.key(["-r", str(requirements(tmp_path, "b.txt", "attrs\n\nsix\n")), "x"], "py")
    assert a == b and a != cache.key(["x", "-r", str(tmp_path / "a.txt")], "other-python")
    other_index = ResolutionCache(tmp_path / "resolutions", max_age=600, salt="other configuration")
    assert other_index.key(["x", "-r", str(tmp_path / "a.txt")], "py") != a
    assert ResolutionCache(tmp_path, max_age=0).key(["six"], "py") is None


def test_a_stale_resolution_is_not_used(tmp_path: Path) -> None:
    cache = ResolutionCache(tmp_path / "resolutions", max_age=600)
    cache.put("k", requirements(tmp_path, "pins.txt", "six==1.16.0\n"))
    assert cache.get("k") is not None
    os.utime(cache.directory / "k.txt", (1000, 1000))
    assert cache.get("k") is None


@pytest.mark.slow
async def test_rebuild_of_an_equal_environment_installs_offline(tmp_path: Path) -> None:
    builder = EnvBuilder(cache_dir=str(tmp_path / "envs"), session_packages=["packaging"], extra_packages={})
    logs: dict[str, list[str]] = {}
    for name in ("first", "second"):
        repo = tmp_path / name
        repo.mkdir()
        (repo / "requirements.txt").write_text("six==1.16.0\n")
        (repo / f"{name}.ipynb").write_text("{}")  # a different commit, equal requirements
        logs[name] = []
        env = await builder.build(repo, name, logs[name].append)
        assert next(env.env_dir.glob("lib/python*/site-packages/six-1.16.0.dist-info")).is_dir()
    installs = {name: [line for line in log if line.startswith("$ uv pip install")] for name, log in logs.items()}
    assert len(installs["second"]) == 1 and "--offline --no-deps" in installs["second"][0], "no index request"
    assert "--offline" not in installs["first"][0]
