"""Load benchmarks (issue 12): mixed load and idle capacity, on a real `bia-binder up` stack.

    mixed      100 launches of 10 repositories, 10 at a time: each worker launches, waits for `ready`,
               stops the session and takes the next launch. The first launch of each repository builds
               it (built by whichever launch comes first; the others follow that build). Reported:
               failures, seconds to `ready` (p50/p95/p99/max) for launches that built or followed a
               build and for launches of an environment already built; the baseline is one warm launch
               on the idle stack, measured in the same run (median of 3).
    capacity   idle sessions launched two at a time until admission refuses (429): how many this host
               holds (c.Admission.max_sessions derived from free memory and disk), and at that point the
               latency of /health, of a refused launch, and of a cell (new kernel) in the first session, next to the
               same measured with a single session running (same run).

Usage: python bench/bench_load.py [--scenario mixed|capacity|both] [--launches 100] [--repos 10]
       [--parallel 10]   (from the project root, as root)
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_workshop import percentile, stop_sessions  # noqa: E402
from tests.kernel import run_cell  # noqa: E402
from tests.stack import BinderStack, read_events  # noqa: E402

# small pure-Python requirements: each repository a different environment, each quick to install
PACKAGES = ["six", "toolz", "attrs", "idna", "click", "pytz", "wrapt", "tabulate", "colorama", "decorator"]


def user_of(ready: dict) -> str:
    return ready["url"].rstrip("/").rsplit("/", 1)[-1]


def timed_launch(stack: BinderStack, spec: str) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    try:
        events = read_events(f"{stack.url}/build/{spec}", 900)
    except httpx.HTTPError as e:
        events = [{"phase": "failed", "message": type(e).__name__}]
    return time.perf_counter() - started, events or [{"phase": "failed", "message": "no events"}]


def built_here(events: list[dict]) -> bool:
    """Did this launch build (or follow a build under way), rather than find the environment built?"""
    return any(e.get("phase") == "building" for e in events)


def mixed(launches: int, repos: int, parallel: int) -> None:
    with BinderStack() as stack:
        specs = [
            stack.git_spec(f"mixed/repo{i}", {"requirements.txt": f"{PACKAGES[i % len(PACKAGES)]}\n", "README.md": f"# {i}\n"})
            for i in range(repos)
        ]
        baseline_spec = stack.git_spec("mixed/baseline", {"requirements.txt": "six\n"})
        _took, events = timed_launch(stack, baseline_spec)  # builds it
        stop_sessions(stack, [user_of(events[-1])])
        baseline = []
        for _ in range(3):
            took, events = timed_launch(stack, baseline_spec)
            baseline.append(took)
            stop_sessions(stack, [user_of(events[-1])])

        def one(i: int) -> tuple[float, list[dict]]:
            took, events = timed_launch(stack, specs[i % repos])
            if events[-1]["phase"] == "ready":
                stop_sessions(stack, [user_of(events[-1])])
            return took, events

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            results = list(pool.map(one, range(launches)))
        wall = time.perf_counter() - started
    failures = [events[-1] for _t, events in results if events[-1]["phase"] != "ready"]
    for last in failures[:3]:
        print(f"  failed: {str(last.get('message', '')).strip()[:200]}", file=sys.stderr)
    cold = [t for t, events in results if events[-1]["phase"] == "ready" and built_here(events)]
    warm = [t for t, events in results if events[-1]["phase"] == "ready" and not built_here(events)]
    print(f"\n{launches} launches of {repos} repositories, {parallel} at a time: {wall:.0f} s in all, {len(failures)} failures\n")
    print("| launches | count | p50 to ready | p95 | p99 | max |")
    print("|---|---|---|---|---|---|")
    for name, times in (("built or followed a build", cold), ("environment already built", warm)):
        cells = " | ".join(f"{percentile(times, q):.1f} s" for q in (50, 95, 99, 100))
        print(f"| {name} | {len(times)} | {cells} |")
    print(f"| baseline: one warm launch, idle stack (median of 3) | 3 | {statistics.median(baseline):.1f} s | | | |")


def latencies(stack: BinderStack, first: dict, spec: str, samples: int = 10) -> dict[str, float]:
    """Median seconds of /health, of a launch answered by admission (or a launch to ready), of a cell."""
    with httpx.Client(timeout=30) as client:
        health = []
        for _ in range(samples):
            started = time.perf_counter()
            client.get(f"{stack.url}/health")
            health.append(time.perf_counter() - started)
    cells = []
    for _ in range(3):
        started = time.perf_counter()
        asyncio.run(run_cell(first["url"], first["token"], "print(6 * 7)", timeout=60))
        cells.append(time.perf_counter() - started)
    return {"health": statistics.median(health), "cell": statistics.median(cells)}


def capacity(parallel: int = 2) -> None:
    with BinderStack() as stack:
        spec = stack.git_spec("capacity/repo", {"requirements.txt": "six\n"})
        _took, events = timed_launch(stack, spec)  # builds the environment
        first = events[-1]
        if first["phase"] != "ready":
            raise RuntimeError(f"first launch failed: {first}")
        one_session = latencies(stack, first, spec)
        one_session["launch"], events = timed_launch(stack, spec)
        running, refused, errors, launch_times = [first, events[-1]], None, [], []
        started = time.perf_counter()
        while refused is None and time.perf_counter() - started < 3600:
            with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
                batch = list(pool.map(lambda _i: timed_launch(stack, spec), range(parallel)))
            for took, events in batch:
                last = events[-1]
                if last["phase"] == "ready":
                    running.append(last)
                    launch_times.append(took)
                elif last.get("status_code") == 429:
                    refused = (took, last)
                else:
                    errors.append(last)
        if refused is None:
            raise RuntimeError("admission never refused within an hour")
        full = latencies(stack, first, spec)
        full["launch"] = refused[0]
        memory = httpx.get(f"{stack.url}/health", timeout=30).json()
        stop_sessions(stack, [user_of(r) for r in running])
    print(f"\nidle sessions held before admission refused: {len(running)} ({len(errors)} other failures)")
    print(f"refusal: {str(refused[1].get('message', '')).strip()[:200]}")
    print(f"launch to ready while filling: p50 {percentile(launch_times, 50):.1f} s, p95 {percentile(launch_times, 95):.1f} s\n")
    print("| latency (median) | 1 session running | host full |")
    print("|---|---|---|")
    print(f"| /health | {one_session['health'] * 1000:.0f} ms | {full['health'] * 1000:.0f} ms |")
    print(f"| a cell in a running session (start a kernel, run, shut it down) | {one_session['cell'] * 1000:.0f} ms | {full['cell'] * 1000:.0f} ms |")
    print(f"| a launch (to ready / refused with 429) | {one_session['launch']:.1f} s | {full['launch']:.2f} s |")
    admission = next((c for c in memory.get("checks", []) if c.get("service") == "Admission"), None)
    if admission:
        print(f"\nadmission at that point: {admission}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=["mixed", "capacity", "both"], default="both")
    parser.add_argument("--launches", type=int, default=100)
    parser.add_argument("--repos", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=10)
    args = parser.parse_args()
    if args.scenario in ("mixed", "both"):
        mixed(args.launches, args.repos, args.parallel)
    if args.scenario in ("capacity", "both"):
        capacity()


if __name__ == "__main__":
    main()
