"""Sessions run as their own uid in a read-only sandbox and cannot reach each other or the service."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import time

import psutil
import pytest

from bia_binder.events import LaunchError

from .conftest import HOST_PYTHON, needs_root, small_profile

pytestmark = needs_root

PROBE = r"""
import errno, json, os
def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
home = os.environ["HOME"]
report = {
    "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "cwd": os.getcwd(),
    "write_home": attempt(lambda: open(os.path.join(home, "mine.txt"), "w").write("x")),
    "write_tmp": attempt(lambda: open("/tmp/scratch", "w").write("x")),
    "write_usr": attempt(lambda: open("/usr/evil", "w")),
    "hub_listing": os.listdir(HUB) if os.path.isdir(HUB) else None,
    "read_db": attempt(lambda: open(os.path.join(HUB, "jupyterhub.sqlite")).read()),
    "read_env": attempt(lambda: open(os.path.join(ENV, "environment.json")).read()),
    "write_env": attempt(lambda: open(os.path.join(ENV, "env", "bin", "evil"), "w")),
    "write_cache": attempt(lambda: open(os.path.join(CACHE, "poisoned"), "w")),
    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "tmp": os.listdir("/tmp"),
}
print(json.dumps(report))
"""


def probe_code(layout) -> str:
    return f"HUB={str(layout.hub_dir)!r}; ENV={str(layout.env_root)!r}; CACHE={str(layout.cache_dir)!r}\n" + PROBE


def test_session_runs_as_its_own_uid_with_readonly_system_and_hidden_service_files(sandboxes, layout):
    session = sandboxes.session("alice", small_profile())
    report = json.loads(sandboxes.run(session, probe_code(layout)))

    low, high = sandboxes.sandboxes[0].uid_range
    assert low <= report["uid"] <= high and report["uid"] == session.uid == report["gid"]
    assert report["groups"] in ([], [report["gid"]])  # supplementary groups cleared
    assert report["cwd"] == str(session.home_inside) == "/home/jovyan"  # repo2docker's home, whatever the host path
    assert report["write_home"] == "ok" and report["write_tmp"] == "ok"
    assert report["write_usr"] == "EROFS"
    # the hub's files are not there at all: only the system directories and the session's own paths are
    assert report["hub_listing"] is None and report["read_db"] == "ENOENT"
    assert report["read_env"] == "ok"
    assert report["write_env"] == "EROFS" and report["write_cache"] in ("EROFS", "EACCES")
    assert len(report["pids"]) <= 3  # its own pid namespace: bwrap's init and the session
    # a private /tmp: its own scratch file, the mount point of the home, nothing of the host's
    assert set(report["tmp"]) == {"scratch", layout.root.name} and len(os.listdir("/tmp")) > 1
    assert not os.path.exists("/tmp/scratch")

    home_stat = session.home.stat()
    assert (home_stat.st_uid, stat.S_IMODE(home_stat.st_mode)) == (session.uid, 0o700)
    assert (session.home / "notebook.ipynb").stat().st_uid == session.uid
    assert not (layout.cache_dir / "poisoned").exists()


def test_a_disk_backed_tmp_does_not_hide_the_environment_below_the_hosts_tmp(sandboxes, layout):
    # CI's environments live below the host's /tmp (pytest's temporary directories): the session's
    # /tmp must be mounted first, and its environment on top of it
    assert str(layout.env_root).startswith("/tmp/")
    session = sandboxes.session("tmpdisk", small_profile(), disk_tmp=True)
    report = json.loads(sandboxes.run(session, probe_code(layout)))
    assert report["read_env"] == "ok" and report["write_tmp"] == "ok"
    assert (session.tmp / "scratch").read_text() == "x"  # /tmp is the directory on the session's disk


def test_sessions_cannot_read_each_others_files_or_see_their_processes(sandboxes, layout):
    alice = sandboxes.session("alice", small_profile())
    bob = sandboxes.session("bob", small_profile())
    assert alice.uid != bob.uid
    (alice.home / "secret.txt").write_text("alice's data")
    os.chown(alice.home / "secret.txt", alice.uid, alice.uid)
    sleeper = sandboxes.start(alice, "import time; print('up', flush=True); time.sleep(300)")
    assert sleeper.stdout.readline().strip() == "up"

    code = f"""
import errno, os
try:
    open({str(alice.home / "secret.txt")!r}).read(); print("read")
except OSError as e:
    print(errno.errorcode[e.errno])
