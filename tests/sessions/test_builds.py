"""Builds run in the sessions' sandbox: the installer (hence a repository's setup.py) and postBuild
run as the build uid, see none of the service's files, and stay within the build's limits."""

from __future__ import annotations

import asyncio
import os
import textwrap
from pathlib import Path

import psutil
import pytest
from traitlets.config import Config

from bia_binder.builder import EnvBuilder
from bia_binder.events import LaunchError

from .conftest import TEST_UIDS, needs_root

pytestmark = needs_root

#: the builds' uid in this run: the last of this run's slot, which its sessions therefore do not use
BUILD_UID = TEST_UIDS[1]

SNOOP = """\
#!/bin/sh
# what a hostile postBuild would try; each answer lands in the checkout (HOME) for the test to read
id -u > "$HOME/postbuild-uid"
cat {secret} > "$HOME/secret-read" 2>/dev/null
ls -A {sessions} > "$HOME/sessions-listing" 2>/dev/null
touch {other_env}/poison 2>/dev/null && echo yes > "$HOME/poisoned"
python -c "import six; print(six.__version__)" > "$HOME/six-version"
echo postBuild-ran
echo written-by-postbuild > "$VIRTUAL_ENV/postbuild-marker"
"""

SETUP_PY = """\
import os
from setuptools import setup

# runs while the installer builds the repository's own package
with open(os.path.join(os.environ["HOME"], "setup-uid"), "w") as f:
    f.write(str(os.getuid()))
setup(name="snooped", version="0.1", py_modules=[])
"""


def make_builder(layout, sandboxes, profile_mem: str = "1G", **sandbox_traits) -> EnvBuilder:
    config = Config()
    config.Sandbox.update(
        state_dir=str(layout.root / "state"),
        cgroup_parent=sandboxes.parent,
        stop_grace=2.0,
        uid_range=(TEST_UIDS[0], TEST_UIDS[1] - 1),
        build_uid=BUILD_UID,
        hidden_paths=[str(layout.hub_dir), str(layout.cache_dir), str(layout.sessions_dir)],
        **sandbox_traits,
    )
    config.ResourceProfiles.anonymous = {"slug": "anonymous", "mem_limit": profile_mem, "cpu_limit": 1, "pids_limit": 256}
    return EnvBuilder(
        config=config,
        cache_dir=str(layout.cache_dir),
        session_packages=[], extra_packages={},
        sandboxed=True,
        uv_cache_dir=str(layout.root / "uv" / "cache"),  # a directory of its own: builds happen beside it
    )


def make_repo(layout, files: dict[str, str]) -> Path:
    repo = Path(layout.root / "source")
    repo.mkdir()
    for name, text in files.items():
        (repo / name).write_text(textwrap.dedent(text))
    return repo


def build(builder: EnvBuilder, repo: Path, key: str = "k1", anonymous: bool = True) -> tuple:
    lines: list[str] = []
    env = asyncio.run(builder.build(repo, key, lines.append, anonymous=anonymous))
    return env, "".join(lines)


def build_processes() -> list[psutil.Process]:
    """Live processes of the build uid (a zombie is dead already; this container's init may never reap it)."""
    return [
        p
        for p in psutil.process_iter(["uids", "status"])
        if p.info["uids"] and p.info["uids"].real == BUILD_UID and p.info["status"] != psutil.STATUS_ZOMBIE
    ]


def test_installer_and_postbuild_run_as_the_build_uid_and_see_no_service_files(layout, sandboxes):
    builder = make_builder(layout, sandboxes)
    snoop = SNOOP.format(
        secret=layout.hub_dir / "jupyterhub_cookie_secret", sessions=layout.sessions_dir, other_env=layout.env_root
    )
    (layout.sessions_dir / "someone-else").mkdir()
    repo = make_repo(layout, {"requirements.txt": "six\n", "setup.py": SETUP_PY, "postBuild": snoop})

    env, log = build(builder, repo)

    checkout = env.repo_dir
    assert (checkout / "postbuild-uid").read_text().strip() == str(BUILD_UID)
    assert (checkout / "setup-uid").read_text().strip() == str(BUILD_UID), "setup.py ran outside the sandbox"
    assert (checkout / "secret-read").read_text() == "", "postBuild read the hub's cookie secret"
    assert (checkout / "sessions-listing").read_text() == "", "postBuild saw other sessions' homes"
    assert not (checkout / "poisoned").exists() and not (layout.env_root / "poison").exists()
    assert (checkout / "six-version").read_text().strip(), "the environment was not usable from postBuild"
    assert (env.env_dir / "postbuild-marker").read_text().strip() == "written-by-postbuild"
    assert "postBuild-ran" in log
    assert env.env_dir.stat().st_uid == BUILD_UID
    six_module = next(env.env_dir.glob("lib/python*/site-packages/six.py"))
    assert six_module.stat().st_nlink > 1, "packages were copied, not hardlinked from uv's cache"
    assert not build_processes(), "the build left processes behind"


