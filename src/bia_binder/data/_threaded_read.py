"""Read a whole array of plain chunks on threads: each thread fetches, decodes and copies a chunk.

Most OME-Zarr levels are stored as plain chunks: one compressor (blosc, zstd, zlib or gzip) over
the raw bytes, no filters, no sharding. Reading one of those whole through zarr's async pipeline
costs more CPU than the transfer itself, and on a 2-core machine CPU is the limit (measured with
``bench/bench_data.py``'s image: 128 chunks of 2 MiB, 20 ms per request):

- zarr's decoder allocates a fresh buffer per chunk, and first touches of fresh memory are slow
  on a VM (every page faults: 0.27 s of CPU to decode 256 MiB, 0.035 s into a reused buffer);
- aiohttp on event loops moves bytes at about half the rate of plain threads with urllib3
  (0.37 s against 0.19 s), whose socket reads run in C without the GIL.

So here each of up to 64 threads (one connection each) fetches a chunk with urllib3, decodes it
(blosc into one of a few reused buffers) and copies it into the result; decompressors and numpy's
copy release the GIL, so threads overlap all three. Bodies in flight and buffers stay within
``IN_FLIGHT_BYTES`` (fewer threads for big chunks). Anything else (sharding, filters, transposes,
checksums, other codecs, an on-disk cache) is read by zarr (``_loops.py``); a test compares the
two on every layout this module accepts. Written here because no library reads a known list of
chunks into one array on threads; urllib3 does the HTTP and numcodecs the decoding.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numcodecs
import numpy as np
import zarr

from ._http import RETRY_STATUSES, USER_AGENT, HTTPSettings, MalformedResponseError, Retries, _number
from ._store import HTTPStore, is_missing

try:  # urllib3 2.3+ (``shutdown``) is in every environment we build; a repository's own might lack it
    import urllib3

    if not hasattr(urllib3.HTTPResponse, "shutdown"):  # pragma: no cover - older urllib3
        urllib3 = None
except ImportError:  # pragma: no cover - then zarr reads everything
    urllib3 = None

try:  # zarr's codec classes; a zarr whose layout differs reads everything itself
    from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, ZstdCodec
    from zarr.codecs._v2 import V2Codec
except ImportError:  # pragma: no cover
    V2Codec = None

#: decompressors (numcodecs ids) whose frames decode without any parameter of the codec
DECOMPRESSORS = ("blosc", "zstd", "zlib", "gzip")
#: blosc's decode buffers per read: decoding a chunk takes well under a millisecond, fetching it 20 ms+
DECODE_BUFFERS = 8

#: bodies and decode buffers of one read together stay below this (some studies store 64 MiB chunks)
IN_FLIGHT_BYTES = 512 * 2**20


@dataclass(frozen=True)
class _Threads:
    pid: int  # a forked child inherits the pools but not their threads or connections
    executor: ThreadPoolExecutor
    pool: Any  # urllib3.PoolManager


_shared: _Threads | None = None
_shared_lock = threading.Lock()
if hasattr(os, "register_at_fork"):  # a fork while another thread held the lock would leave it held
    os.register_at_fork(after_in_child=_shared_lock._at_fork_reinit)


def fetch_threads() -> int:
    """``BIA_BINDER_FETCH_THREADS`` (default: the connection limit, 64); 0 leaves every read to zarr."""
    return _number("BIA_BINDER_FETCH_THREADS", HTTPSettings.from_env().max_connections, int)


def _shared_threads(threads: int) -> _Threads:
    """One thread pool and one connection pool per process: reads reuse threads and connections."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.pid != os.getpid() or _shared.executor._max_workers < threads:
            # a replaced pool is not shut down: a read may still submit to it, and its threads end
            # once it is no longer referenced
            _shared = _Threads(
                os.getpid(),
                ThreadPoolExecutor(threads, thread_name_prefix="bia-binder-fetch"),
                urllib3.PoolManager(
                    maxsize=threads,
                    headers={"User-Agent": USER_AGENT},
                    # retries follow ``HTTPSettings`` like every other request; redirects are urllib3's
                    retries=urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=5),
                ),
            )
        return _shared


