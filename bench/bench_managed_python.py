"""Managed Python benchmark (issue 13, item 4): a repository asking for a Python the host lacks, against
the same repository on the host's Python, in one run.

    install        uv installs the managed Python (Debian's PyPy 3.9, repackaged) from a loopback mirror
    build 3.9      runtime.txt python-3.9: install from the mirror + environment (notebook server included)
    build host     the same repository without runtime.txt: the host's Python (the baseline)

Each build gets an empty environment cache and managed-Python directory (so "build 3.9" includes the
install) and a warm uv package cache (one untimed build of each first). Median of --runs runs,
interleaved so load spikes hit both alike. Sandboxed as `bia-binder up` builds when run as root.

Usage: python bench/bench_managed_python.py [--runs 3] [--work-dir DIR]   (PyPI for the packages;
apt for Debian's PyPy the first time)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bia_binder.builder import EnvBuilder  # noqa: E402
from tests.pythonmirror import PythonMirror, debian_pypy_build  # noqa: E402


def make_repo(root: Path, runtime: str | None) -> Path:
    repo = root / ("repo-" + (runtime or "host"))
    repo.mkdir()
    (repo / "requirements.txt").write_text("psutil<6\n")  # what PyPy 3.9 needs (see docs/fidelity.md)
    if runtime:
        (repo / "runtime.txt").write_text(runtime + "\n")
    return repo


def builder(work: Path, mirror: PythonMirror, tag: str) -> EnvBuilder:
    return EnvBuilder(
        cache_dir=str(work / f"envs-{tag}-{time.monotonic_ns()}"),
        uv_cache_dir=str(work / "uv" / "cache"),
        python_downloads_json_url=mirror.downloads_json_url,
        python_implementations=["cpython", "pypy"],
        sandboxed=os.geteuid() == 0,
    )


def timed_build(work: Path, mirror: PythonMirror, repo: Path, tag: str) -> float:
    started = time.perf_counter()
    asyncio.run(builder(work, mirror, tag).build(repo, "bench", lambda line: None))
    return time.perf_counter() - started


def timed_install(work: Path, mirror: PythonMirror, version: str) -> float:
    managed = builder(work, mirror, "install").managed_pythons()
    started = time.perf_counter()
    assert asyncio.run(managed.install(version, lambda line: None)) is not None
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work-dir", default=None)
    args = parser.parse_args()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-managed-python-"))
    work.chmod(0o755)
    build = debian_pypy_build()
    served = work / "mirror"
    served.mkdir(exist_ok=True)
    mirror = PythonMirror([build], served).start()
    try:
        version = build.minor_version
        managed_repo, host_repo = make_repo(work, f"python-{version}"), make_repo(work, None)
        for repo, tag in ((managed_repo, "warm"), (host_repo, "warm")):
            timed_build(work, mirror, repo, tag)  # untimed: fills uv's package cache
        results: dict[str, list[float]] = {"install": [], f"build {version}": [], "build host": []}
        for _ in range(args.runs):
            results["install"].append(timed_install(work, mirror, version))
            results[f"build {version}"].append(timed_build(work, mirror, managed_repo, "managed"))
            results["build host"].append(timed_build(work, mirror, host_repo, "host"))
    finally:
        mirror.stop()
    print(f"| measure ({build.implementation} {build.major}.{build.minor}.{build.patch} from a loopback mirror) | median s | runs |")
    print("|---|---|---|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.1f} | {', '.join(f'{v:.1f}' for v in values)} |")


if __name__ == "__main__":
    main()