def test_tools_below_tmp_are_visible_to_the_build(layout, sandboxes):
    """/tmp is private inside the sandbox; a checkout there (as in CI) still provides uv to its builds."""
    import shutil

    builder = make_builder(layout, sandboxes)
    private_uv = layout.root / "tools" / "uv"
    private_uv.parent.mkdir()
    shutil.copy2(builder.uv_bin, private_uv)
    assert str(private_uv).startswith("/tmp/")
    builder.uv_bin = str(private_uv)
    env, log = build(builder, make_repo(layout, {"requirements.txt": "six\n"}))
    assert (env.env_dir / "bin" / "python").exists(), log


def test_a_memory_hog_in_postbuild_fails_the_build_with_an_out_of_memory_reason(layout, sandboxes):
    builder = make_builder(layout, sandboxes, profile_mem="200M")
    if not builder_sandbox_limits(builder)["memory"]:
        pytest.skip("no memory cgroup on this host")
    hog = "#!/bin/sh\npython -c \"x = bytearray(600 * 2**20); print('allocated')\"\n"
    repo = make_repo(layout, {"requirements.txt": "six\n", "postBuild": hog})

    with pytest.raises(LaunchError, match="ran out of memory") as failure:
        build(builder, repo)

    assert "c.ResourceProfiles.anonymous" in failure.value.message
    assert builder.lookup("k1") is None
    assert not build_processes()


def test_a_build_stopped_by_its_time_limit_leaves_no_processes(layout, sandboxes):
    builder = make_builder(layout, sandboxes)
    builder.build_timeout = 8
    stubborn = "#!/bin/sh\n(trap '' TERM; sleep 600) &\nsetsid sleep 600 &\nsleep 600\n"
    repo = make_repo(layout, {"requirements.txt": "six\n", "postBuild": stubborn})

    with pytest.raises(LaunchError, match="longer than 8 s"):
        build(builder, repo)

    assert not build_processes()
    assert builder.lookup("k1") is None


def test_anonymous_builds_are_refused_where_the_host_cannot_isolate_them(layout, sandboxes):
    builder = make_builder(layout, sandboxes, bwrap_path="/nonexistent/bwrap")
    repo = make_repo(layout, {"requirements.txt": "six\n", "postBuild": "#!/bin/sh\nid -u > \"$HOME/uid\"\n"})

    with pytest.raises(LaunchError, match="cannot isolate") as refused:
        build(builder, repo, anonymous=True)
    assert refused.value.status_code == 503

    # a logged-in user's build still gets what the host can give: its own uid and limits; unsandboxed, that uid
    # must reach uv's cache and the data library itself, which a checkout below a private (0700) directory does
    # not allow (`up` refuses to start there: tests/service/test_refusal.py)
    for needed in (Path(builder.effective_uv_cache_dir() or "/"), Path(builder.data_library_path)):
        if any(not (p.stat().st_mode & 0o001) for p in needed.resolve().parents):
            pytest.skip(f"{needed} lies below a private directory: an unsandboxed build uid cannot reach it")
    env, _ = build(builder, repo, key="k2", anonymous=False)
    assert (env.repo_dir / "uid").read_text().strip() == str(BUILD_UID)


def test_a_build_uid_inside_the_session_range_is_refused(layout, sandboxes):
    builder = make_builder(layout, sandboxes)
    builder.config.Sandbox.build_uid = TEST_UIDS[0]
    builder._sandbox = None
    repo = make_repo(layout, {"requirements.txt": "six\n"})
    with pytest.raises(LaunchError, match="build_uid"):
        build(builder, repo)


def builder_sandbox_limits(builder: EnvBuilder) -> dict[str, bool]:
    from bia_binder.sessions.sandbox import Sandbox

    caps = Sandbox(parent=builder).capabilities
    return {name: check.ok for name, check in caps.limits.items()}


def test_the_uv_cache_is_handed_to_the_build_uid_once(layout, sandboxes):
    builder = make_builder(layout, sandboxes)
    cache = Path(builder.effective_uv_cache_dir())
    (cache / "stale-root-entry").mkdir(parents=True)
    repo = make_repo(layout, {"requirements.txt": "six\n"})
    build(builder, repo)
    assert (cache / "stale-root-entry").stat().st_uid == BUILD_UID
    assert any(p.stat().st_uid == BUILD_UID for p in cache.rglob("*six*"))
    assert os.stat(cache).st_uid == BUILD_UID


def test_the_checkouts_uv_cache_has_a_directory_of_its_own():
    # `make` puts uv's cache at .cache/uv; sandboxed builds hardlink from it only while .cache holds
    # nothing else (EnvBuilder._build_area). OMERO's wheel in .cache/wheels once made every build copy.
    from bia_binder.builder.builder import BUILD_AREA_NAME, CHECKOUT_WHEELS

    checkout = Path(__file__).resolve().parents[2]
    cache = checkout / ".cache"
    if cache.is_dir():
        assert set(os.listdir(cache)) <= {"uv", BUILD_AREA_NAME}
    assert cache not in CHECKOUT_WHEELS.parents
