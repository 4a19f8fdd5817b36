"""Launch benchmark (issue 2): warm and cold launches against the floor, in one run.

    floor        a bare `jupyter server` started from the same environment until its /api answers
    warm launch  request to `ready` for an environment already built (target ≤ 1.3× floor)
    cold launch  request to `ready` for a new commit of a typical bioimage repository, with uv's
                 package cache warm (target ≤ 15 s)

Usage: python bench/bench_launch.py [--runs 5]   (from the project root, after `make install`)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.stack import BinderStack, free_port  # noqa: E402

BIOIMAGE = "numpy\nscipy\nscikit-image\nzarr\ndask\nome-zarr\nmatplotlib\npandas\n"


def timed_launch(stack: BinderStack, spec: str) -> tuple[float, dict]:
    started = time.perf_counter()
    events = stack.launch(spec)
    elapsed = time.perf_counter() - started
    if events[-1]["phase"] != "ready":
        raise RuntimeError(f"launch failed: {events[-1]}")
    return elapsed, events[-1]


def bare_server_start(env_dir: Path, workdir: Path) -> float:
    """Seconds from exec to the first answer of /api, for `jupyter server` from the environment."""
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(env_dir / "bin" / "jupyter"), "server", "--no-browser", "--allow-root", f"--port={port}",
         "--IdentityProvider.token=bench", f"--ServerApp.root_dir={workdir}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        while proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api", timeout=2).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                time.sleep(0.01)
        raise RuntimeError(f"jupyter server exited with {proc.returncode}")
    finally:
        proc.terminate()
        proc.wait(30)


def warm_uv_cache(requirements: str) -> None:
    """Install the list once into a throwaway venv so the cold launches measure builds, not downloads."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["uv", "venv", "-q", f"{tmp}/venv"], check=True)
        subprocess.run(["uv", "pip", "install", "-q", "--python", f"{tmp}/venv/bin/python", *requirements.split(), "jupyterlab", "jupyterhub"], check=True)


def stop_session(stack: BinderStack, ready: dict) -> None:
    """Keep the machine quiet between runs: stop the session we just measured."""
    httpx.post(f"{ready['url']}api/shutdown", headers={"Authorization": f"token {ready['token']}"}, timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    warm_uv_cache(BIOIMAGE)
    with BinderStack() as stack:
        clone_url, _ = stack.git.create_repo("bench/bioimage", {"requirements.txt": BIOIMAGE})
        from urllib.parse import quote

        base_spec = f"git/{quote(clone_url, safe='')}"
        cold, warm, floor = [], [], []
        for run in range(args.runs):
            sha = stack.git.commit("bench/bioimage", {"run.txt": f"{run}\n"})
            seconds, ready = timed_launch(stack, f"{base_spec}/{sha}")
            cold.append(seconds)
            stop_session(stack, ready)
        env_dir = Path(stack.data_dir) / "envs" / ready["image"] / "env"
        for _ in range(args.runs):
            seconds, ready = timed_launch(stack, f"{base_spec}/{sha}")
            warm.append(seconds)
            stop_session(stack, ready)
            floor.append(bare_server_start(env_dir, Path(stack.data_dir)))
    f, w, c = (statistics.median(x) for x in (floor, warm, cold))
    print(f"\nLaunch benchmark ({args.runs} runs each, medians; same machine, same run)\n")
    print("| measurement | median | floor / target | ratio | target met |")
    print("|---|---|---|---|---|")
    print(f"| bare `jupyter server` start (floor) | {f:.2f} s | - | - | - |")
    print(f"| warm launch, request → ready | {w:.2f} s | {f:.2f} s floor | {w / f:.2f}× | {'yes' if w <= 1.3 * f else 'no'} (≤ 1.3×) |")
    print(f"| cold launch, bioimage stack, uv cache warm | {c:.2f} s | 15 s | - | {'yes' if c <= 15 else 'no'} (≤ 15 s) |")


if __name__ == "__main__":
    main()
