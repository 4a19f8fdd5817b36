"""A build's limits and log: time limit, disk limit, line-by-line streaming, one build per key, crash safety."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bia_binder.builder import EnvBuilder
from bia_binder.events import LaunchError

pytestmark = pytest.mark.slow


def repo_with_post_build(root: Path, script: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    post_build = root / "postBuild"
    post_build.write_text("#!/bin/sh\n" + script)
    post_build.chmod(0o755)
    return root


def make_builder(tmp_path: Path, **traits) -> EnvBuilder:
    # no session packages: these tests are about limits, not contents
    return EnvBuilder(cache_dir=str(tmp_path / "envs"), session_packages=[], extra_packages={}, **traits)


def processes_with(token: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and token.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


async def wait_until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return predicate()


async def test_build_time_limit_stops_the_build_and_its_children(tmp_path: Path) -> None:
    unique_sleep = f"sleep 600.{os.getpid()}{time.monotonic_ns() % 10**6}"  # findable in /proc, ours alone
    repo = repo_with_post_build(tmp_path / "repo", f"echo started\n{unique_sleep}\n")
    builder = make_builder(tmp_path, build_timeout=8)
    started = time.monotonic()
    with pytest.raises(LaunchError, match=r"took longer than 8 s .*build_timeout") as info:
        await builder.build(repo, "slow", lambda line: None)
    assert info.value.status_code == 500
    assert time.monotonic() - started < 60
    assert builder.lookup("slow") is None
    assert list(builder.cache.tmp_dir.iterdir()) == [], "the half-built environment is removed"
    assert await wait_until(lambda: not processes_with(unique_sleep.replace(" ", "\0")))


async def test_build_disk_limit(tmp_path: Path) -> None:
    repo = repo_with_post_build(tmp_path / "repo", "head -c 40000000 /dev/urandom > big.bin\nsleep 60\n")
    builder = make_builder(tmp_path, disk_limit=20_000_000)
    with pytest.raises(LaunchError, match=r"more than .* GiB of new disk .*disk_limit") as info:
        await builder.build(repo, "big", lambda line: None)
    assert info.value.status_code == 413
    assert builder.lookup("big") is None


async def test_log_streams_line_by_line(tmp_path: Path) -> None:
    repo = repo_with_post_build(tmp_path / "repo", "echo first-line\nsleep 3\necho second-line\n")
    seen: dict[str, float] = {}

    def log(line: str) -> None:
        assert line.endswith("\n")
        seen.setdefault(line.strip(), time.monotonic())

    await make_builder(tmp_path).build(repo, "stream", log)
    assert seen["second-line"] - seen["first-line"] >= 2.5, "each line is delivered when it is printed"


async def test_concurrent_builds_of_one_key_share_one_build(tmp_path: Path) -> None:
    counter = tmp_path / "post-build-runs"
    repo = repo_with_post_build(tmp_path / "repo", f"echo run >> {counter}\nsleep 1\n")
    builder = make_builder(tmp_path)
    logs: tuple[list[str], list[str]] = ([], [])
    first, second = await asyncio.gather(
        builder.build(repo, "shared", logs[0].append), builder.build(repo, "shared", logs[1].append)
    )
    assert first.root == second.root
    assert counter.read_text().splitlines() == ["run"]
    assert any("Built environment" in line for line in logs[1]), "the second caller follows the build's log"


async def test_two_processes_building_one_key_build_it_once(tmp_path: Path) -> None:
    """The hub's spawner and the binder service share the cache: the second waits for the first's build."""
    counter = tmp_path / "post-build-runs"
    repo = repo_with_post_build(tmp_path / "repo", f"echo run >> {counter}\nsleep 3\n")
    other_process = subprocess.Popen([
        sys.executable, "-c",
        "import asyncio, sys; from bia_binder.builder import EnvBuilder\n"
        f"b = EnvBuilder(cache_dir={str(tmp_path / 'envs')!r}, session_packages=[], extra_packages={{}})\n"
        f"asyncio.run(b.build(__import__('pathlib').Path({str(repo)!r}), 'shared', lambda line: None))\n",
    ])  # fmt: skip
    try:
        assert await wait_until(counter.exists, timeout=60), "the other process did not start building"
        log: list[str] = []
        env = await make_builder(tmp_path).build(repo, "shared", log.append)
        assert other_process.wait(timeout=60) == 0
    finally:
        other_process.kill()
    assert counter.read_text().splitlines() == ["run"], "built twice"
    assert any("Another process is building" in line for line in log)
    assert (env.root / "environment.json").is_file()


async def test_kill_9_mid_build_leaves_nothing_to_pick_up(tmp_path: Path) -> None:
    """A builder killed with SIGKILL leaves only a temporary directory, which the next builder removes."""
    # the marker in the repository: a sandboxed build sees its checkout, not the host's /tmp
    repo = repo_with_post_build(tmp_path / "repo", 'echo started\nif [ -e hang ]; then sleep 600; fi\n')
    hang_marker = repo / "hang"
    hang_marker.touch()
    data_dir = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bia_binder.cli", "build", str(repo), "--data-dir", str(data_dir), "--json"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if json.loads(line)["message"] == "started\n":
                break
        else:
            pytest.fail("the build never reached postBuild")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    cache_dir = data_dir / "envs"
    assert [p.name for p in cache_dir.iterdir() if not p.name.startswith(".")] == []
    leftovers = builds_of(proc.pid, cache_dir)
    assert len(leftovers) == 1

    hang_marker.unlink()
    from argparse import Namespace

    from bia_binder.builder.cli import make_builder

    builder = make_builder(Namespace(config=None, data_dir=str(data_dir)))  # the CLI's own: the key matches
    assert not leftovers[0].exists(), "a new builder removes the dead one's leftovers"
    from bia_binder.builder.cli import directory_fingerprint

    key = builder.cache_key("local", directory_fingerprint(repo))
    assert builder.lookup(key) is None
    env = await builder.build(repo, key, lambda line: None)
    assert (env.bin_dir / "python").exists()


def builds_of(pid: int, cache_dir: Path) -> list[Path]:
    """Build directories of process ``pid``: in the cache's .tmp, or (sandboxed builds) in the build area
    beside uv's cache (builder.BUILD_AREA_NAME)."""
    from bia_binder.builder.builder import BUILD_AREA_NAME

    uv_cache = Path(os.environ.get("UV_CACHE_DIR") or cache_dir / ".uv" / "cache")
    areas = [cache_dir / ".tmp", uv_cache.parent / BUILD_AREA_NAME]
    return [p for area in areas if area.is_dir() for p in area.iterdir() if f".{pid}." in p.name]
