"""Faults during a bounded burst of launches: `kill -9` of the hub, of the proxy, of the binder service, of a
build in progress. Then every session that ran before still answers (or is restored) within 30 s, every
launch under way ends (none hangs) with `ready` or at most one `failed` event, and a build killed half-way
publishes nothing: the next launch builds again.

A stream the killed process itself carried (the proxy's, the service's) is cut: the client sees it end
without a last event; everything else gets exactly one."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import time

import httpx
import psutil
import pytest

from tests.kernel import run_cell
from tests.stack import BinderStack, read_events

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(os.geteuid() != 0, reason="sessions are isolated only as root"),
]

BURST = 2  # launches under way at each fault (4 faults: 8 launches, plus one session that runs throughout)


@pytest.fixture(scope="module")
def stack():
    with BinderStack(extra_args=["--allow-local-repos"], config="c.Spawner.poll_interval = 5\n") as stack:
        stack.spec = stack.git_spec("faults/repo", {"requirements.txt": "six\n"})
        first = stack.launch(stack.spec)
        assert first[-1]["phase"] == "ready", first[-3:]
        stack.running = first[-1]
        yield stack


def answers_within(ready: dict, url: str, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            return asyncio.run(run_cell(url, ready["token"], "print(6 * 7)", timeout=20)).strip() == "42"
        except Exception:  # noqa: BLE001 - the proxy or hub is coming back
            time.sleep(1)
    return False


def outcome(events: list[dict]) -> str:
    failed = [e for e in events if e["phase"] == "failed"]
    assert len(failed) <= 1, f"more than one failed event: {failed}"
    if events and events[-1]["phase"] in ("ready", "failed"):
        return events[-1]["phase"]
    return "cut"


def launch_or_cut(url: str) -> list[dict]:
    """A live launch sends something (an event, a keepalive) at least every 20 s
    (c.BinderService.keepalive_interval): 60 s of silence means the stream is dead, as `bia-binder launch`
    also decides. configurable-http-proxy keeps a client's connection open when the service behind it dies."""
    try:
        return read_events(url, 60)
    except (httpx.RemoteProtocolError, httpx.ReadTimeout):
        return []  # the process carrying the stream was killed


def during_burst(stack: BinderStack, kill, spec: str | None = None, wait_for: str = "launching") -> list[str]:
    """Start BURST launches, kill once one of them reached `wait_for`; every launch's outcome."""
    url = f"{stack.url}/build/{spec or stack.spec}"
    with concurrent.futures.ThreadPoolExecutor(BURST) as pool:
        futures = [pool.submit(launch_or_cut, url) for _ in range(BURST)]
        time.sleep(1.0)
        kill()
        results = [future.result(timeout=300) for future in futures]
    return [outcome(events) for events in results]


def healthy_again(stack: BinderStack, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{stack.url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    pytest.fail(f"not healthy {seconds} s after the fault:\n{stack.log_tail()}")


def descendant(stack: BinderStack, *args: str) -> psutil.Process:
    """The process `up` started (directly or not) whose command line has ``args`` after the interpreter."""
    for process in psutil.Process(stack.proc.pid).children(recursive=True):
        if process.cmdline()[1 : 1 + len(args)] == list(args):
            return process
    raise LookupError(args)


def services_of_this_hub(stack: BinderStack) -> list[str]:
    """The names of the managed services (any process JupyterHub started as one) that talk to this stack's hub."""
    hub = descendant(stack, "-m", "jupyterhub")
    api_url = next(
        e["JUPYTERHUB_API_URL"] for c in hub.children() if "JUPYTERHUB_SERVICE_NAME" in (e := c.environ())
    )
    names = []
    for process in psutil.process_iter(["environ"]):
        environ = process.info["environ"] or {}
        if environ.get("JUPYTERHUB_SERVICE_NAME") and environ.get("JUPYTERHUB_API_URL") == api_url:
            names.append(environ["JUPYTERHUB_SERVICE_NAME"])
    return sorted(names)


def test_kill_9_of_the_hub(stack):
    services = services_of_this_hub(stack)
    outcomes = during_burst(stack, lambda: descendant(stack, "-m", "jupyterhub").kill())
    # the service ends its streams before it goes; the new hub replaces the proxy, which cuts the others
    assert set(outcomes) <= {"ready", "failed", "cut"}, outcomes
    assert answers_within(stack.running, stack.running["url"])
    healthy_again(stack)
    assert stack.launch(stack.spec)[-1]["phase"] == "ready"
    # the dead hub's services (culler, binder service) were ended: one of each runs, the new hub's
    assert services_of_this_hub(stack) == services, "services the killed hub started run on beside the new ones"


def test_kill_9_of_the_proxy(stack):
    pid = int((stack.data_dir / "proxy.pid").read_text())
    outcomes = during_burst(stack, lambda: os.kill(pid, signal.SIGKILL))
    assert set(outcomes) <= {"ready", "failed", "cut"}, outcomes
    assert answers_within(stack.running, stack.running["url"]), "the hub restarts the proxy with its routes"
    healthy_again(stack)
    assert stack.launch(stack.spec)[-1]["phase"] == "ready"


def test_kill_9_of_the_binder_service(stack):
    outcomes = during_burst(stack, lambda: descendant(stack, "-m", "bia_binder.service.app").kill())
    assert set(outcomes) <= {"ready", "failed", "cut"}, outcomes
    assert answers_within(stack.running, stack.running["url"]), "sessions do not go through the service"
    healthy_again(stack, 120)  # the hub notices a dead service at its poll (30 s) and starts it again
    assert stack.launch(stack.spec)[-1]["phase"] == "ready"


def test_kill_9_of_a_build_publishes_nothing_and_the_next_launch_builds_again(stack):
    spec = stack.git_spec("faults/slow-build", {"requirements.txt": "six\n", "postBuild": "#!/bin/sh\nsleep 300\n"})

    def kill_build() -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            sleepers = [p for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [])[:2] == ["sleep", "300"]]
            if sleepers:
                for process in sleepers:
                    process.kill()
                return
            time.sleep(0.5)
        pytest.fail("the build never reached postBuild")

    envs = stack.data_dir / "envs"

    def published() -> set[str]:
        return {p.name for p in envs.iterdir() if (p / "environment.json").is_file()}

    before = published()
    outcomes = during_burst(stack, kill_build, spec=spec)
    assert outcomes == ["failed"] * BURST, outcomes  # both followed the one shared build
    assert published() == before, "nothing of the killed build is published"
    # the next launch does not find a built environment: it builds again
    with httpx.stream("GET", f"{stack.url}/build/{spec}", headers={"Accept": "text/event-stream"}, timeout=60) as response:
        for line in response.iter_lines():
            if '"phase": "built"' in line:
                pytest.fail("a half-built environment was served")
            if '"phase": "building"' in line:
                break
    assert answers_within(stack.running, stack.running["url"])
