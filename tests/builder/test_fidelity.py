"""The repository's environment is what it declares: our optional packages never move its pins or fail its build."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from bia_binder.builder import EnvBuilder
from bia_binder.builder.builder import data_extra_requirements
from bia_binder.data import _requirements
from bia_binder.events import LaunchError



def make_repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def versions(env_dir: Path) -> dict[str, str]:
    site = next(env_dir.glob("lib/python*/site-packages"))
    found = {}
    for info in site.glob("*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        found[name.lower().replace("_", "-")] = version
    return found


@pytest.mark.slow
async def test_an_optional_group_that_conflicts_is_left_out_and_said(tmp_path: Path) -> None:
    builder = EnvBuilder(
        cache_dir=str(tmp_path / "envs"),
        session_packages=[],
        extra_packages={"needs-new-six": ["six>=1.17"], "fits": ["packaging"]},
    )
    repo = make_repo(tmp_path / "repo", {"requirements.txt": "six==1.16.0\n"})
    log: list[str] = []
    env = await builder.build(repo, "k1", log.append)
    installed = versions(env.env_dir)
    assert installed["six"] == "1.16.0", "the repository's pin wins"
    assert "packaging" in installed, "a group that fits is added"
    said = [line for line in log if line.startswith("Left out needs-new-six (six>=1.17)")]
    assert len(said) == 1 and "six" in said[0], log[-10:]
    assert not any(line.startswith("Left out fits") for line in log)
    meta = json.loads((env.root / "environment.json").read_text())
    assert set(meta["left_out"]) == {"needs-new-six"}


@pytest.mark.slow
async def test_a_conflict_inside_the_repository_is_a_400_naming_it(tmp_path: Path) -> None:
    builder = EnvBuilder(cache_dir=str(tmp_path / "envs"), session_packages=["packaging"], extra_packages={})
    repo = make_repo(tmp_path / "repo", {"requirements.txt": "six==1.16.0\nsix==1.17.0\n"})
    with pytest.raises(LaunchError) as failure:
        await builder.build(repo, "k2", lambda line: None)
    assert failure.value.status_code == 400
    assert "six" in failure.value.message and "notebook server" not in failure.value.message


@pytest.mark.slow
async def test_a_conflict_with_the_notebook_server_says_so(tmp_path: Path) -> None:
    builder = EnvBuilder(cache_dir=str(tmp_path / "envs"), session_packages=["packaging>=24"], extra_packages={})
    repo = make_repo(tmp_path / "repo", {"requirements.txt": "packaging==20.0\n"})
    with pytest.raises(LaunchError) as failure:
        await builder.build(repo, "k3", lambda line: None)
    assert failure.value.status_code == 400
    assert "conflict with the notebook server every session needs (packaging>=24)" in failure.value.message


@pytest.mark.slow
async def test_a_zarr_2_repository_keeps_exactly_its_pins(tmp_path: Path) -> None:
    """The bioimage stack of 2023-2024 notebooks: zarr 2, ome-zarr 0.9, numpy 1.26."""
    pins = {"zarr": "2.18.3", "ome-zarr": "0.9.0", "numpy": "1.26.4"}
    builder = EnvBuilder(
        cache_dir=str(tmp_path / "envs"),
        session_packages=[],  # the notebook server is checked in test_cli; here: our data library's needs
        extra_packages={"bia_binder.data": data_extra_requirements()},
    )
    requirements = "".join(f"{name}=={version}\n" for name, version in pins.items())
    repo = make_repo(tmp_path / "repo", {"requirements.txt": requirements})
    log: list[str] = []
    env = await builder.build(repo, "zarr2", log.append)
    installed = versions(env.env_dir)
    assert {name: installed.get(name) for name in pins} == pins
    said = [line for line in log if line.startswith("Left out bia_binder.data (")]
    assert len(said) == 1 and "zarr>=3.0" in said[0] and "zarr==2.18.3" in said[0], log[-10:]
    # the data library says in one line why it cannot work here
    result = subprocess.run(
        [str(env.env_dir / "bin" / "python"), "-c", "import bia_binder.data"], capture_output=True, text=True, timeout=120
    )
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0
    assert last.startswith("ImportError: bia_binder.data needs zarr>=3.0 (this environment has zarr 2.18.3)"), last


def test_the_import_check_lists_what_pyproject_lists() -> None:
    extra = {req.split(">=")[0].split("[")[0]: req.split(">=")[1] for req in data_extra_requirements()}
    assert dict(_requirements.REQUIREMENTS) == extra


@pytest.mark.parametrize("suffix", [".dist-info", ".egg-info"])
def test_the_host_check_notices_an_install(tmp_path: Path, suffix: str) -> None:
    from tests.conftest import installed_distributions

    before = installed_distributions([str(tmp_path)])
    (tmp_path / f"six-1.16.0{suffix}").mkdir()
    assert installed_distributions([str(tmp_path)]) - before == {str(tmp_path / f"six-1.16.0{suffix}")}


def test_the_study_environment_locks_every_session_and_optional_package(tmp_path: Path) -> None:
    """Study launches include everything: their lock holds the notebook server and every optional group."""
    import tomllib

    from bia_binder.studies.environment import LOCK_FILE

    locked = {package["name"].lower() for package in tomllib.loads(LOCK_FILE.read_text())["packages"]}
    builder = EnvBuilder(cache_dir=str(tmp_path / "envs"))
    wanted = [*builder.session_packages, *(req for reqs in builder.extra_packages.values() for req in reqs)]
    names = {re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0].lower() for req in wanted}
    assert names and names <= locked, sorted(names - locked)
