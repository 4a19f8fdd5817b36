"""Build logs show paths relative to the repository, never the host's directories."""

from __future__ import annotations

from pathlib import Path

from bia_binder.builder.builder import without_host_paths


def test_host_paths_become_repository_relative_paths_and_placeholders(tmp_path):
    build = tmp_path / "envs" / ".tmp" / "build-1"
    lines: list[str] = []
    log = without_host_paths(
        lines.append,
        {build / "repo": ".", build / "env": "<environment>", build: "<build>", tmp_path / "envs": "<environments>"},
    )
    log(f"$ uv venv --python /usr/bin/python3.11 {build}/env\n")
    log(f"Processing {build}/repo/setup.py in {build}/repo\n")
    log(f"scratch at {build}/scratch, cache entry {tmp_path}/envs/abc\n")
    assert lines == [
        "$ uv venv --python /usr/bin/python3.11 <environment>\n",
        "Processing setup.py in .\n",
        "scratch at <build>/scratch, cache entry <environments>/abc\n",
    ]
    assert not any(str(tmp_path) in line for line in lines)


def test_a_symlinked_spelling_of_a_path_is_replaced_too(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    lines: list[str] = []
    without_host_paths(lines.append, {tmp_path / "link": "."})(f"{real}/a.txt and {tmp_path}/link/b.txt\n")
    assert lines == ["a.txt and b.txt\n"]
