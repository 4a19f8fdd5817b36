"""Map a fresh result array's pages in a background thread while a read fills it.

Touching fresh memory is the slowest part of reading a big level on a VM whose host takes freed
pages back (measured by ``bench/bench_data.py``: a first write of 256 MiB took 0.5-1.0 s there,
against 0.2 s for the kernel to map the same pages in one ``madvise(MADV_POPULATE_WRITE)``
call). zarr writes each chunk into the result on its one event loop thread, so each page fault
there also delays every request in flight. ``MADV_POPULATE_WRITE`` (Linux 5.14+) maps pages
writable without changing their contents, so it is safe while zarr writes the same pages; ctypes
releases the GIL for the call, so the loop keeps running. Elsewhere, or on older kernels, this
does nothing and pages fault in as usual.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import sys
import threading
from collections.abc import Iterator

import numpy as np

#: from <linux/mman.h>; the call fails with EINVAL on kernels without it and we stop trying
MADV_POPULATE_WRITE = 23
#: pages mapped per call: small enough to stop soon after the read ends, in the order zarr fills them
STEP_BYTES = 8 * 2**20
#: below this a background thread costs more than the faults it saves
MIN_BYTES = 32 * 2**20

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_supported = _libc is not None


def _map_pages(start: int, end: int, done: threading.Event) -> None:
    global _supported
    for offset in range(start, end, STEP_BYTES):
        if done.is_set():
            return
        length = min(STEP_BYTES, end - offset)
        if _libc.madvise(ctypes.c_void_p(offset), ctypes.c_size_t(length), MADV_POPULATE_WRITE) != 0:
            _supported = False  # an old kernel (EINVAL) or a page we may not map: faults as usual
            return


@contextlib.contextmanager
def pages_mapped_meanwhile(array: np.ndarray) -> Iterator[None]:
    """Map ``array``'s whole pages in a background thread for the duration of the block."""
    page = mmap.PAGESIZE
    address = array.ctypes.data
    start, end = -(-address // page) * page, (address + array.nbytes) // page * page
    if not _supported or end - start < MIN_BYTES:
        yield
        return
    done = threading.Event()
    mapper = threading.Thread(target=_map_pages, args=(start, end, done), name="bia-binder-map-pages", daemon=True)
    mapper.start()
    try:
        yield
    finally:
        # joined before the array can be freed, so no call ever touches memory that is not ours
        done.set()
        mapper.join()
