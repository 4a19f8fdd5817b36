"""Every resource a session holds is released, however it ends: a stop, an OOM kill from filling /tmp,
``kill -9`` of its server, ``kill -9`` of the hub, a crash of everything and ``up`` again. And a file
deleted inside a session gives its space back to the host."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from bia_binder.sessions.network import namespace_name
from bia_binder.sessions.sandbox import cgroup_name
from tests.kernel import run_cell
from tests.stack import BinderStack, hub_api

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="sessions are isolated only as root")]

CONFIG = (
    # small enough to fill quickly, large enough for JupyterLab and a kernel
    "c.ResourceProfiles.anonymous.update({'mem_limit': '700M', 'disk_limit': '1536M'})\n"
    "c.Spawner.poll_interval = 5\n"
)
REPO = {"requirements.txt": "six\n"}


@pytest.fixture(scope="module")
def stack():
    with BinderStack(extra_args=["--allow-local-repos"], config=CONFIG) as stack:
        stack.spec = stack.git_spec("lab/cleanup", REPO)
        yield stack


def launch(stack: BinderStack) -> tuple[str, dict]:
    events = stack.launch(stack.spec)
    ready = events[-1]
    assert ready["phase"] == "ready", events[-3:]
    return ready["url"].rstrip("/").rsplit("/", 1)[-1], ready


def held(stack: BinderStack, name: str) -> dict[str, bool]:
    """What the host still holds for session ``name``."""
    sessions = stack.data_dir / "sessions"
    state = (stack.data_dir / "sandbox").resolve()
    registry = state / "sessions.json"
    image = sessions / ".disks" / "images" / f"{name}.img"
    prefix = "bb" + hashlib.sha256(str(state).encode()).hexdigest()[:6]
    loops = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True).stdout.strip()
    pins = stack.data_dir / "envs" / ".pins"
    return {
        "uid": registry.exists() and name in json.loads(registry.read_text()),
        "cgroup": any(Path(d, "bia-binder", cgroup_name(name)).exists() for d in Path("/sys/fs/cgroup").iterdir()),
        "netns": Path("/run/netns", namespace_name(prefix, name)).exists(),
        "processes": any(name in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])),
        "disk image": image.exists(),
        "mount": os.path.ismount(sessions / name),
        "loop device": bool(loops),
        "pin": any(pins.glob(f"*/{name}*")),
    }


def wait_until_freed(stack: BinderStack, name: str, timeout: float = 90) -> list[str]:
    """What session ``name`` still holds after at most ``timeout`` seconds (empty: all freed)."""
    deadline = time.monotonic() + timeout
    while True:
        left = sorted(what for what, there in held(stack, name).items() if there)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(1)


def server_pid(name: str) -> int:
    for process in psutil.process_iter(["cmdline", "uids"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "jupyter-lab" in cmdline and f"/user/{name}/" in cmdline and process.info["uids"].real != 0:
            return process.pid
    raise LookupError(f"no server process of {name}")


def test_a_stopped_session_leaves_nothing(stack):
    name, _ = launch(stack)
    assert held(stack, name)["netns"] and held(stack, name)["disk image"]  # the probe sees what a session holds
    assert stop(stack, name)
    assert wait_until_freed(stack, name) == [], stack.log_tail()


def test_filling_tmp_is_a_full_disk_for_that_session_not_an_out_of_memory_kill(stack):
    """An anonymous session's /tmp is on its disk: filling it fails with ENOSPC; the session lives on, and
    stopping it frees everything."""
    name, ready = launch(stack)
    code = (
        "import errno\nchunk = b'x' * 2**24\ntry:\n    with open('/tmp/fill', 'wb') as f:\n        while True:\n"
        "            f.write(chunk)\nexcept OSError as e:\n    print(errno.errorcode[e.errno])\n"
    )
    assert asyncio.run(run_cell(ready["url"], ready["token"], code, timeout=300)).strip() == "ENOSPC"
    assert asyncio.run(run_cell(ready["url"], ready["token"], "print(6 * 7)")).strip() == "42"
    assert stop(stack, name)
    assert wait_until_freed(stack, name) == [], stack.log_tail()


def test_a_server_killed_by_its_memory_limit_leaves_nothing(stack):
    name, ready = launch(stack)
    # make the server the OOM killer's first choice (raising a score needs no privilege), then hog memory
    code = (
        "import os\nopen(f'/proc/{os.getppid()}/oom_score_adj', 'w').write('1000')\n"
        "hog = []\nwhile True:\n    hog.append(bytearray(2**24))\n"
    )
    try:
        asyncio.run(run_cell(ready["url"], ready["token"], code, timeout=120))
    except Exception:  # noqa: BLE001 - the server dies under the kernel: that is the point
        pass
    assert wait_until_freed(stack, name, timeout=120) == [], stack.log_tail()


def stop(stack: BinderStack, name: str, timeout: float = 120) -> bool:
    """Stop a session through the hub API (retrying while a restarted hub is not ready yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if hub_api(stack, "DELETE", f"users/{name}/server").status_code in (202, 204):
                return True
        except httpx.HTTPError:
            pass
        time.sleep(1)
    return False


def test_a_server_killed_with_sigkill_leaves_nothing(stack):
    name, _ = launch(stack)
    os.kill(server_pid(name), signal.SIGKILL)
    assert wait_until_freed(stack, name) == [], stack.log_tail()


def test_sessions_survive_a_hub_killed_with_sigkill_and_are_freed_when_stopped(stack):
    name, ready = launch(stack)
    hub = next(p for p in psutil.Process(stack.proc.pid).children() if "jupyterhub" in " ".join(p.cmdline()))
    hub.kill()
    # `bia-binder up` starts the hub again; the session kept running and answers through the proxy
    deadline = time.monotonic() + 120
    answer = None
    while time.monotonic() < deadline:
        try:
            answer = asyncio.run(run_cell(ready["url"], ready["token"], "print(6 * 7)", timeout=30)).strip()
            break
        except Exception:  # noqa: BLE001 - the new hub and proxy are still coming up
            time.sleep(1)
    assert answer == "42"
    assert stop(stack, name)
    assert wait_until_freed(stack, name) == [], stack.log_tail()


@pytest.mark.timeout(600)
def test_a_deleted_file_gives_its_space_back_to_the_host(stack):
    name, ready = launch(stack)
    image = stack.data_dir / "sessions" / ".disks" / "images" / f"{name}.img"
    before = image.stat().st_blocks * 512
    # in 16 MiB pieces: one 1 GiB bytes object would not fit the session's memory limit
    fill = "with open('big', 'wb') as f:\n    for _ in range(64):\n        f.write(b'\\1' * 2**24)\n"
    asyncio.run(run_cell(ready["url"], ready["token"], fill, timeout=300))
    grown = image.stat().st_blocks * 512
    assert grown - before > 0.9 * 2**30
    asyncio.run(run_cell(ready["url"], ready["token"], "import os; os.remove('big'); os.sync()", timeout=120))
    deadline = time.monotonic() + 60
    while image.stat().st_blocks * 512 > before + 0.1 * 2**30 and time.monotonic() < deadline:
        time.sleep(1)
    assert image.stat().st_blocks * 512 < before + 0.1 * 2**30, "deleting gave no space back"
    hub_api(stack, "DELETE", f"users/{name}/server")


# last: it leaves this module's stack crashed
def test_after_a_crash_of_everything_up_frees_what_dead_sessions_left(stack, tmp_path):
    name, _ = launch(stack)
    for process in [*psutil.Process(stack.proc.pid).children(recursive=True), psutil.Process(stack.proc.pid)]:
        if process.is_running():
            process.kill()  # the machine lost power, as far as these processes know
    for process in psutil.process_iter(["uids"]):
        if process.info["uids"] and process.info["uids"].real == _uid_of(stack, name):
            process.kill()  # and the session with it
    stack.proc.wait()
    assert held(stack, name)["disk image"] and held(stack, name)["uid"]  # a crash leaves all this behind
    again = BinderStack(data_dir=stack.data_dir, extra_args=["--allow-local-repos"], config=CONFIG)
    try:
        again.start()
        assert wait_until_freed(again, name, timeout=30) == []
        assert "freed what dead sessions left" in again.log_path.read_text()
    finally:
        again.stop()


def _uid_of(stack: BinderStack, name: str) -> int:
    return json.loads((stack.data_dir / "sandbox" / "sessions.json").read_text())[name]["uid"]
