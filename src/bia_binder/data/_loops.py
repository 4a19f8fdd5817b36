"""Read a whole level as slabs on several event loops, each in its own thread.

Levels of plain chunks are read on threads instead (``_threaded_read.py``); this is how zarr
reads the rest (sharded, filtered, other codecs), and everything when ``BIA_BINDER_FETCH_THREADS=0``.

zarr's sync API runs every read on one event loop thread: it sends each request, parses each
response (aiohttp) and copies each chunk into the result. For a level of many small chunks that
one thread is the limit, and on a machine shared with other work it gets one thread's share of
the CPU however many requests are in flight (64 plain threads fetching raw chunks get 64 shares).
Reading the level as a few slabs of whole chunks (or shards), each through zarr's async API on its
own loop, spreads that work: measured with ``bench/bench_data.py`` (20 ms per
request, a busy 2-core machine, 7 interleaved runs) 4 loops read 14-17 % faster than one, at 512 KiB
and 2 MiB chunks.

Each loop keeps its own aiohttp session (``_store.session_for_this_loop``), so a read keeps up to
``READ_LOOPS`` x ``BIA_BINDER_HTTP_CONNECTIONS`` requests in flight. ``BIA_BINDER_READ_LOOPS=1``
reads on zarr's own loop, as does a zarr version whose internals differ from what is used here.
"""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype

from ._http import _number

#: event loops (threads) a whole-level read is spread over; more gained nothing on 2 cores
READ_LOOPS = 4

try:  # zarr's async read into a given array is not public API: fall back when it changes
    from zarr.core.indexing import BasicIndexer

    _CAN_READ_INTO = hasattr(zarr.AsyncArray, "_get_selection")
except ImportError:  # pragma: no cover - another zarr layout
    _CAN_READ_INTO = False

_loops: list[asyncio.AbstractEventLoop] = []
_loops_lock = threading.Lock()


def read_loops(count: int) -> list[asyncio.AbstractEventLoop]:
    """``count`` long-lived event loops, each running in a daemon thread (connections are reused across reads)."""
    with _loops_lock:
        while len(_loops) < count:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name=f"bia-binder-read-{len(_loops)}", daemon=True).start()
            _loops.append(loop)
        return _loops[:count]


def slabs(shape: tuple[int, ...], stored: tuple[int, ...], parts: int) -> list[tuple[slice, ...]]:
    """At most ``parts`` regions of whole stored chunks tiling ``shape``, split along its first axis of several chunks."""
    for axis, (size, chunk) in enumerate(zip(shape, stored)):
        units = math.ceil(size / chunk) if size else 0
        if units > 1:
            per = math.ceil(units / min(parts, units))
            regions = []
            for first in range(0, units, per):
                region = [slice(None)] * len(shape)
                region[axis] = slice(first * chunk, min(size, (first + per) * chunk))
                regions.append(tuple(region))
            return regions
    return [tuple(slice(None) for _ in shape)]


async def _read_into(array: zarr.Array, region: tuple[slice, ...], out: np.ndarray) -> None:
    prototype = default_buffer_prototype()
    indexer = BasicIndexer(region, array.shape, array.metadata.chunk_grid)
    await array.async_array._get_selection(indexer, prototype=prototype, out=prototype.nd_buffer.from_numpy_array(out))


def read_in_slabs(array: zarr.Array, out: Any) -> None:
    """Fill ``out`` (native byte order, the array's shape) with the whole array."""
    count = _number("BIA_BINDER_READ_LOOPS", READ_LOOPS, int)
    regions = slabs(array.shape, array.shards or array.chunks, count) if _CAN_READ_INTO and count > 1 else []
    if len(regions) < 2:
        array.get_basic_selection(Ellipsis, out=default_buffer_prototype().nd_buffer.from_numpy_array(out))
        return
    reads = [
        asyncio.run_coroutine_threadsafe(_read_into(array, region, out[region]), loop)
        for region, loop in zip(regions, read_loops(len(regions)))
    ]
    try:
        for read in reads:
            read.result()
    except BaseException:
        for read in reads:  # the other slabs stop too (their views keep ``out`` alive until then)
            read.cancel()
        raise