class Stopped(Exception):
    """The read this fetch belongs to has ended (another chunk failed, or the caller was interrupted)."""


class Watchdog:
    """Ends the bodies being read when their attempt's deadline passes, or all of them when the read ends.

    urllib3's timeout bounds each socket operation, so a server sending a byte a second would
    never time out; aiohttp's total timeout (the store's) bounds the whole request. A body is read
    in one call (as fast as it can be); this thread shuts its socket down from outside when it
    must stop (``HTTPResponse.shutdown``, urllib3 2.3+, exists for this).
    """

    INTERVAL = 0.1  # seconds between looks: how late a deadline or a stop can be noticed

    def __init__(self) -> None:
        self.ended = threading.Event()
        self._reading: dict[int, tuple[float, Any]] = {}  # thread id -> (deadline, response)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="bia-binder-fetch-watchdog", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def reading(self, response: Any, deadline: float) -> Iterator[None]:
        with self._lock:
            self._reading[threading.get_ident()] = (deadline, response)
        try:
            # ``end``'s last sweep shuts down what it finds: a body registered after it stops here
            if self.ended.is_set():
                raise Stopped
            yield
        finally:
            with self._lock:
                self._reading.pop(threading.get_ident(), None)

    def end(self) -> None:
        self.ended.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self.ended.wait(self.INTERVAL):
            self._shut_down(lambda deadline: time.monotonic() > deadline)
        self._shut_down(lambda deadline: True)

    def _shut_down(self, due: Callable[[float], bool]) -> None:
        with self._lock:
            late = [response for deadline, response in self._reading.values() if due(deadline)]
        for response in late:
            with contextlib.suppress(Exception):  # already finished or closed
                response.shutdown()


def fetch_blocking(
    pool: Any, url: str, settings: HTTPSettings, *, max_bytes: int, watchdog: Watchdog
) -> tuple[int, bytes]:
    """GET ``url`` whole with the store's retry rules; the final status and body.

    ``settings.timeout`` bounds each attempt as a whole; a body longer than ``max_bytes`` is
    refused before it is read.
    """
    retries = Retries(settings, url)
    for _ in retries:
        if watchdog.ended.is_set():
            raise Stopped
        try:
            return _attempt(pool, url, settings.timeout, max_bytes, watchdog)
        except _Transient as e:
            watchdog.ended.wait(retries.pause_after(str(e)))
    raise AssertionError("unreachable")  # pragma: no cover - Retries ends by raising


class _Transient(Exception):
    """An attempt that may succeed if tried again; the message is what went wrong."""


def _attempt(pool: Any, url: str, timeout: float, max_bytes: int, watchdog: Watchdog) -> tuple[int, bytes]:
    deadline = time.monotonic() + timeout
    try:
        response = pool.request("GET", url, preload_content=False, timeout=urllib3.Timeout(total=timeout))
    except urllib3.exceptions.HTTPError as e:
        raise _Transient(_describe(e)) from None
    try:
        if response.status in RETRY_STATUSES:
            raise _Transient(f"HTTP {response.status} {response.reason or ''}".rstrip())
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > max_bytes:
            raise MalformedResponseError(
                f"{url} is {length} bytes, more than any chunk of this array can be; "
                "the URL may not point to this array's data"
            )
        with watchdog.reading(response, deadline):
            body = response.read() if length.isdigit() else _read_at_most(response, max_bytes, url)
    except (urllib3.exceptions.HTTPError, OSError) as e:
        response.close()  # a connection left mid-body cannot serve another request
        if watchdog.ended.is_set():
            raise Stopped from None
        raise _Transient("timed out" if time.monotonic() > deadline else _describe(e)) from None
    except BaseException:
        response.close()
        raise
    response.release_conn()
    return response.status, body


def _read_at_most(response: Any, max_bytes: int, url: str) -> bytes:
    """A body without a Content-Length (chunked), refused as soon as it outgrows ``max_bytes``."""
    parts, size = [], 0
    while part := response.read(2**18):
        size += len(part)
        if size > max_bytes:
            raise MalformedResponseError(
                f"{url} sent more than {max_bytes} bytes, more than any chunk of this array can be; "
                "the URL may not point to this array's data"
            )
        parts.append(part)
    return b"".join(parts)


