"""Starting and stopping `bia-binder up`: a launch sent the moment /health first says ok succeeds; SIGTERM and
SIGINT (Ctrl-C) stop everything within 10 s with a session running; `--keep-sessions` keeps sessions over a
restart. The data dirs live below a private (0700) directory, as a checkout under /root does."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import psutil
import pytest

from tests.gitserver import GitServer
from tests.kernel import run_cell
from tests.stack import BinderStack, hub_api, read_events

pytestmark = pytest.mark.slow

REPO = {"requirements.txt": "six\n"}


@pytest.fixture
def private_dir():
    # short: slirp4netns' API socket lives below the data dir, and socket paths end at 108 bytes
    private = Path(tempfile.mkdtemp(prefix="bbp-"))
    os.chmod(private, 0o700)
    yield private
    shutil.rmtree(private, ignore_errors=True)


@pytest.fixture(scope="module")
def git():
    server = GitServer().start()
    yield server
    server.stop()


def spec_of(git: GitServer, name: str) -> str:
    url, _sha = git.create_repo(name, REPO)
    return f"git/{quote(url, safe='')}/HEAD"


def server_processes(name: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if f"--ServerApp.base_url=/user/{name}/" in (process.info["cmdline"] or []):
            found.append(process)
    return found


def stop_timed(stack: BinderStack, signum: int) -> float:
    started = time.monotonic()
    stack.proc.send_signal(signum)
    stack.proc.wait(60)
    return time.monotonic() - started


def test_a_launch_sent_when_health_first_says_ok_succeeds_and_up_stops_within_10_s(git, private_dir):
    spec = spec_of(git, "start/first")
    stack = BinderStack(data_dir=private_dir / "data")
    try:
        stack.start()  # returns at the first /health 200 (polled every 0.2 s)
        events = read_events(f"{stack.url}/build/{spec}", 300)
        assert events[-1]["phase"] == "ready", events[-3:]
        health = httpx.get(f"{stack.url}/health", timeout=10).json()
        assert {c["service"]: c["ok"] for c in health["checks"]}["Proxy route"] is True
        name = events[-1]["url"].rstrip("/").rsplit("/", 1)[-1]
        assert server_processes(name)

        took = stop_timed(stack, signal.SIGTERM)
        assert took < 10, f"up took {took:.1f} s to stop:\n{stack.log_tail(25)}"
        log = stack.log_path.read_text(errors="replace")
        assert "Traceback" not in log and "AttributeError" not in log
        deadline = time.monotonic() + 10
        while server_processes(name) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not server_processes(name), "a stop without --keep-sessions stops sessions"
    finally:
        stack.stop()


def test_ctrl_c_stops_up_within_10_s(git, private_dir):
    stack = BinderStack(data_dir=private_dir / "data")
    try:
        stack.start()
        events = read_events(f"{stack.url}/build/{spec_of(git, 'start/ctrl-c')}", 300)
        assert events[-1]["phase"] == "ready", events[-3:]
        took = stop_timed(stack, signal.SIGINT)  # what the terminal sends `up` on Ctrl-C
        assert took < 10, f"up took {took:.1f} s to stop:\n{stack.log_tail(25)}"
        assert "Traceback" not in stack.log_path.read_text(errors="replace")
    finally:
        stack.stop()


def test_keep_sessions_keeps_running_sessions_over_a_restart(git, private_dir):
    data_dir = private_dir / "data"
    args = ["--allow-local-repos", "--unsafe-no-sandbox", "--keep-sessions"]
    first = BinderStack(data_dir=data_dir, extra_args=args)
    second = BinderStack(data_dir=data_dir, extra_args=args)
    try:
        first.start()
        ready = read_events(f"{first.url}/build/{spec_of(git, 'start/kept')}", 300)[-1]
        assert ready["phase"] == "ready", ready
        name = ready["url"].rstrip("/").rsplit("/", 1)[-1]
        assert asyncio.run(run_cell(ready["url"], ready["token"], "x = 6 * 7; print(x)")).strip() == "42"
        took = stop_timed(first, signal.SIGTERM)
        assert took < 10, f"up took {took:.1f} s to stop:\n{stack.log_tail(25)}"
        assert server_processes(name), "--keep-sessions left the session running"

        second.start()
        url = ready["url"].replace(first.url, second.url)  # a new up may listen elsewhere; the path is the same
        assert asyncio.run(run_cell(url, ready["token"], "print(6 * 7)", timeout=60)).strip() == "42"
        assert hub_api(second, "DELETE", f"users/{name}/server").status_code in (202, 204)
    finally:
        first.stop()
        second.stop()
