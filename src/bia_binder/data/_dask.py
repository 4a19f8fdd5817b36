"""OME-Zarr levels as dask arrays that read fast over high-latency links.

Two things make a plain ``dask.array.from_array(zarr_array)`` slow on a remote store, both
measured with ``bench/bench_data.py`` (2 MiB chunks, 20 ms per request):

- Its blocks follow dask's "auto" shape: squarish, often uneven (3072 + 1024 px for a 4096 px
  plane), so many blocks hold only a few stored chunks. Each task waits for its chunks before the
  next starts, and with one task per core only ~13 requests were in flight on average where the
  link needs ~64. Blocks here are whole stored chunks (or shards) grown along the last axes first
  (rows, then planes, then stacks) up to dask's ``array.chunk-size``, split evenly: every task
  keeps dozens of requests in flight.
- ``compute()`` returns a new array that dask's finalize step fills by copying every block into
  it, single-block arrays included. That doubles the memory a read touches, and touching fresh
  memory is what a big read waits on (the finalize copy of a 256 MiB level took 0.4-1.2 s on a
  VM whose host reclaims freed pages, longer than fetching it). So computing a whole level at
  once on an in-process scheduler reads it with one concurrent zarr read into the array that is
  returned, and its blocks are views of that array. On a cluster the blocks are read by the
  workers as usual: one worker would otherwise need the memory of the whole level.
- The first touch of each page of a fresh result is slow on a VM: a whole-level read maps the
  result's pages in another thread meanwhile (``_memory.py``). Plain chunks (one compressor, no
  sharding) are then fetched, decoded and copied in by plain threads (``_threaded_read.py``);
  anything else is read by zarr as slabs on several event loops at once (``_loops.py``).

Everything derived from a level (slices, reductions, arithmetic) is an ordinary dask array, and
a slice reads only the chunks it needs.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import dask
import dask.array as da
import dask.local
import dask.threaded
import numpy as np
import zarr
from dask.array.core import finalize as dask_finalize
from dask.array.core import slices_from_chunks
from dask.base import get_scheduler
from dask.core import flatten
from dask.utils import parse_bytes
from zarr.core.buffer import default_buffer_prototype

from ._loops import read_in_slabs
from ._memory import pages_mapped_meanwhile
from ._threaded_read import read_on_threads

#: where the blocks of a whole-level read can be views of one array in this process's memory
IN_PROCESS_SCHEDULERS = (dask.threaded.get, dask.local.get_sync)


def block_shape(shape: tuple[int, ...], stored: tuple[int, ...], itemsize: int, limit: int) -> tuple[int, ...]:
    """Whole stored chunks, as many as fit in ``limit`` bytes, last axis first, evenly split."""
    block = [max(1, min(c, s)) for c, s in zip(stored, shape)]
    for axis in reversed(range(len(shape))):
        if shape[axis] == 0:
            continue
        units = math.ceil(shape[axis] / block[axis])
        fit = max(1, limit // (itemsize * math.prod(block)))
        if fit >= units:
            block[axis] = shape[axis]
            continue
        # 8 chunks, room for 5: two blocks of 4, not 5 + 3 (uneven blocks leave a core idle)
        block[axis] *= math.ceil(units / math.ceil(units / fit))
        break
    return tuple(block)


class Pixels:
    """A zarr array as ``from_array`` reads it, in native byte order (bioformats2raw writes big-endian)."""

    def __init__(self, array: zarr.Array) -> None:
        self.array = array
        self.shape: tuple[int, ...] = array.shape
        self.ndim = len(array.shape)
        self.dtype = array.dtype.newbyteorder("=")

    def __getitem__(self, selection: Any) -> np.ndarray:
        # dask passes at most one list of indices, where numpy's and zarr's orthogonal rules agree
        fancy = any(isinstance(s, (list, np.ndarray)) for s in _as_tuple(selection))
        data = np.asarray(self.array.oindex[selection] if fancy else self.array[selection])
        if not data.dtype.isnative:
            data = data.byteswap(inplace=True).view(self.dtype)
        return data

    def read_all(self) -> np.ndarray:
        """The whole array, swapped to native order while zarr copies each chunk in."""
        out = np.empty(self.shape, self.dtype)
        # the first touch of each page would stall whoever copies chunks in (the fetch threads, or
        # zarr's event loops and the requests in flight there), so pages are mapped in another thread
        with pages_mapped_meanwhile(out):
            if not read_on_threads(self.array, out):
                read_in_slabs(self.array, out)
        return out


def _as_tuple(selection: Any) -> tuple[Any, ...]:
    return selection if isinstance(selection, tuple) else (selection,)


class Level(da.Array):
    """A dask array over one OME-Zarr level; ``compute()`` of all of it is one read, no copy."""

    _pixels: Pixels | None = None
    _level_name: str | None = None

    def __dask_optimize__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        if (
            self._pixels is not None
            and self.name == self._level_name
            and get_scheduler(cls=da.Array) in IN_PROCESS_SCHEDULERS
            and self._asks_every_block(dsk, keys)
        ):
            graph = self._whole_level_graph()
            graph.update((key, dsk[key]) for key in flatten(keys) if key not in graph)  # the finalize task
            return graph
        return super().__dask_optimize__(dsk, keys, **kwargs)

    def _asks_every_block(self, dsk: Any, keys: Any) -> bool:
        # dask puts the finalize task into the graph before optimizing: it then asks for that
        # task's key only, whose dependencies are the blocks
        asked = set()
        for key in flatten(keys):
            task = dsk.get(key)
            if getattr(task, "func", None) is finalize_level:
                asked |= set(task.dependencies)
            else:
                asked.add(key)
        return asked == set(flatten(self.__dask_keys__()))

    def __dask_postcompute__(self) -> tuple[Any, tuple[Any, ...]]:
        return finalize_level, (self.shape, self.dtype)

    def _whole_level_graph(self) -> dict[Any, Any]:
        whole = f"read-{self.name}"
        graph: dict[Any, Any] = {whole: (Pixels.read_all, self._pixels)}
        for key, region in zip(flatten(self.__dask_keys__()), slices_from_chunks(self.chunks)):
            graph[key] = (operator.getitem, whole, region)
        return graph


def finalize_level(results: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The array the blocks are views of when they tile it (a whole-level read), else dask's copy."""
    blocks = list(flatten(results))
    base = getattr(blocks[0], "base", None) if blocks else None
    if (
        isinstance(base, np.ndarray)
        and base.shape == shape
        and base.dtype == dtype
        and all(isinstance(b, np.ndarray) and b.base is base for b in blocks)
        and sum(b.size for b in blocks) == base.size
    ):
        return base
    return dask_finalize(results)


def level_array(array: zarr.Array, name: str) -> Level:
    """``array`` as a lazy dask array in blocks of whole stored chunks or shards (see ``block_shape``)."""
    pixels = Pixels(array)
    stored = array.shards or array.chunks
    limit = parse_bytes(dask.config.get("array.chunk-size"))
    chunks = block_shape(array.shape, stored, pixels.dtype.itemsize, limit)
    meta = np.empty((0,) * pixels.ndim, pixels.dtype)
    # fancy=True although zarr's basic indexing would do: dask (2026.8) fuses a slice of a block
    # into the block's read only for its fancy getter, else it reads the whole block to slice it
    plain = da.from_array(pixels, chunks=chunks, name=name, lock=False, asarray=True, fancy=True, meta=meta)
    level = Level(plain.dask, plain.name, plain.chunks, meta=meta)
    level._pixels, level._level_name = pixels, plain.name
    return level