def _describe(error: Exception) -> str:
    reason = getattr(error, "reason", None) or error  # urllib3 wraps the cause once retries are spent
    if isinstance(reason, urllib3.exceptions.TimeoutError):
        return "timed out"
    return f"{type(reason).__name__}: {reason}"


@dataclass(frozen=True)
class PlainChunks:
    """Stored chunks that are one decompressor over the raw bytes of a full-size chunk."""

    decompressor: Any  # a numcodecs codec, or None for raw bytes
    stored_dtype: np.dtype  # with the byte order on disk
    shape: tuple[int, ...]
    order: str  # "C" or "F" (zarr v2 may store either)
    fill_value: Any

    @property
    def nbytes(self) -> int:
        return self.stored_dtype.itemsize * math.prod(self.shape)

    @property
    def decodes_into_buffers(self) -> bool:
        """Only blosc decodes into a buffer it is given (the others return new bytes)."""
        return self.decompressor is not None and self.decompressor.codec_id == "blosc"

    def decode(self, body: bytes, buffer: np.ndarray | None, url: str) -> np.ndarray:
        """The chunk, in its stored shape and byte order (a view of ``buffer`` or of the body)."""
        try:
            raw = self._decompress(body, buffer)
        except Exception as e:  # noqa: BLE001 - a corrupt chunk from a server is bad input: named, not a traceback
            raise MalformedResponseError(f"{url} is not a valid chunk of this array ({e}); the data may be corrupt") from None
        return raw.view(self.stored_dtype).reshape(self.shape, order=self.order)

    def _decompress(self, body: bytes, buffer: np.ndarray | None) -> np.ndarray:
        if self.decompressor is None:
            raw = np.frombuffer(body, np.uint8)
        elif self.decodes_into_buffers:
            # blosc would decode a shorter frame into the start of a reused buffer without a word;
            # its 16-byte header holds the decoded size at bytes 4-8 (little-endian), as blosc 1 documents
            size = int.from_bytes(body[4:8], "little") if len(body) >= 16 else 0
            if size != self.nbytes:
                raise ValueError(f"a blosc frame of {size} bytes, not {self.nbytes}")
            self.decompressor.decode(body, out=buffer)
            raw = buffer
        else:
            raw = np.frombuffer(self.decompressor.decode(body), np.uint8)
        if raw.nbytes != self.nbytes:
            raise ValueError(f"{raw.nbytes} bytes, not {self.nbytes}")
        return raw


def plain_chunks(array: zarr.Array) -> PlainChunks | None:
    """How to decode ``array``'s chunks without zarr, or None when zarr has to (see the module)."""
    pipeline = getattr(array.async_array, "codec_pipeline", None)
    serializer = getattr(pipeline, "array_bytes_codec", None)
    compressors = getattr(pipeline, "bytes_bytes_codecs", None)
    if V2Codec is None or serializer is None or compressors is None or getattr(pipeline, "array_array_codecs", True):
        return None  # another codec pipeline (e.g. zarrs), or one with transposes
    if array.shards is not None:
        return None
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "biufc":
        return None
    if isinstance(serializer, V2Codec) and not serializer.filters:
        decompressor, stored, order = serializer.compressor, dtype, array.metadata.order
    elif isinstance(serializer, BytesCodec) and len(compressors) <= 1:
        decompressor = _v3_decompressor(compressors[0]) if compressors else None
        if compressors and decompressor is None:
            return None
        endian = getattr(serializer.endian, "value", serializer.endian)
        stored = dtype.newbyteorder("<" if endian == "little" else ">") if endian and dtype.itemsize > 1 else dtype
        order = "C"
    else:
        return None
    if decompressor is not None and getattr(decompressor, "codec_id", None) not in DECOMPRESSORS:
        return None
    fill = array.fill_value if array.fill_value is not None else 0
    return PlainChunks(decompressor, stored, tuple(array.chunks), order, fill)


def _v3_decompressor(codec: Any) -> Any:
    # the frames of all three say how to decode them: no parameter of the codec is needed
    for kind, numcodec in ((BloscCodec, numcodecs.Blosc), (ZstdCodec, numcodecs.Zstd), (GzipCodec, numcodecs.GZip)):
        if type(codec) is kind:
            return numcodec()
    return None


