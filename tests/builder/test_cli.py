"""``bia-binder build / run / cache`` end to end, with the default session packages (jupyterlab, jupyterhub...)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from bia_binder.builder import EnvBuilder
from bia_binder.events import PHASES
from tests.gitserver import GitServer

pytestmark = pytest.mark.slow


def bia_binder(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bia_binder.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def json_events(stdout: str) -> list[dict]:
    events = [json.loads(line) for line in stdout.splitlines()]
    assert events and all(e["phase"] in PHASES and isinstance(e["message"], str) for e in events)
    return events


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-data")


@pytest.fixture(scope="module")
def session_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("session-repo")
    (repo / "binder").mkdir()
    (repo / "binder" / "requirements.txt").write_text("six==1.16.0\n")
    (repo / "binder" / "start").write_text('#!/bin/sh\nexport FROM_START="start ran"\nexec "$@"\n')
    (repo / "binder" / "postBuild").write_text("#!/bin/sh\necho built-by-postBuild > made-by-postbuild.txt\n")
    (repo / "notebook.ipynb").write_text("{}")
    return repo


@pytest.fixture(scope="module")
def built(data_dir: Path, session_repo: Path) -> dict:
    result = bia_binder("build", str(session_repo), "--data-dir", str(data_dir), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    events = json_events(result.stdout)
    assert {"fetching", "building"} <= {e["phase"] for e in events}
    return events[-1]


def test_build_json_ends_with_the_environment(built: dict) -> None:
    assert built["phase"] == "built"
    env = Path(built["environment"])
    assert env.is_absolute() and (env / "bin" / "python").exists() and (env / "bin" / "jupyter").exists()


def test_environment_has_the_session_packages_and_the_data_library(built: dict) -> None:
    python = Path(built["environment"]) / "bin" / "python"
    check = (
        "import bia_binder.data, jupyterlab, jupyterhub, six, zarr, dask.array;"
        "import importlib.metadata as m; assert m.version('six') == '1.16.0'"
    )
    result = subprocess.run([str(python), "-c", check], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    singleuser = Path(built["environment"]) / "bin" / "jupyterhub-singleuser"
    assert subprocess.run([str(singleuser), "--version"], capture_output=True, timeout=300).returncode == 0
    extensions = subprocess.run(
        [str(Path(built["environment"]) / "bin" / "jupyter"), "server", "extension", "list"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "jupyterlab" in extensions.stdout + extensions.stderr
    assert "jupyter_resource_usage" in extensions.stdout + extensions.stderr, "limits would not show in JupyterLab"


def test_second_build_is_a_cache_hit(built: dict, data_dir: Path, session_repo: Path) -> None:
    result = bia_binder("build", str(session_repo), "--data-dir", str(data_dir), "--json")
    events = json_events(result.stdout)
    assert result.returncode == 0 and not any(e["phase"] == "building" for e in events)
    assert events[-1]["environment"] == built["environment"]


def test_run_sees_what_a_session_sees(built: dict, data_dir: Path, session_repo: Path) -> None:
    script = 'import os, sys; print(os.environ["FROM_START"]); print(sys.prefix); print(open("made-by-postbuild.txt").read().strip())'
    result = bia_binder("run", str(session_repo), "--data-dir", str(data_dir), "--", "python", "-c", script)
    assert result.returncode == 0, result.stderr
    start_var, prefix, post_build = result.stdout.splitlines()
    assert start_var == "start ran"
    assert Path(prefix) == Path(built["environment"])
    assert post_build == "built-by-postBuild"


def test_run_returns_the_command_status(built: dict, data_dir: Path, session_repo: Path) -> None:
    result = bia_binder(
        "run", str(session_repo), "--data-dir", str(data_dir), "--", "python", "-c", "raise SystemExit(7)"
    )
    assert result.returncode == 7


def test_build_failure_is_one_json_line_and_a_nonzero_status(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("bia-binder-no-such-package-xyz\n")
    result = bia_binder("build", str(tmp_path), "--data-dir", str(data_dir), "--json")
    assert result.returncode != 0
    last = json_events(result.stdout)[-1]
    assert last["phase"] == "failed"
    assert last["message"] == (
        "pip install failed: No matching distribution for 'bia-binder-no-such-package-xyz' "
        "(no such package on the package index)"
    )
    assert "Traceback" not in result.stderr


def test_bad_source_gets_a_clear_error(data_dir: Path) -> None:
    result = bia_binder("build", "no-such-directory", "--data-dir", str(data_dir))
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "neither a directory, a git URL nor a provider spec" in result.stderr
    assert "Traceback" not in result.stderr


def test_build_from_a_git_url_at_a_ref(data_dir: Path) -> None:
    with GitServer() as server:
        url, first = server.create_repo("org/repo", {"requirements.txt": "six==1.16.0\n"})
        server.commit("org/repo", {"requirements.txt": "six==1.17.0\n"})
        result = bia_binder("build", url, "--ref", first, "--data-dir", str(data_dir), "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        env = Path(json_events(result.stdout)[-1]["environment"])
        site = next(env.glob("lib/python*/site-packages"))
        assert (site / "six-1.16.0.dist-info").is_dir(), "the commit asked for, not the branch head"

        missing = bia_binder("build", url, "--ref", "no-such-branch", "--data-dir", str(data_dir), "--json")
        assert missing.returncode == 1
        assert json_events(missing.stdout)[-1]["message"].startswith("git checkout failed:")


def test_cache_list_and_prune_keep_pinned_environments(built: dict, data_dir: Path) -> None:
    key = built["key"]
    listing = bia_binder("cache", "list", "--data-dir", str(data_dir))
    assert listing.returncode == 0 and key in listing.stdout

    EnvBuilder(cache_dir=str(data_dir / "envs")).pin(key, "binder-test-session")
    pruned = bia_binder("cache", "prune", "--budget", "0", "--data-dir", str(data_dir))
    assert pruned.returncode == 0, pruned.stderr
    assert (Path(built["environment"]) / "bin" / "python").exists(), "a pinned environment is never evicted"
    assert "binder-test-session" in bia_binder("cache", "list", "--data-dir", str(data_dir)).stdout


def test_build_from_a_provider_spec(data_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "bia_binder_config.py"
    config.write_text("c.RepoProvider.allow_local_repos = True  # the test's git server is on 127.0.0.1\n")
    with GitServer() as server:
        url, sha = server.create_repo("org/spec-repo", {"requirements.txt": "six==1.16.0\n"})
        spec = f"git/{quote(url, safe='')}/main"
        result = bia_binder("build", spec, "--data-dir", str(data_dir), "--config", str(config), "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        events = json_events(result.stdout)
        assert any(e["phase"] == "fetching" and sha in e["message"] for e in events), "resolved to the commit"
        assert events[-1]["phase"] == "built"

    unknown = bia_binder("build", "nosuchprovider/org/repo", "--data-dir", str(data_dir), "--json")
    assert unknown.returncode == 1
    assert json_events(unknown.stdout)[-1]["message"].startswith("Unknown repository provider 'nosuchprovider'")
