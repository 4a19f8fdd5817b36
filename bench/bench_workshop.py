"""Workshop benchmark (issue 12): N launches of one repository within 10 s, without and with a pool of N.

    no pool     the environment is built beforehand (a workshop's repository is launched the day before);
                the burst spawns N sessions, queued `LaunchQueue.concurrency` at a time
    pool of N   `c.Pool.warm = {spec: N}`; once the pool is full, the burst is handed its servers

For each: p50/p95/p99/max seconds from request to `ready`, failures, and the latency of `/health`
polled every 0.2 s during the burst (p50/p99). The baseline (no pool) is measured in the same run.

Usage: python bench/bench_workshop.py [--n 30] [--window 10] [--runs 1]   (from the project root, as root)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.gitserver import GitServer  # noqa: E402
from tests.stack import BinderStack, hub_api, read_events  # noqa: E402

REPO = {"requirements.txt": "six\n", "README.md": "# A workshop\n"}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class HealthProbe(threading.Thread):
    """/health latencies, every 0.2 s, until stopped."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.latencies, self.errors = url, [], 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop_event.is_set():
                started = time.perf_counter()
                try:
                    client.get(f"{self.url}/health")
                    self.latencies.append(time.perf_counter() - started)
                except httpx.HTTPError:
                    self.errors += 1
                self._stop_event.wait(0.2)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def burst(stack: BinderStack, spec: str, n: int, window: float) -> dict:
    """n launches started evenly over `window` seconds; each one's seconds to ready (or failure)."""
    begin = time.perf_counter()

    def one(i: int) -> tuple[float | None, dict]:
        time.sleep(max(0.0, begin + i * window / n - time.perf_counter()))
        started = time.perf_counter()
        try:
            events = read_events(f"{stack.url}/build/{spec}", 900)
        except httpx.HTTPError as e:
            return None, {"phase": "failed", "message": f"{type(e).__name__}"}
        last = events[-1] if events else {"phase": "failed", "message": "no events"}
        return (time.perf_counter() - started if last["phase"] == "ready" else None), last

    probe = HealthProbe(stack.url)
    probe.start()
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    probe.stop()
    times = [t for t, _ in results if t is not None]
    failures = [last for t, last in results if t is None]
    for last in failures[:3]:
        print(f"  failed: {last.get('message', '').strip()[:200]}", file=sys.stderr)
    users = [last["url"].rstrip("/").rsplit("/", 1)[-1] for t, last in results if t is not None]
    return {"times": times, "failures": len(failures), "health": probe.latencies, "health_errors": probe.errors, "users": users}


def stop_sessions(stack: BinderStack, users: list[str]) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: hub_api(stack, "DELETE", f"users/{name}"), users))


def pool_idle(stack: BinderStack) -> int:
    checks = httpx.get(f"{stack.url}/health", timeout=30).json()["checks"]
    return next((c["idle"] for c in checks if c["service"] == "Pool"), 0)


def run_scenario(spec: str, n: int, window: float, pooled: bool, data_root: Path) -> dict:
    config = f"c.Pool.warm = {{{spec!r}: {n}}}\nc.Pool.refill_interval = 2\n" if pooled else ""
    # one data dir for both scenarios (a restart in between): the environment is built once
    with BinderStack(data_dir=data_root / "data", config=config) as stack:
        stack.git.stop()  # the repository lives on the module's own server
        if pooled:
            started = time.perf_counter()
            while pool_idle(stack) < n:
                if time.perf_counter() - started > 1800:
                    raise RuntimeError(f"the pool did not fill: {pool_idle(stack)} of {n}")
                time.sleep(1)
            fill = time.perf_counter() - started
        else:
            warm = read_events(f"{stack.url}/build/{spec}", 900)[-1]  # the build, the day before
            if warm["phase"] != "ready":
                raise RuntimeError(f"warm-up launch failed: {warm}")
            stop_sessions(stack, [warm["url"].rstrip("/").rsplit("/", 1)[-1]])
            fill = None
        result = burst(stack, spec, n, window)
        result["fill"] = fill
        stop_sessions(stack, result["users"])
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30, help="launches in the burst (and pool size)")
    parser.add_argument("--window", type=float, default=10, help="seconds over which the launches start")
    parser.add_argument("--runs", type=int, default=1, help="runs of each scenario (medians of the percentiles)")
    args = parser.parse_args()
    import tempfile

    git = GitServer().start()
    url, _ = git.create_repo("org/course", REPO)
    spec = f"git/{quote(url, safe='')}/HEAD"
    rows = {False: [], True: []}
    try:
        with tempfile.TemporaryDirectory(prefix="bb-bench-") as root:  # short: socket paths live below it
            for _run in range(args.runs):
                for pooled in (False, True):  # the baseline first: it also builds the environment
                    rows[pooled].append(run_scenario(spec, args.n, args.window, pooled, Path(root)))
    finally:
        git.stop()

    def med(runs, fn):
        return statistics.median(fn(r) for r in runs)

    print(f"\n{args.n} launches of one repository started within {args.window:g} s ({args.runs} run(s) each)\n")
    print("| scenario | p50 to ready | p95 | p99 | max | failures | /health p50 | /health p99 | pool filled in |")
    print("|---|---|---|---|---|---|---|---|---|")
    for pooled, runs in rows.items():
        name = f"pool of {args.n}" if pooled else "no pool (environment built)"
        cells = [med(runs, lambda r, q=q: percentile(r["times"], q)) for q in (50, 95, 99, 100)]
        health = [med(runs, lambda r, q=q: percentile(r["health"], q)) for q in (50, 99)]
        failures = sum(r["failures"] for r in runs)
        fill = f"{med(runs, lambda r: r['fill']):.0f} s" if pooled else "–"
        print(
            f"| {name} | {cells[0]:.2f} s | {cells[1]:.2f} s | {cells[2]:.2f} s | {cells[3]:.2f} s | {failures} "
            f"| {health[0] * 1000:.0f} ms | {health[1] * 1000:.0f} ms | {fill} |"
        )


if __name__ == "__main__":
    main()