print(sum(1 for p in os.listdir('/proc') if p.isdigit()))
"""
    # hidden sessions root: alice's home does not even exist for bob
    verdict, visible = sandboxes.run(bob, code).split()
    assert verdict == "ENOENT" and int(visible) <= 3

    # without bubblewrap (logged-in launches may run so), the uid separation alone keeps carol out
    unsandboxed = sandboxes.sandbox(enabled=False)
    carol = sandboxes.session("carol", small_profile(), sandbox=unsandboxed, anonymous=False)
    verdict, _ = sandboxes.run(carol, code).split()
    assert verdict == "EACCES"
    assert sleeper.poll() is None  # alice's session was untouched throughout


def test_stopped_session_leaves_no_processes_and_frees_its_uid(sandboxes, layout):
    sandbox = sandboxes.sandbox()
    session = sandboxes.session("leaver", small_profile(), sandbox=sandbox)
    # a daemon that escapes its parent (double fork + setsid), as a careless notebook might leave
    code = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(600)
    os._exit(0)
print("forked", flush=True)
time.sleep(600)
"""
    process = sandboxes.start(session, code)
    assert process.stdout.readline().strip() == "forked"
    deadline = time.monotonic() + 30
    while len(session.pids()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(session.pids()) >= 3
    directories = list(session.cgroup.directories)

    session.cleanup()
    process.wait(timeout=30)

    assert session.pids() == set()
    assert not any(d.exists() for d in directories)
    assert "leaver" not in json.loads((layout.root / "state" / "sessions.json").read_text())


def test_cleanup_lets_the_session_shut_down_gracefully_first(sandboxes):
    session = sandboxes.session("graceful", small_profile())
    code = """
import os, signal, sys, time
def save_and_exit(*_):
    open(os.path.join(os.environ["HOME"], "saved"), "w").write("bye")
    sys.exit(0)
signal.signal(signal.SIGTERM, save_and_exit)
print("up", flush=True)
time.sleep(300)
"""
    process = sandboxes.start(session, code)
    assert process.stdout.readline().strip() == "up"
    session.cleanup()
    assert (session.home / "saved").read_text() == "bye"
    assert process.wait(timeout=30) == 0  # bubblewrap exited with the session's own status


def test_a_session_outlives_the_process_that_started_it_and_cleanup_still_finds_it(sandboxes, layout):
    """A hub killed with -9 must not take its sessions along (it comes back and adopts them); a handle
    adopted from what the host holds then stops the session and frees all it had."""
    session = sandboxes.session("survivor", small_profile())
    # start it from a throw-away parent, then kill that parent as a crashing hub would die
    starter = subprocess.Popen(
        [HOST_PYTHON, "-c", "import subprocess, sys, time; subprocess.Popen(sys.argv[1:]); time.sleep(300)",
         *session.wrap([HOST_PYTHON, "-c", "import time; time.sleep(300)"])],
        env=session.environ({"PATH": "/usr/bin:/bin"}),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not session.pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    running = session.pids()
    assert running
    starter.kill()
    starter.wait()
    time.sleep(1)
    assert session.pids() & running, "the session died with its starter"
    adopted = sandboxes.sandboxes[0].adopt("survivor")
    assert adopted is not None and adopted.uid == session.uid and adopted.pids() == session.pids()
    adopted.cleanup()
    assert session.pids() == set()
    assert not any(d.exists() for d in session.cgroup.directories)
    assert not session.network.path.exists()
    assert "survivor" not in json.loads((layout.root / "state" / "sessions.json").read_text())
    assert sandboxes.sandboxes[0].adopt("survivor") is None


def test_host_filesystem_outside_the_system_directories_does_not_exist_inside(sandboxes, layout):
    """Only /usr, /etc, ... and the session's own paths: no /root, /home, /srv, /var, no checkout."""
    session = sandboxes.session("viewer", small_profile())
    code = (
        "import json, os\n"
        "print(json.dumps({p: os.path.exists(p) for p in ['/root', '/home/jovyan', '/srv', '/var/lib', '/work', "
        f"'/usr/bin/python3', '/etc/passwd', {str(layout.root / 'service-only')!r}]}}))"
    )
    (layout.root / "service-only").write_text("a file of the service, world-readable")
    seen = json.loads(sandboxes.run(session, code))
    assert seen == {
        "/root": False, "/home/jovyan": True, "/srv": False, "/var/lib": False, "/work": False,
        "/usr/bin/python3": True, "/etc/passwd": True, str(layout.root / "service-only"): False,
    }  # fmt: skip


def test_gpu_profile_on_a_host_without_gpus_is_refused_with_a_reason(sandboxes, layout):
    sandbox = sandboxes.sandbox(gpu_devices=[])
    with pytest.raises(LaunchError) as refused:
        sandbox.prepare("gpu-user", layout.home("gpu-user"), small_profile(slug="gpu", gpus=1))
    assert (
        refused.value.status_code == 400
        and "GPU" in refused.value.message
        and "another profile" in refused.value.message
    )


def test_preparing_a_running_session_again_gives_back_its_handle(sandboxes, layout):
    """After a hub restart the spawner calls prepare again: same uid, same groups, cleanup still works."""
    session = sandboxes.session("restarted", small_profile())
    process = sandboxes.start(session, "import time; print('up', flush=True); time.sleep(300)")
    assert process.stdout.readline().strip() == "up"

    again = sandboxes.sandbox().prepare("restarted", session.home, small_profile(), readonly=[layout.env_root])
    assert again.uid == session.uid and again.cgroup.directories == session.cgroup.directories
    assert again.pids() == session.pids() != set()
    again.cleanup()
    assert process.wait(timeout=30) != 0 and session.pids() == set()


def test_handing_over_the_home_does_not_follow_symlinks_out_of_it(sandboxes, layout):
    """A repository may contain symlinks to anywhere; only the links themselves become the session's."""
    outside = layout.root / "service-file"
    outside.write_text("owned by the service")
    home = layout.home("linker")
    (home / "evil").symlink_to(outside)
    (home / "evil-dir").symlink_to(layout.hub_dir)
    session = sandboxes.sandbox().prepare("linker", home, small_profile())
    sandboxes.sessions.append(session)
    assert outside.stat().st_uid == 0 and layout.hub_dir.stat().st_uid == 0
    assert (layout.hub_dir / "jupyterhub.sqlite").stat().st_uid == 0
    assert os.lstat(home / "evil").st_uid == session.uid


def test_home_and_environment_below_a_private_directory_work(sandboxes, layout):
    """A checkout under /root (mode 0700) is the common case: bubblewrap mounts as root, then drops."""
    private = layout.root / "private"
    (private / "home").mkdir(parents=True)
    env = private / "envs" / "e1"
    env.mkdir(parents=True)
    (env / "marker").write_text("env")
    private.chmod(0o700)
    session = sandboxes.sandbox().prepare("x", private / "home", small_profile(), readonly=[env])
    sandboxes.sessions.append(session)
    code = f"import os; open('note', 'w').write('x'); print(open({str(env / 'marker')!r}).read(), os.getuid())"
    assert sandboxes.run(session, code).split() == ["env", str(session.uid)]
    assert (private / "home" / "note").read_text() == "x"


def test_any_hub_user_name_makes_a_session_and_an_empty_one_is_refused(sandboxes, layout):
    session = sandboxes.session("ada@example.org", small_profile())
    assert all(d.name.startswith("ada@example.org-") for d in session.cgroup.directories)
    with pytest.raises(LaunchError) as refused:
        sandboxes.sandbox().prepare("", layout.sessions_dir, small_profile())
    assert refused.value.status_code == 400


def test_environ_sets_home_user_and_visible_limits(sandboxes):
    session = sandboxes.session("envy", small_profile(mem_limit=2**30, cpu_limit=2.5))
    env = session.environ({"PATH": "/usr/bin", "HOME": "/root"})
    assert env["HOME"] == str(session.home_inside) and env["USER"] == f"session-{session.uid}"
    assert env["MEM_LIMIT"] == str(2**30) and env["CPU_LIMIT"] == "2.5"
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["TMPDIR"] == "/tmp"


def test_every_process_of_the_session_is_in_its_cgroups(sandboxes):
    session = sandboxes.session("early", small_profile())
    process = sandboxes.start(session, "import os, time\nif os.fork():\n    print('up', flush=True)\ntime.sleep(300)")
    assert process.stdout.readline().strip() == "up"
    tree = {process.pid} | {child.pid for child in psutil.Process(process.pid).children(recursive=True)}
    assert len(tree) >= 3  # bwrap, its init, python and python's child
    for directory in session.cgroup.directories:
        members = {int(p) for p in (directory / "cgroup.procs").read_text().split()}
        assert tree <= members, f"{tree - members} escaped {directory}"
