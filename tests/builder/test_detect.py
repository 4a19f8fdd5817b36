"""Detection with repo2docker's rules: which buildpack wins, where configuration is read from (no builds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bia_binder.builder.buildpacks import RepoFiles, detect_buildpack
from bia_binder.builder.buildpacks.conda import CondaBuildPack
from bia_binder.builder.buildpacks.pipfile import requirement_line
from bia_binder.events import LaunchError


def make_repo(root: Path, files: dict[str, str]) -> RepoFiles:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return RepoFiles(root)


# (files, expected buildpack): every adjacent pair of repo2docker's order, plus our additions
PRECEDENCE = [
    ({"Dockerfile": "", "Project.toml": ""}, "dockerfile"),
    ({"Project.toml": "", "default.nix": ""}, "julia"),
    ({"REQUIRE": "", "default.nix": ""}, "julia"),
    ({"default.nix": "", "runtime.txt": "r-4.3-2024-01-01"}, "nix"),
    ({"runtime.txt": "r-4.3-2024-01-01", "pixi.toml": ""}, "r"),
    ({"pixi.toml": "", "environment.yml": ""}, "pixi"),
    ({"pixi.lock": "", "environment.yml": ""}, "pixi"),
    ({"runtime.txt": "r-4.3-2024-01-01", "environment.yml": ""}, "r"),
    ({"DESCRIPTION": "", "environment.yml": ""}, "r"),
    ({"environment.yml": "", "Pipfile": ""}, "conda"),
    ({"Pipfile": "", "uv.lock": "", "pyproject.toml": ""}, "pipfile"),
    ({"Pipfile.lock": "{}", "requirements.txt": ""}, "pipfile"),
    ({"uv.lock": "", "pyproject.toml": "", "pylock.toml": ""}, "uv-lock"),
    ({"pylock.toml": "", "requirements.txt": ""}, "pylock"),
    ({"requirements.txt": ""}, "python"),
    ({"setup.py": ""}, "python"),
    ({"pyproject.toml": "[project]\nname = 'x'\n"}, "python"),
    ({"runtime.txt": "python-3.11"}, "python"),
    ({"uv.lock": ""}, "python"),  # a lock without its project is not a uv project
    ({"README.md": ""}, "python"),
]


@pytest.mark.parametrize("files,expected", PRECEDENCE, ids=[" > ".join(f) for f, _ in PRECEDENCE])
def test_precedence(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    assert detect_buildpack(make_repo(tmp_path, files)).name == expected


@pytest.mark.parametrize("folder", ["binder", ".binder"])
def test_binder_folder_is_the_only_place_read(tmp_path: Path, folder: str) -> None:
    repo = make_repo(tmp_path, {"Dockerfile": "", "DESCRIPTION": "", f"{folder}/requirements.txt": "six"})
    assert repo.config_dir == tmp_path / folder
    assert detect_buildpack(repo).name == "python"


def test_a_pyproject_with_only_tool_settings_is_not_a_package(tmp_path: Path) -> None:
    assert not make_repo(tmp_path / "tools", {"pyproject.toml": "[tool.black]\nline-length = 100\n"}).has_own_package
    assert make_repo(tmp_path / "project", {"pyproject.toml": "[build-system]\nrequires = []\n"}).has_own_package
    assert detect_buildpack(make_repo(tmp_path / "tools2", {"pyproject.toml": "[tool.ruff]\n"})).name == "python"


def test_setup_py_at_root_is_ignored_with_a_binder_folder(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"setup.py": "", "binder/README": ""})
    assert not repo.has_own_package
    assert make_repo(tmp_path / "plain", {"setup.py": ""}).has_own_package


def test_both_binder_folders_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="both a 'binder' and a '.binder'") as info:
        make_repo(tmp_path, {"binder/requirements.txt": "", ".binder/requirements.txt": ""})
    assert info.value.status_code == 400


@pytest.mark.parametrize(
    "runtime,python", [("python-3.11", "3.11"), ("python-3.12.1", "3.12"), ("r-4.3-2024-01-01", None), ("", None)]
)
def test_runtime_txt(tmp_path: Path, runtime: str, python: str | None) -> None:
    assert make_repo(tmp_path, {"runtime.txt": runtime + "\n"}).runtime_python == python


@pytest.mark.parametrize(
    "spec,python",
    [
        ("python=3.11", "3.11"),
        ("python==3.12.*", "3.12"),
        ("python", None),
        ("python>=3.10", None),
        ("python 3.11.4", "3.11"),
    ],
)
def test_environment_yml_python_version(tmp_path: Path, spec: str, python: str | None) -> None:
    repo = make_repo(tmp_path, {"environment.yml": f"dependencies:\n  - {spec}\n  - pip\n"})
    assert CondaBuildPack().python_version(repo) == python


@pytest.mark.parametrize(
    "name,entry,line",
    [
        ("six", "*", "six"),
        ("six", "==1.16.0", "six==1.16.0"),
        ("attrs", {"version": ">=23", "extras": ["tests"]}, "attrs[tests]>=23"),
        ("six", {"version": "==1.16.0", "markers": "python_version >= '3'"}, "six==1.16.0 ; python_version >= '3'"),
        ("demo", {"git": "https://example.org/demo.git", "ref": "v1"}, "demo @ git+https://example.org/demo.git@v1"),
    ],
)
def test_pipfile_entries(tmp_path: Path, name: str, entry: object, line: str) -> None:
    assert requirement_line(name, entry, tmp_path) == line
