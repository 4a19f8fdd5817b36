"""The conformance suite: each ``<group>/<case>/`` folder is a small repository (repo2docker's test layout).

A case either has an executable ``verify``, run inside the built environment exactly as a session
runs a command (through ``start``, from a copy of the built repository), or an ``expected-failure``
file whose first line must appear in the one-line error the build fails with.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bia_binder.builder import EnvBuilder
from bia_binder.builder.cli import directory_fingerprint, run_environ
from bia_binder.events import LaunchError

HERE = Path(__file__).parent
CASES = sorted(p for p in HERE.glob("*/*") if p.is_dir() and not p.name.startswith(("_", ".")))

#: tiny stand-in for the session packages (jupyterlab etc. are checked once in tests/build)
CONFORMANCE_SESSION_PACKAGES = ["packaging"]


@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory) -> EnvBuilder:
    cache = tmp_path_factory.mktemp("conformance") / "envs"
    return EnvBuilder(cache_dir=str(cache), session_packages=CONFORMANCE_SESSION_PACKAGES, extra_packages={})


def test_every_case_says_what_it_expects() -> None:
    assert len(CASES) >= 30
    for case in CASES:
        has_verify = os.access(case / "verify", os.X_OK)
        has_failure = (case / "expected-failure").is_file()
        assert has_verify != has_failure, f"{case}: needs exactly one of an executable verify or expected-failure"


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
async def test_conformance(case: Path, builder: EnvBuilder, tmp_path: Path) -> None:
    key = builder.cache_key("conformance", directory_fingerprint(case))
    log: list[str] = []
    expected_failure = case / "expected-failure"
    if expected_failure.is_file():
        with pytest.raises(LaunchError) as failure:
            await builder.build(case, key, log.append)
        message = failure.value.message
        assert expected_failure.read_text().splitlines()[0] in message, message
        assert "\n" not in message and "Traceback" not in message
        assert builder.lookup(key) is None, "a failed build must leave nothing to look up"
        return

    env = await builder.build(case, key, log.append)
    assert all(line.endswith("\n") for line in log)
    workdir = tmp_path / "repo"
    shutil.copytree(env.repo_dir, workdir, symlinks=True)
    result = await asyncio.to_thread(
        subprocess.run,
        env.command([str(workdir / "verify")]),
        cwd=workdir,
        env=run_environ(env, workdir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"verify failed:\n{result.stdout}{result.stderr}\nbuild log:\n{''.join(log[-30:])}"
