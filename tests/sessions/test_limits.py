"""Resource profiles are enforced with real processes: memory, pids (fork bombs), CPU."""

from __future__ import annotations

import json
import subprocess
import time

from .conftest import needs_root, small_profile

pytestmark = needs_root

ECHO = """
import sys
for line in sys.stdin:
    print("echo " + line.strip(), flush=True)
"""

HOG = """
chunks = []
print("hogging", flush=True)
while True:
    chunks.append(bytearray(8 * 2**20))  # zero-filled: every page is touched
"""


def test_memory_hog_is_killed_at_its_limit_while_a_neighbour_keeps_working(sandboxes):
    neighbour = sandboxes.session("neighbour", small_profile(mem_limit=128 * 2**20))
    hog = sandboxes.session("hog", small_profile(mem_limit=128 * 2**20))
    echo = sandboxes.start(neighbour, ECHO, stdin=subprocess.PIPE)
    echo.stdin.write("before\n")
    echo.stdin.flush()
    assert echo.stdout.readline().strip() == "echo before"

    hogger = sandboxes.start(hog, HOG)
    _, err = hogger.communicate(timeout=120)

    assert hogger.returncode == 128 + 9, f"hog was not SIGKILLed ({hogger.returncode}): {err}"
    assert hog.cgroup.oom_kills() >= 1
    echo.stdin.write("after\n")
    echo.stdin.flush()
    assert echo.stdout.readline().strip() == "echo after"
    assert neighbour.cgroup.oom_kills() == 0


def test_fork_bomb_is_contained_and_cleaned_up(sandboxes):
    session = sandboxes.session("bomber", small_profile(pids_limit=48, cpu_limit=0.5))
    bomb = sandboxes.start(
        session,
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
    )
    pids_current = session.cgroup.file("pids", "pids.current", "pids.current")
    deadline = time.monotonic() + 60
    peak = 0
    while time.monotonic() < deadline and peak < 48:
        peak = max(peak, int(pids_current.read_text()))
        time.sleep(0.05)
    assert peak == 48  # it filled its quota...
    time.sleep(1)
    assert len(session.pids()) <= 48  # ...and never more
    assert subprocess.run(["true"], timeout=30).returncode == 0  # the host still forks

    session.cleanup()
    bomb.wait(timeout=30)
    assert session.pids() == set()


def test_cpu_quota_caps_a_busy_loop(sandboxes):
    session = sandboxes.session("spinner", small_profile(cpu_limit=0.2))
    code = """
import os, time
start = time.monotonic()
while time.monotonic() - start < 2.0:
    pass
print(time.process_time() / (time.monotonic() - start))
"""
    share = float(sandboxes.run(session, code))
    # at most a fifth of a core (plus scheduler slack); load from others can only lower it
    assert share < 0.3


def test_session_sees_its_own_limits_where_cgroups_are_mounted(sandboxes):
    """Tools that size themselves from cgroup files (dask's cpu_count, JVMs) must find the session's limits."""
    session = sandboxes.session("sizer", small_profile(mem_limit=300 * 2**20, cpu_limit=1.5, pids_limit=99))
    layout = session.cgroup.layout
    files = {
        "memory": session.cgroup.file("memory", "memory.limit_in_bytes", "memory.max"),
        "cpu": session.cgroup.file("cpu", "cpu.cfs_quota_us", "cpu.max"),
        "pids": session.cgroup.file("pids", "pids.max", "pids.max"),
    }
    inside = {c: str(layout.hierarchy_for(c).mount / path.name) for c, path in files.items()}
    code = f"import json; print(json.dumps({{c: open(p).read().strip() for c, p in {inside!r}.items()}}))"
    seen = json.loads(sandboxes.run(session, code))
    assert seen == {c: path.read_text().strip() for c, path in files.items()}
    assert seen["pids"] == "99" and str(300 * 2**20) in seen["memory"]
    listing = sandboxes.run(session, f"import os; print(os.listdir({str(layout.hierarchy_for('memory').mount)!r}))")
    assert sandboxes.parent not in listing  # no other session's groups


def test_private_tmp_is_bounded_by_the_memory_limit(sandboxes):
    """/tmp is a tmpfs charged to the session: filling it ends like a memory hog, not on the host's disk."""
    session = sandboxes.session("filler", small_profile(mem_limit=128 * 2**20))
    code = """
with open("/tmp/big", "wb") as f:
    for _ in range(1024):
        f.write(b"x" * 2**20)
        f.flush()
print("wrote 1 GiB")
"""
    filler = sandboxes.start(session, code)
    out, _ = filler.communicate(timeout=120)
    assert "wrote" not in out and filler.returncode != 0
    assert session.cgroup.oom_kills() >= 1 or filler.returncode == 1  # killed, or its write failed


def test_without_cgroups_the_session_uid_still_bounds_forks_and_cleanup_finds_everything(sandboxes, tmp_path):
    """A host without usable cgroups (here: cgroup_root pointing at a plain directory)."""
    sandbox = sandboxes.sandbox(cgroup_root=str(tmp_path))
    assert (
        not sandbox.capabilities.limits["pids"].ok
        and "no cgroup hierarchy" in sandbox.capabilities.limits["pids"].detail
    )
    session = sandboxes.session("nocgroup", small_profile(pids_limit=24), sandbox=sandbox, anonymous=False)
    assert session.cgroup is None
    code = """
import os, time
children = 0
try:
    while children < 200:
        if os.fork() == 0:
            time.sleep(300)
            os._exit(0)
        children += 1
except OSError:
    pass
print(children, flush=True)
time.sleep(300)
"""
    forker = sandboxes.start(session, code)
    children = int(forker.stdout.readline())
    assert 0 < children < 24  # RLIMIT_NPROC of the session's own uid
    assert len(session.pids()) > children

    session.cleanup()
    forker.wait(timeout=30)
    assert session.pids() == set()
