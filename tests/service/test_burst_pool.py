"""Workshop load: without a pool a burst is queued (waiting events with the place in line), never failed for
being busy; with c.Pool.warm a launch gets a pre-started server (no spawn) and the pool refills."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from urllib.parse import quote

import httpx
import pytest

from tests.gitserver import GitServer
from tests.kernel import run_cell
from tests.stack import BinderStack, read_events

pytestmark = pytest.mark.slow

BURST = 4


@pytest.fixture(scope="module")
def stack():
    git = GitServer().start()
    pooled_url, _ = git.create_repo("course/pooled", {"requirements.txt": "six\n"})
    burst_url, _ = git.create_repo("course/burst", {"requirements.txt": "six\n", "burst.txt": "b\n"})
    pooled = f"git/{quote(pooled_url, safe='')}/HEAD"
    config = (
        "c.LaunchQueue.concurrency = 1\n"  # a burst of 4 must wait in line even on a big machine
        f"c.Pool.warm = {{{pooled!r}: 2}}\n"
        "c.Pool.refill_interval = 1\n"
    )
    with BinderStack(config=config) as stack:
        stack.pooled, stack.burst = pooled, f"git/{quote(burst_url, safe='')}/HEAD"
        yield stack
    git.stop()


def pool_idle(stack: BinderStack) -> int:
    checks = httpx.get(f"{stack.url}/health", timeout=30).json()["checks"]
    return next(c for c in checks if c["service"] == "Pool")["idle"]


def wait_for_pool(stack: BinderStack, idle: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while pool_idle(stack) < idle:
        assert time.monotonic() < deadline, f"the pool has {pool_idle(stack)} idle servers, not {idle}:\n{stack.log_tail()}"
        time.sleep(1)


def test_a_burst_is_queued_with_its_place_in_line_and_every_launch_gets_ready(stack):
    with concurrent.futures.ThreadPoolExecutor(BURST) as pool:
        results = list(pool.map(lambda _: read_events(f"{stack.url}/build/{stack.burst}", 600), range(BURST)))
    assert [events[-1]["phase"] for events in results] == ["ready"] * BURST, [events[-1] for events in results]
    assert len({events[-1]["url"] for events in results}) == BURST
    positions = [e["position"] for events in results for e in events if e["phase"] == "waiting" and "position" in e]
    assert positions and max(positions) >= 2, "with one start at a time, someone waited behind another"
    assert all(isinstance(p, int) and p >= 1 for p in positions)
    # the build log (the first launch built) shows no host path
    messages = " ".join(e["message"] for events in results for e in events)
    assert "building" in [e["phase"] for events in results for e in events]
    assert str(stack.data_dir) not in messages and str(stack.data_dir.resolve()) not in messages


def test_a_pooled_launch_is_handed_a_started_server_and_the_pool_refills(stack):
    wait_for_pool(stack, 2)
    started = time.monotonic()
    events = read_events(f"{stack.url}/build/{stack.pooled}", 120)
    took = time.monotonic() - started
    ready = events[-1]
    assert ready["phase"] == "ready", events[-3:]
    assert "launching" not in [e["phase"] for e in events], "a pooled launch does not spawn"
    assert took < 3, f"a hand-over took {took:.2f} s"  # under 1 s on an idle machine (bench/bench_workshop.py)
    assert asyncio.run(run_cell(ready["url"], ready["token"], "print(6 * 7)")).strip() == "42"
    assert pool_idle(stack) <= 1
    wait_for_pool(stack, 2, timeout=180)  # refilled in the background
    again = read_events(f"{stack.url}/build/{stack.pooled}", 120)
    assert again[-1]["phase"] == "ready" and again[-1]["url"] != ready["url"]