def read_on_threads(array: zarr.Array, out: np.ndarray) -> bool:
    """Fill ``out`` with all of ``array`` if its chunks are plain and come over HTTP; else False."""
    store = array.store_path.store
    threads = fetch_threads()
    if urllib3 is None or threads == 0 or not isinstance(store, HTTPStore) or store.cache_dir is not None:
        return False
    chunks = plain_chunks(array)
    if chunks is None:
        return False
    _ChunkReads(array, store, chunks, out).run(threads)
    return True


class _ChunkReads:
    """One whole-array read: threads take chunk coordinates in C order until none are left."""

    def __init__(self, array: zarr.Array, store: HTTPStore, chunks: PlainChunks, out: np.ndarray) -> None:
        self.array, self.store, self.chunks, self.out = array, store, chunks, out
        self.prefix = array.store_path.path.strip("/")
        grid = [range(math.ceil(size / step)) for size, step in zip(array.shape, chunks.shape)]
        self.chunk_count = math.prod(len(axis) for axis in grid)
        self._coordinates: Iterator[tuple[int, ...]] = itertools.product(*grid)
        self._lock = threading.Lock()
        self._buffers: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
        self._watchdog: Watchdog | None = None
        # compressed chunks are rarely larger than raw ones; anything far larger is not a chunk
        self._max_body = 2 * chunks.nbytes + 2**16

    def run(self, threads: int) -> None:
        # bodies in flight (one per thread) and decode buffers together within IN_FLIGHT_BYTES
        affordable = max(1, IN_FLIGHT_BYTES // self.chunks.nbytes)
        buffers = min(DECODE_BUFFERS, max(1, affordable // 8)) if self.chunks.decodes_into_buffers else 0
        count = min(threads, max(1, affordable - buffers), self.chunk_count)
        for _ in range(min(buffers, count)):
            self._buffers.put(np.empty(self.chunks.nbytes, np.uint8))
        workers = []
        self._watchdog = Watchdog()
        try:
            shared = _shared_threads(threads)
            workers = [shared.executor.submit(self._work, shared.pool) for _ in range(count)]
            wait(workers)
        finally:
            self._watchdog.end()  # an interrupted caller stops the threads too, mid-body if need be
        errors = [worker.exception() for worker in workers]
        for error in errors:
            if error is not None and not isinstance(error, Stopped):
                raise error

    def _next(self) -> tuple[int, ...] | None:
        with self._lock:
            return None if self._watchdog.ended.is_set() else next(self._coordinates, None)

    def _work(self, pool: Any) -> None:
        try:
            while (coordinates := self._next()) is not None:
                self._read_chunk(pool, coordinates)
        except BaseException:
            self._watchdog.ended.set()  # the other threads stop too, mid-body if need be
            raise

    def _read_chunk(self, pool: Any, coordinates: tuple[int, ...]) -> None:
        key = self.array.metadata.encode_chunk_key(coordinates)
        url = self.store.url(f"{self.prefix}/{key}" if self.prefix else key)
        region = tuple(
            slice(i * step, min((i + 1) * step, size))
            for i, step, size in zip(coordinates, self.chunks.shape, self.array.shape)
        )
        status, body = fetch_blocking(pool, url, self.store.settings, max_bytes=self._max_body, watchdog=self._watchdog)
        if is_missing(url, status):  # never written: zarr's fill value
            self.out[region] = self.chunks.fill_value
            return
        # edge chunks are stored whole: their part outside the array is dropped
        inside = tuple(slice(0, r.stop - r.start) for r in region)
        with self._decode_buffer() as buffer:
            self.out[region] = self.chunks.decode(body, buffer, url)[inside]

    @contextlib.contextmanager
    def _decode_buffer(self) -> Iterator[np.ndarray | None]:
        """One of the read's blosc buffers while a chunk is decoded into it; None for other decoders."""
        if not self.chunks.decodes_into_buffers:
            yield None
            return
        buffer = self._buffers.get()
        try:
            yield buffer
        finally:
            self._buffers.put(buffer)
