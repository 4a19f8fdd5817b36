"""The on-disk uid/GPU registry, and reading cgroup layouts (v1, v2, hybrid) from mountinfo."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from bia_binder.events import LaunchError
from bia_binder.sessions.cgroups import CgroupLayout, CgroupLimits, Hierarchy, parse_mountinfo
from bia_binder.sessions.sandbox import SessionRegistry


def test_uids_are_stable_per_name_and_never_shared(tmp_path):
    registry = SessionRegistry(tmp_path / "sessions.json", (20000, 20002))
    first, _ = registry.allocate("alpha")
    assert registry.allocate("alpha")[0] == first  # same session, same uid
    beta, gamma = registry.allocate("beta")[0], registry.allocate("gamma")[0]
    assert len({first, beta, gamma}) == 3 and {first, beta, gamma} <= {20000, 20001, 20002}
    with pytest.raises(LaunchError, match="uid_range"):
        registry.allocate("delta")

    # another process (a new registry object on the same file) sees the allocations and the release
    registry.release("beta")
    assert SessionRegistry(tmp_path / "sessions.json", (20000, 20002)).allocate("delta")[0] == beta
    registry.release("alpha")
    assert SessionRegistry(tmp_path / "fresh.json", (20000, 20002)).allocate("alpha")[0] == first  # deterministic


def test_gpus_are_given_to_one_session_at_a_time(tmp_path):
    registry = SessionRegistry(tmp_path / "sessions.json", (20000, 29999))
    assert registry.allocate("a", 1, [0, 1])[1] == [0]
    assert registry.allocate("b", 1, [0, 1])[1] == [1]
    with pytest.raises(LaunchError) as busy:
        registry.allocate("c", 1, [0, 1])
    assert busy.value.status_code == 429
    registry.release("a")
    assert registry.allocate("c", 1, [0, 1])[1] == [0]


# real /proc/self/mountinfo lines: a hybrid host (this one) and a v2-only systemd host
HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V2_ONLY = """\
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
29 22 0:25 / /proc/fs/nfsd rw,relatime shared:11 - nfsd nfsd rw
"""


def test_hybrid_layout_takes_limits_from_v1_and_tracking_from_v2(tmp_path):
    text = HYBRID.replace("/sys/fs/cgroup", str(tmp_path))
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("hugetlb\n")
    layout = CgroupLayout(parse_mountinfo(text, tmp_path))
    assert layout.v2 is not None and layout.v2.mount == tmp_path / "unified"
    assert {c: layout.hierarchy_for(c).mount.name for c in ("memory", "cpu", "pids")} == {
        "memory": "memory",
        "cpu": "cpu",
        "pids": "pids",
    }


def test_v2_only_layout_takes_every_controller_from_v2(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    layout = CgroupLayout(parse_mountinfo(V2_ONLY.replace("/sys/fs/cgroup", str(tmp_path)), tmp_path))
    assert [h.version for h in layout.hierarchies] == [2]
    assert all(layout.hierarchy_for(c) == layout.v2 for c in ("memory", "cpu", "pids"))
    assert parse_mountinfo(V2_ONLY, Path("/elsewhere")) == []


def test_v2_limits_are_written_in_the_kernels_v2_format(tmp_path):
    """This host has no v2 controllers; check the v2 writes on a directory laid out like one."""
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    layout = CgroupLayout([Hierarchy(tmp_path, 2, frozenset({"cpu", "memory", "pids"}))])
    group = layout.create("bia-binder", "s1", CgroupLimits(memory_bytes=2**30, cpus=1.5, pids=64))

    session_dir = tmp_path / "bia-binder" / "s1"
    assert group.directories == [session_dir]
    assert (session_dir / "memory.max").read_text() == str(2**30)
    assert (session_dir / "cpu.max").read_text() == "150000 100000"
    assert (session_dir / "pids.max").read_text() == "64"
    for parent in (tmp_path, tmp_path / "bia-binder"):
        assert set((parent / "cgroup.subtree_control").read_text().split()) == {"+memory", "+cpu", "+pids"}
    assert group.enter_argv(["cmd"])[-3:] == [str(session_dir / "cgroup.procs"), "--", "cmd"]


@pytest.mark.skipif(os.geteuid() != 0, reason="running a process as another uid needs root")
def test_a_uid_running_a_process_is_never_handed_out(tmp_path):
    """Another deployment on this host (its own registry, the same uid range) runs a session as a uid this
    registry holds free: the next session here gets another uid."""
    registry = SessionRegistry(tmp_path / "sessions.json", (20000, 20001))
    wanted, _ = SessionRegistry(tmp_path / "probe.json", (20000, 20001)).allocate("alpha")  # where "alpha" lands
    other = subprocess.Popen(["setpriv", f"--reuid={wanted}", f"--regid={wanted}", "--clear-groups", "sleep", "60"])
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(other.pid).uids().real != wanted and time.monotonic() < deadline:
            time.sleep(0.05)
        uid, _ = registry.allocate("alpha")
        assert uid != wanted and uid in (20000, 20001)
    finally:
        other.kill()
        other.wait()
    registry.release("alpha")
    assert registry.allocate("alpha")[0] == wanted  # free again once nothing runs as it
