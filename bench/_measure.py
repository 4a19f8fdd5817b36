"""Timed reads for the data benchmark, each method in its own process so none inherits another's
connections, caches or zarr settings.

    python bench/_measure.py METHOD URL [WARM_MIB]   # then one line "run" per timed read on stdin

A reader process imports its library and discards one warm-up read of level 0 (thread pools,
memory allocator, connections, lazy imports), prints "ready", then answers each "run" with the
seconds one read of level 0 took; the caller interleaves methods so load spikes hit all alike.
With ``WARM_MIB``, each run first writes and frees that much fresh memory, untimed: on a VM whose
host takes back the pages a guest has freed (this one does, within about two seconds), the first
touch of a result then costs what it costs on memory the machine has at hand, whichever method
ran before (see ``bench_data.py``).
``thumbnail`` and ``import`` are timed once, cold, as a user first sees them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import sys
import time
from collections.abc import Callable


def chunk_urls(url: str, level: int) -> tuple[int, list[str]]:
    """The bytes of one decoded chunk, and the URL of every stored chunk of the level (zarr v2,
    "/" separated keys, as ``bench_data`` writes it): one metadata request, like any reader."""
    import zarr

    array = zarr.open_array(f"{url}/{level}", mode="r")
    grid = [range(math.ceil(s / c)) for s, c in zip(array.shape, array.chunks)]
    urls = [f"{url}/{level}/{'/'.join(map(str, index))}" for index in itertools.product(*grid)]
    return math.prod(array.chunks) * array.dtype.itemsize, urls


_threads: dict[str, object] = {}


def _pool_and_threads() -> tuple[object, object]:
    """One pool and one set of 64 threads for all runs, like a long-lived program."""
    from concurrent.futures import ThreadPoolExecutor

    import urllib3

    if not _threads:
        _threads["pool"] = urllib3.PoolManager(maxsize=64)
        _threads["executor"] = ThreadPoolExecutor(64)
    return _threads["pool"], _threads["executor"]


def ideal_threads(url: str, level: int) -> int:
    """The issue's ceiling: every stored chunk fetched raw by 64 plain threads (urllib3, kept-alive pool)."""
    pool, executor = _pool_and_threads()
    _, urls = chunk_urls(url, level)
    return sum(executor.map(lambda key: len(pool.request("GET", key).data), urls))


def ideal_into_array(url: str, level: int) -> int:
    """The same fetches, each body copied into its slot of one fresh array of the level's size.

    The floor for any reader that returns the level as one array: it pays for the result's fresh
    memory (each page's first touch), which ``ideal_threads`` never allocates, and decodes nothing.
    """
    import numpy as np

    pool, executor = _pool_and_threads()
    slot, urls = chunk_urls(url, level)
    out = np.empty(len(urls) * slot, np.uint8)

    def fetch(index: int, key: str) -> int:
        body = np.frombuffer(pool.request("GET", key).data, np.uint8)[:slot]
        target = out[index * slot : (index + 1) * slot]
        target[: body.size] = body
        target[body.size :] = 0  # every byte of the result written once, as a decoder would
        return body.size

    return sum(executor.map(fetch, range(len(urls)), urls))


def ideal_async(url: str, level: int) -> int:
    """Every stored chunk of the level fetched raw, 128 requests in flight from one aiohttp session."""
    import aiohttp

    _, keys = chunk_urls(url, level)

    async def fetch_all() -> int:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128)) as session:

            async def fetch(key: str) -> int:
                async with session.get(key) as response:
                    return len(await response.read())

            return sum(await asyncio.gather(*(fetch(k) for k in keys)))

    return asyncio.run(fetch_all())


def bia_binder(url: str, level: int) -> int:
    from bia_binder.data import open_ome_zarr

    return open_ome_zarr(url).levels[level].compute().nbytes


def bia_binder_no_threads(url: str, level: int) -> int:
    """The same read with every request sent by zarr on aiohttp event loops (``BIA_BINDER_FETCH_THREADS=0``)."""
    import os

    os.environ["BIA_BINDER_FETCH_THREADS"] = "0"
    return bia_binder(url, level)


def bia_binder_zarr(url: str, level: int) -> int:
    """The same library's zarr arrays, read without dask."""
    from bia_binder.data import open_ome_zarr

    return open_ome_zarr(url).arrays[level][...].nbytes


def ome_zarr_py(url: str, level: int) -> int:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    node = next(iter(Reader(parse_url(url))()))
    return node.data[level].compute().nbytes


def zarr_dask(url: str, level: int) -> int:
    import dask.array as da
    import zarr

    return da.from_zarr(zarr.open_array(f"{url}/{level}", mode="r")).compute().nbytes


def thumbnail(url: str) -> int:
    from bia_binder.data import open_ome_zarr  # imported before the clock starts: see __main__

    return open_ome_zarr(url).thumbnail().nbytes


def timed(read: Callable[[], int]) -> float:
    started = time.perf_counter()
    read()
    return time.perf_counter() - started


READS = {f.__name__: f for f in (ideal_threads, ideal_into_array, ideal_async, bia_binder, bia_binder_no_threads, bia_binder_zarr, ome_zarr_py, zarr_dask)}

def warm_memory(mib: int) -> None:
    """Write and free ``mib`` MiB, so the guest's kernel has that much memory mapped at hand."""
    if mib:
        import numpy as np

        np.ones(mib * 2**20, np.uint8)


def serve(method: str, url: str, warm_mib: int) -> None:
    read = READS[method]
    read(url, 0)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "run":
            warm_memory(warm_mib)
            print(json.dumps(timed(lambda: read(url, 0))), flush=True)


if __name__ == "__main__":
    method, url = sys.argv[1], sys.argv[2]
    if method == "import":
        print(json.dumps(timed(lambda: bool(__import__("bia_binder.data")))))
    elif method == "thumbnail":
        # a session imports once (timed as "import"); the thumbnail is what users then wait for
        import bia_binder.data

        print(json.dumps(timed(lambda: thumbnail(url))))
    else:
        serve(method, url, int(sys.argv[3]) if len(sys.argv) > 3 else 0)
