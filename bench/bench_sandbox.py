"""Sandbox benchmark (issue 5): what isolation costs, and how many idle sessions fit.

    launch overhead   `jupyter lab` from exec to its first /api answer, sandboxed (disk + prepare + own uid +
                      bubblewrap + cgroups) against a plain process, alternating in the same run after
                      one warm-up of each (target: at most 100 ms more); and, because a JupyterLab start
                      varies by far more than 100 ms on a shared machine, the isolation alone: the
                      session's disk (mkfs + mount of its disk_limit) + prepare + a wrapped `/bin/true`
                      against a plain `/bin/true` (cleanup and disk removal, at stop, shown apart)
    idle session      resident memory of a sandboxed JupyterLab with one idle kernel: PSS summed over
                      the session's processes (shared pages counted once; target: ≤ 150 MB), with its
                      RSS sum (shared libraries counted per process) and its cgroup's memory charge
    capacity          idle sessions (with a kernel) that fit on this machine: the memory available before
                      a bounded sample of concurrent sessions, divided by a session's cgroup charge (what
                      the kernel bills to it: shared pages once, page cache included); MemAvailable's drop
                      over the sample is shown as a cross-check (noisy where others use the machine)

Needs root (uid switch, cgroups) and bubblewrap. Builds a throwaway environment with uv
(jupyterlab + ipykernel) on the host's Python, which session uids can read.

Usage: python bench/bench_sandbox.py [--runs 5] [--sessions 4]   (from the project root, after `make install`)
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from bia_binder.sessions.disks import EphemeralDisks  # noqa: E402
from bia_binder.sessions.profiles import ResourceProfiles  # noqa: E402
from bia_binder.sessions.sandbox import Sandbox, Session  # noqa: E402
from bia_binder.up import free_port  # noqa: E402

TOKEN = "bench"
MB = 2**20
#: the host's interpreter: a session uid cannot reach one below a private /root
HOST_PYTHON = "/usr/bin/python3"


def build_env(root: Path) -> Path:
    env = root / "env"
    uv = shutil.which("uv") or "uv"
    subprocess.run([uv, "venv", "-q", "--python", HOST_PYTHON, str(env)], check=True)
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(env / "bin" / "python"), "jupyterlab", "ipykernel"], check=True
    )
    return env


def lab_command(env: Path, port: int, home: Path) -> list[str]:
    return [
        str(env / "bin" / "jupyter"), "lab", "--no-browser", "--allow-root", f"--port={port}",
        f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={home}",
    ]  # fmt: skip


def wait_for_api(port: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.005)
    raise TimeoutError(f"jupyter lab did not answer within {timeout} s")


class Bench:
    def __init__(self, root: Path, env: Path):
        self.root = root
        self.env = env
        self.sessions_dir = root / "sessions"
        self.sessions_dir.mkdir()
        self.sandbox = Sandbox(
            state_dir=str(root / "state"),
            hidden_paths=[str(self.sessions_dir)],
            cgroup_parent="bia-binder-bench",
            # apart from the service's range: its registry is another file, and cleanup ends a uid's processes
            uid_range=(40000, 40999),
        )
        self.profile = ResourceProfiles().anonymous_profile()
        self.disks = EphemeralDisks(root=str(root / "disks"), sessions_dir=str(self.sessions_dir))
        self.count = 0

    def new_home(self) -> Path:
        self.count += 1
        home = self.sessions_dir / f"bench-{self.count}"
        home.mkdir()
        return home

    def start_plain(self) -> tuple[float, subprocess.Popen]:
        home, port = self.new_home(), free_port()
        started = time.perf_counter()
        env = {"PATH": f"{self.env}/bin:/usr/bin:/bin", "HOME": str(home)}
        process = subprocess.Popen(lab_command(self.env, port, home), env=env, cwd=home, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        wait_for_api(port, process)
        return time.perf_counter() - started, process

    def prepare_session(self) -> Session:
        """As the spawner prepares an anonymous session: its disk, then the sandbox."""
        self.count += 1
        home = self.disks.create(f"bench-{self.count}", self.profile.disk_limit)
        return self.sandbox.prepare(home.name, home, self.profile, readonly=[self.env], anonymous=True)

    def stop_session(self, session: Session) -> None:
        session.cleanup()
        self.disks.delete(session.home.name)

    def start_sandboxed(self) -> tuple[float, subprocess.Popen, Session, int]:
        port = free_port()
        started = time.perf_counter()
        session = self.prepare_session()
        home = session.home
        env = session.environ({"PATH": f"{self.env}/bin:/usr/bin:/bin"})
        process = subprocess.Popen(session.wrap(lab_command(self.env, port, home)), env=env, cwd=home,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            wait_for_api(port, process)
        except BaseException:
            self.stop_session(session)
            raise
        return time.perf_counter() - started, process, session, port


def isolation_overhead(bench: Bench, runs: int) -> tuple[float, float, float]:
    """Median seconds of a plain `/bin/true`, of prepare + wrapped `/bin/true`, and of cleanup."""
    plain, isolated, cleanups = [], [], []
    for _i in range(runs):
        started = time.perf_counter()
        subprocess.run(["/bin/true"], check=True)
        plain.append(time.perf_counter() - started)
        started = time.perf_counter()
        session = bench.prepare_session()
        subprocess.run(session.wrap(["/bin/true"]), env=session.environ({}), check=True)
        isolated.append(time.perf_counter() - started)
        started = time.perf_counter()
        bench.stop_session(session)
        cleanups.append(time.perf_counter() - started)
    return statistics.median(plain), statistics.median(isolated), statistics.median(cleanups)


def stop_plain(process: subprocess.Popen) -> None:
    os.killpg(process.pid, 9)
    process.wait(30)


def start_idle_kernel(port: int, session: Session) -> None:
    """Start a kernel and wait until the session's memory stops growing (the kernel finished starting).

    Polls memory rather than ``execution_state``: the server reports ``starting`` until a client connects.
    """
    headers = {"Authorization": f"token {TOKEN}"}
    httpx.post(
        f"http://127.0.0.1:{port}/api/kernels", json={"name": "python3"}, headers=headers, timeout=60
    ).raise_for_status()
    deadline, previous = time.monotonic() + 120, 0.0
    while time.monotonic() < deadline:
        time.sleep(1)
        rss = footprint(session)[0]
        if len(session.pids()) >= 4 and abs(rss - previous) < 0.02 * rss:
            return
        previous = rss
    raise TimeoutError("the kernel did not settle within 120 s")


def footprint(session: Session) -> tuple[float, float, float]:
    """RSS and PSS summed over the session's processes, and its cgroup's memory charge, in MB."""
    rss = pss = 0
    for pid in session.pids():
        try:
            info = psutil.Process(pid).memory_full_info()
        except psutil.NoSuchProcess:
            continue
        rss, pss = rss + info.rss, pss + info.pss
    charged = session.cgroup.memory_usage() if session.cgroup else None
    return rss / MB, pss / MB, (charged or 0) / MB


def remove_cgroup_parent(sandbox: Sandbox) -> None:
    for hierarchy in sandbox.cgroup_layout.hierarchies:
        parent = hierarchy.mount / sandbox.cgroup_parent
        if parent.is_dir():
            parent.rmdir()


def mem_available() -> int:
    return psutil.virtual_memory().available


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5, help="launches of each kind (alternating)")
    parser.add_argument(
        "--sessions", type=int, default=4, help="idle sessions started together for the capacity sample"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_sandbox: run as root (sessions switch uid and get cgroups)")
    report = Sandbox().capabilities
    if not report.isolated:
        sys.exit("bench_sandbox: this host lacks a guarantee; see `bia-binder doctor`")

    root = Path(tempfile.mkdtemp(prefix="bia-bench-sandbox-", dir="/tmp"))
    root.chmod(0o755)
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, root, ignore_errors=True)
        print("building the benchmark environment (uv: jupyterlab, ipykernel)...", flush=True)
        bench = Bench(root, build_env(root))
        cleanup.callback(remove_cgroup_parent, bench.sandbox)

        plain, sandboxed = [], []
        for _run in range(args.runs + 1):  # run 0 warms the page cache for both
            seconds, process = bench.start_plain()
            plain.append(seconds)
            stop_plain(process)
            seconds, process, session, _ = bench.start_sandboxed()
            sandboxed.append(seconds)
            bench.stop_session(session)
            process.wait(30)
        plain, sandboxed = plain[1:], sandboxed[1:]
        true_plain, true_isolated, cleanup_time = isolation_overhead(bench, 20)

        sessions: list[Session] = []
        cleanup.callback(lambda: [bench.stop_session(s) for s in sessions])
        before = mem_available()
        for _ in range(args.sessions):
            _, process, session, port = bench.start_sandboxed()
            sessions.append(session)
            start_idle_kernel(port, session)
        time.sleep(3)  # let start-up garbage settle
        after = mem_available()
        samples = [footprint(s) for s in sessions]

    p, s = statistics.median(plain), statistics.median(sandboxed)
    rss, pss, charged = (statistics.median(x[i] for x in samples) for i in range(3))
    drop_per_session = max(before - after, 1) / args.sessions
    fit = math.floor(before / (charged * MB))
    total = psutil.virtual_memory().total
    print(f"\nSandbox benchmark ({args.runs} launches each, {args.sessions} concurrent idle sessions; medians)\n")
    print("| measurement | value | target | target met |")
    print("|---|---|---|---|")
    print(f"| `jupyter lab` start, plain process | {p * 1000:.0f} ms | - | - |")
    print(f"| `jupyter lab` start, sandboxed (disk + uid + bwrap + cgroups) | {s * 1000:.0f} ms | - | - |")
    print(
        f"| sandbox overhead, whole launch | {(s - p) * 1000:+.0f} ms | ≤ 100 ms | {'yes' if s - p <= 0.1 else 'no'} |"
    )
    overhead = true_isolated - true_plain
    print(
        f"| sandbox overhead alone (disk + prepare + wrapped `/bin/true`, 20 runs) | {overhead * 1000:+.0f} ms "
        f"| ≤ 100 ms | {'yes' if overhead <= 0.1 else 'no'} |"
    )
    print(f"| session cleanup at stop (kill all, remove cgroups, free uid, remove disk) | {cleanup_time * 1000:.0f} ms | - | - |")
    print(f"| idle session with a kernel: PSS (sum) | {pss:.0f} MB | ≤ 150 MB | {'yes' if pss <= 150 else 'no'} |")
    print(f"| idle session with a kernel: RSS (sum) / cgroup charge | {rss:.0f} MB / {charged:.0f} MB | - | - |")
    print(
        f"| idle sessions that fit ({total / 2**30:.0f} GB machine, {before / 2**30:.1f} GB available, by cgroup charge) | {fit} | - | - |"
    )
    print(
        f"| cross-check: MemAvailable drop per idle session (sample of {args.sessions}) | {drop_per_session / MB:.0f} MB "
        f"→ {math.floor(before / drop_per_session)} sessions | - | - |"
    )


if __name__ == "__main__":
    main()
