"""The launch queue: at most `concurrency` at once, first come first served, each waiter told its place in
line; a waiter that leaves (a closed tab) neither blocks the line nor leaks a slot. And the pool's end time."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from traitlets import TraitError

from bia_binder.service.pool import Pool, parse_cull_at
from bia_binder.service.queue import LaunchQueue


async def test_a_burst_runs_concurrency_at_a_time_in_arrival_order_and_hears_its_place():
    queue = LaunchQueue(concurrency=2, position_interval=0.01)
    running, most, order = 0, 0, []
    positions: dict[int, list[int]] = {i: [] for i in range(6)}

    async def launch(i: int) -> None:
        nonlocal running, most

        async def told(position: int) -> None:
            positions[i].append(position)

        async with queue.slot(told):
            running += 1
            most = max(most, running)
            order.append(i)
            await asyncio.sleep(0.05)
            running -= 1

    tasks = []
    for i in range(6):
        tasks.append(asyncio.ensure_future(launch(i)))
        await asyncio.sleep(0)  # arrive one after the other
    await asyncio.gather(*tasks)
    assert most == 2
    assert order == [0, 1, 2, 3, 4, 5]
    assert positions[0] == positions[1] == []  # started at once: no waiting event
    assert positions[2] == [1] and positions[5] == [4, 2]  # told where it stands, again when it moves
    assert (queue.active, queue.waiting) == (0, 0)


async def test_a_waiter_that_leaves_frees_its_place():
    queue = LaunchQueue(concurrency=1, position_interval=0.01)
    started = []

    async def launch(name: str, hold: float) -> None:
        async with queue.slot():
            started.append(name)
            await asyncio.sleep(hold)

    first = asyncio.ensure_future(launch("first", 0.1))
    await asyncio.sleep(0)
    leaver = asyncio.ensure_future(launch("leaver", 0))
    last = asyncio.ensure_future(launch("last", 0))
    await asyncio.sleep(0.02)
    assert queue.waiting == 2
    leaver.cancel()
    await asyncio.gather(first, last)
    assert started == ["first", "last"]
    assert (queue.active, queue.waiting) == (0, 0)


def test_default_concurrency_is_the_hosts_cores():
    import os

    assert LaunchQueue().concurrency == len(os.sched_getaffinity(0))


def test_pool_end_time_is_a_clock_time_or_a_date():
    now = dt.datetime(2026, 12, 1, 9, 0).astimezone()
    assert parse_cull_at("17:30", now) == now.replace(hour=17, minute=30)
    assert parse_cull_at("2026-12-01T18:00:00+00:00") == dt.datetime(2026, 12, 1, 18, tzinfo=dt.timezone.utc)
    assert parse_cull_at("") is None
    with pytest.raises(TraitError, match="neither HH:MM nor"):
        Pool(None, cull_at="tea time")
    with pytest.raises(TraitError, match="Pool.warm"):
        Pool(None, warm={"just-a-name": 3})
