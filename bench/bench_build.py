"""Build benchmark (issue 3): the environment builder against `python -m venv` + `pip install -r`, in one run.

    cold build     the bioimage list with empty package caches: builder (uv) vs venv+pip   (target ≤ 0.25×)
    warm rebuild   an equal environment again (a new commit, same requirements), uv's cache warm (target ≤ 3 s)
    extra env      disk a second environment with the same packages adds, vs a full copy   (target ≤ 10 %)

Each number is the median of --runs runs. Both sides build the same environment: the list plus the
session packages every environment gets (jupyterhub, the data library's dependencies).

Usage: python bench/bench_build.py [--runs 3] [--work-dir DIR]   (needs network access to the package index)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bia_binder.builder import EnvBuilder
from bia_binder.builder.cache import own_disk_usage

BIOIMAGE = ["numpy", "scipy", "scikit-image", "zarr", "dask", "ome-zarr", "matplotlib", "pandas", "jupyterlab"]


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    (repo / "requirements.txt").write_text("\n".join(BIOIMAGE) + "\n")
    return repo


def builder_build(work: Path, repo: Path, uv_cache: Path, key: str, reuse_resolution: bool) -> tuple[float, Path]:
    builder = EnvBuilder(
        cache_dir=str(work / "envs"),
        uv_cache_dir=str(uv_cache),
        resolution_reuse_seconds=600 if reuse_resolution else 0,
        sandboxed=os.geteuid() == 0,  # as `bia-binder up` builds: in the sessions' sandbox, as the build uid
    )
    started = time.perf_counter()
    env = asyncio.run(builder.build(repo, key, lambda line: None))
    return time.perf_counter() - started, env.env_dir


def pip_build(work: Path, repo: Path, python: str, session_packages: list[str]) -> float:
    """The baseline: the same environment (the list plus the session packages) with venv and pip."""
    venv, pip_cache = work / f"pip-venv-{time.monotonic_ns()}", work / f"pip-cache-{time.monotonic_ns()}"
    started = time.perf_counter()
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "-q",
            "--cache-dir",
            str(pip_cache),
            "-r",
            str(repo / "requirements.txt"),
            *session_packages,
        ],
        check=True,
    )
    elapsed = time.perf_counter() - started
    shutil.rmtree(venv, ignore_errors=True)
    shutil.rmtree(pip_cache, ignore_errors=True)
    return elapsed


def apparent_disk_usage(path: Path) -> int:
    """Bytes a full, unshared copy of ``path`` would take."""
    return sum(os.lstat(os.path.join(d, f)).st_blocks * 512 for d, _, files in os.walk(path) for f in files)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work-dir", default=None, help="scratch directory (default: a temporary one)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    work = Path(tempfile.mkdtemp(prefix="bench-build-", dir=args.work_dir))
    work.chmod(0o755)  # sandboxed builds run as another uid, which must reach the caches in here
    defaults = EnvBuilder(cache_dir=str(work / "probe"))
    try:
        repo = make_repo(work)
        cold, pip, warm, extra = [], [], [], []
        for run in range(args.runs):
            cold_cache = work / f"uv-cold-{run}" / "cache"  # a directory of its own (see EnvBuilder._build_area)
            cold.append(builder_build(work, repo, cold_cache, f"cold-{run}", reuse_resolution=False)[0])
            if run < args.runs - 1:
                shutil.rmtree(cold_cache)
            pip.append(pip_build(work, repo, defaults.python, defaults.session_packages))
            print(
                f"run {run + 1}/{args.runs}: builder cold {cold[-1]:.1f} s, venv+pip {pip[-1]:.1f} s", file=sys.stderr
            )
        warm_cache = cold_cache  # the last cold build filled it
        _, first_env = builder_build(work, repo, warm_cache, "warm-first", reuse_resolution=True)
        for run in range(args.runs):
            seconds, env_dir = builder_build(work, repo, warm_cache, f"warm-{run}", reuse_resolution=True)
            warm.append(seconds)
            extra.append(own_disk_usage(env_dir.parent) / apparent_disk_usage(env_dir.parent))
        full_copy = apparent_disk_usage(first_env.parent)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cold_ratio = statistics.median(cold) / statistics.median(pip)
    rows = [
        (
            "cold build (builder / venv+pip)",
            f"{statistics.median(cold):.1f} s / {statistics.median(pip):.1f} s",
            f"{cold_ratio:.2f}×",
            "≤ 0.25×",
            cold_ratio <= 0.25,
        ),
        (
            "warm rebuild, equal environment",
            f"{statistics.median(warm):.2f} s",
            "",
            "≤ 3 s",
            statistics.median(warm) <= 3,
        ),
        (
            "extra environment's own disk",
            f"{statistics.median(extra) * full_copy / 2**20:.1f} MiB of {full_copy / 2**20:.0f} MiB",
            f"{statistics.median(extra):.1%}",
            "≤ 10 %",
            statistics.median(extra) <= 0.10,
        ),
    ]
    print(f"\nenvironment build, median of {args.runs} runs ({', '.join(BIOIMAGE)})")
    print(f"{'metric':34} {'measured':28} {'ratio':>7}  {'target':8} ok")
    for name, measured, ratio, target, ok in rows:
        print(f"{name:34} {measured:28} {ratio:>7}  {target:8} {'yes' if ok else 'NO'}")
    return 0 if all(row[-1] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
