"""`up`'s supervision of the hub: a stop is bounded even when the hub ignores SIGTERM, and what is force-
killed then spares sessions (the next `up` adopts them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psutil

from bia_binder.up import supervise

# a stand-in hub that ignores SIGTERM and has two children: a "proxy" and a "session" server
HUB = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
subprocess.Popen(sleeper + ["proxy"], start_new_session=True)
subprocess.Popen(sleeper + ["--ServerApp.base_url=/user/binder-x/"], start_new_session=True)
time.sleep(120)
"""


def children_named(marker: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]


def test_a_hub_that_ignores_sigterm_is_ended_after_the_stop_timeout_sessions_spared():
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        started.append(subprocess.Popen([sys.executable, "-c", HUB], start_new_session=True))
        return started[-1]

    def stop_soon() -> None:
        deadline = time.monotonic() + 30
        while not (children_named("proxy") and children_named("--ServerApp.base_url=/user/binder-x/")):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    threading.Thread(target=stop_soon, daemon=True).start()
    try:
        began = time.monotonic()
        status = supervise(start, stop_timeout=2)
        took = time.monotonic() - began
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    assert status == -signal.SIGKILL and len(started) == 1  # ended, not restarted
    assert took < 15
    time.sleep(0.5)
    assert not [p for p in children_named("proxy") if p.status() != psutil.STATUS_ZOMBIE]
    sessions = children_named("--ServerApp.base_url=/user/binder-x/")
    assert sessions, "a session's server survives the forced stop"
    for process in sessions:
        process.kill()


# a stand-in hub that exits by itself (as when a service never answers) and leaves a "proxy" in its process
# group and a "session" in a session of its own
EXITING_HUB = """
import subprocess, sys, time
sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
subprocess.Popen(sleeper + ["left-proxy"])
subprocess.Popen(sleeper + ["--ServerApp.base_url=/user/binder-y/"], start_new_session=True)
time.sleep(0.5)
sys.exit(1)
"""


def test_a_hub_that_exits_by_itself_leaves_no_proxy_or_service_behind_and_spares_sessions():
    status = supervise(lambda: subprocess.Popen([sys.executable, "-c", EXITING_HUB], start_new_session=True))
    assert status == 1
    try:
        assert children_named("left-proxy") == []
        assert len(children_named("--ServerApp.base_url=/user/binder-y/")) == 1
    finally:
        for process in children_named("--ServerApp.base_url=/user/binder-y/") + children_named("left-proxy"):
            process.kill()


# a stand-in hub that starts a managed "service" and a "session", each in a session of its own (as
# JupyterHub does), then waits to be killed; the second hub exits by itself
SERVICE_STARTING_HUB = """
import os, subprocess, sys, time
sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
api = {"JUPYTERHUB_API_URL": "http://127.0.0.1:%d/hub/api" % int(sys.argv[1])}
if sys.argv[2] == "first":
    subprocess.Popen(sleeper + ["svc-culler"], env={**os.environ, **api, "JUPYTERHUB_SERVICE_NAME": "idle-culler"}, start_new_session=True)
    subprocess.Popen(sleeper + ["--ServerApp.base_url=/user/binder-z/"], env={**os.environ, **api, "JUPYTERHUB_USER": "binder-z"}, start_new_session=True)
    time.sleep(120)
sys.exit(1)
"""


def test_services_a_killed_hub_left_are_ended_before_it_starts_again_sessions_spared():
    from bia_binder.up import end_orphaned_services

    port = 47000 + os.getpid() % 1000
    hubs: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        which = "first" if not hubs else "second"
        hubs.append(subprocess.Popen([sys.executable, "-c", SERVICE_STARTING_HUB, str(port), which], start_new_session=True))
        return hubs[-1]

    def kill_the_first_hub() -> None:
        deadline = time.monotonic() + 30
        while not (children_named("svc-culler") and children_named("--ServerApp.base_url=/user/binder-z/")):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        hubs[0].kill()

    threading.Thread(target=kill_the_first_hub, daemon=True).start()
    try:
        status = supervise(start, on_hub_death=lambda: end_orphaned_services(f"http://127.0.0.1:{port}/"))
        assert status == 1 and len(hubs) == 2  # restarted once after the kill, then its exit ended it
        assert [p for p in children_named("svc-culler") if p.status() != psutil.STATUS_ZOMBIE] == []
        assert len(children_named("--ServerApp.base_url=/user/binder-z/")) == 1, "the session runs on"
    finally:
        for process in children_named("svc-culler") + children_named("--ServerApp.base_url=/user/binder-z/"):
            process.kill()
