"""Whole-array reads on threads (``_threaded_read``) give exactly what zarr gives, for every layout
they accept; decline the rest; and treat a server's bad answers as bad input: a clear error, no
silent garbage, no threads left fetching."""

from __future__ import annotations

import collections
import multiprocessing
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, GzipCodec, TransposeCodec, ZstdCodec

from bia_binder.data import DataAccessError, MalformedResponseError, open_ome_zarr
from bia_binder.data._store import HTTPStore
from bia_binder.data import _threaded_read
from bia_binder.data._threaded_read import plain_chunks, read_on_threads

from . import stores
from .fileserver import FaultyServer, serving


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FaultyServer]:
    with serving(tmp_path / "served") as served:
        yield served


def remote(server: FaultyServer, name: str) -> zarr.Array:
    return zarr.open_array(HTTPStore(f"{server.url}/{name}"), mode="r")


def noisy(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    return (rng.random(shape) * 1000).astype(dtype)


V2 = {"zarr_format": 2, "chunk_key_encoding": {"name": "v2", "separator": "/"}}
# every layout the threaded read accepts; edge chunks on every axis (see ``write``)
ACCEPTED = {
    "v2-blosc-lz4-shuffle": dict(V2, compressors=numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE)),
    "v2-blosc-zstd-bitshuffle-big-endian": dict(V2, dtype=">u2", compressors=numcodecs.Blosc("zstd", 3, numcodecs.Blosc.BITSHUFFLE)),
    "v2-zlib-fortran-order": dict(V2, compressors=numcodecs.Zlib(1), order="F"),
    "v2-gzip-float32": dict(V2, dtype="<f4", compressors=numcodecs.GZip(1)),
    "v2-raw-int8": dict(V2, dtype="i1", compressors=None),
    "v2-dot-separator-bool": {"zarr_format": 2, "dtype": "bool", "compressors": numcodecs.Zstd(1)},
    "v3-zstd": {"zarr_format": 3, "compressors": ZstdCodec(level=1)},
    "v3-zstd-checksum-big-endian": {"zarr_format": 3, "serializer": BytesCodec(endian="big"), "compressors": ZstdCodec(checksum=True)},
    "v3-blosc": {"zarr_format": 3, "compressors": BloscCodec(cname="lz4", shuffle="shuffle")},
    "v3-gzip-float64": {"zarr_format": 3, "dtype": "float64", "compressors": GzipCodec(level=1)},
    "v3-raw-v2-keys": {"zarr_format": 3, "compressors": None, "chunk_key_encoding": {"name": "v2", "separator": "/"}},
}
DECLINED = {
    "v3-sharded": {"zarr_format": 3, "shards": (2, 40, 60)},
    "v3-crc32c": {"zarr_format": 3, "compressors": [ZstdCodec(), Crc32cCodec()]},
    "v3-transpose": {"zarr_format": 3, "filters": [TransposeCodec(order=(2, 1, 0))]},
    "v2-delta-filter": dict(V2, filters=[numcodecs.Delta(dtype="<u2")]),
}


SHAPE, CHUNKS = (3, 70, 95), (2, 20, 30)  # edge chunks on every axis: 2 x 4 x 4 = 32 chunks
CHUNK_COUNT = 32


def write(root: Path, name: str, options: dict, *, fill_value: int = 0, skip_planes: tuple[int, ...] = ()) -> np.ndarray:
    """A ``SHAPE`` array in ``CHUNKS``; planes in ``skip_planes`` are never written (zarr's fill value)."""
    options = dict(options)
    dtype = options.pop("dtype", "<u2")
    data = noisy(SHAPE, dtype)
    array = zarr.create_array(root / name, shape=data.shape, chunks=CHUNKS, dtype=dtype,
                              fill_value=fill_value, **options)
    for plane in range(data.shape[0]):
        if plane not in skip_planes:
            array[plane] = data[plane]
    return array[...]  # what zarr itself reads, fill values included


@pytest.mark.parametrize("layout", sorted(ACCEPTED))
def test_every_accepted_layout_reads_exactly_what_zarr_reads(server, layout):
    expected = write(server.root, layout, ACCEPTED[layout], fill_value=1, skip_planes=(2,))  # its chunks: 404
    array = remote(server, layout)
    assert plain_chunks(array) is not None  # else this would compare zarr with zarr
    out = np.empty(array.shape, np.dtype(array.dtype).newbyteorder("="))
    assert read_on_threads(array, out)
    np.testing.assert_array_equal(out, expected)
    # every chunk fetched exactly once, the never written ones' 404s included
    assert server.chunk_hits(f"/{layout}/") == CHUNK_COUNT
    assert set(server.chunk_requests(f"/{layout}/").values()) == {1}


@pytest.mark.parametrize("layout", sorted(DECLINED))
def test_layouts_zarr_must_decode_are_left_to_zarr(server, layout):
    write(server.root, layout, DECLINED[layout])
    array = remote(server, layout)
    assert plain_chunks(array) is None
    assert not read_on_threads(array, np.empty(array.shape, array.dtype))
    assert server.chunk_hits(f"/{layout}/") == 0


def test_a_level_is_read_on_threads_and_zarr_sends_no_chunk_request(server, monkeypatch):
    expected = stores.image_data(size=96, z=4)
    stores.write_image(server.root / "v04.zarr", expected, big_endian=True)
    gets = collections.Counter()
    original = HTTPStore.get

    async def counting_get(self, key, prototype, byte_range=None):
        name = key.rsplit("/", 1)[-1]
        gets[name.startswith(".") or name == "zarr.json"] += 1
        return await original(self, key, prototype, byte_range)

    monkeypatch.setattr(HTTPStore, "get", counting_get)
    whole = open_ome_zarr(f"{server.url}/v04.zarr").levels[0].compute()
    np.testing.assert_array_equal(whole, expected)
    assert whole.dtype.isnative
    assert gets[False] == 0 and gets[True] > 0  # metadata through zarr, every chunk on the threads
    assert server.chunk_hits("/v04.zarr/0/") == 2 * 4 * 3 * 3

    monkeypatch.setenv("BIA_BINDER_FETCH_THREADS", "0")  # the switch back to zarr's own requests
    np.testing.assert_array_equal(open_ome_zarr(f"{server.url}/v04.zarr").levels[0].compute(), expected)
    assert gets[False] == 2 * 4 * 3 * 3


def test_threads_are_shared_between_reads_not_started_per_read(server):
    write(server.root, "a.zarr", ACCEPTED["v2-blosc-lz4-shuffle"])
    array = remote(server, "a.zarr")
    out = np.empty(array.shape, array.dtype)
    for _ in range(3):
        read_on_threads(array, out)
    fetchers = [t for t in threading.enumerate() if t.name.startswith("bia-binder-fetch")]
    assert 0 < len(fetchers) <= 64


def test_a_transient_5xx_on_a_chunk_is_retried(server, monkeypatch):
    monkeypatch.setenv("BIA_BINDER_HTTP_BACKOFF", "0.01")
    expected = write(server.root, "r.zarr", ACCEPTED["v2-blosc-lz4-shuffle"])
    server.faults["/r.zarr/0/0/0"] = [("status", 503), ("status", 502)]
    out = np.empty(expected.shape, expected.dtype)
    assert read_on_threads(remote(server, "r.zarr"), out)
    np.testing.assert_array_equal(out, expected)
    assert server.hits["/r.zarr/0/0/0"] == 3


def test_a_chunk_that_keeps_failing_stops_the_read_and_its_threads(server, monkeypatch):
    monkeypatch.setenv("BIA_BINDER_HTTP_RETRIES", "1")
    monkeypatch.setenv("BIA_BINDER_HTTP_BACKOFF", "0.01")
    monkeypatch.setenv("BIA_BINDER_FETCH_THREADS", "1")  # one thread: the failing chunk is the first it reads
    write(server.root, "f.zarr", ACCEPTED["v2-blosc-lz4-shuffle"])
    server.faults["/f.zarr/0/0/0"] = [("status", 500), ("status", 500)]
    array = remote(server, "f.zarr")
    with pytest.raises(DataAccessError, match=r"f\.zarr/0/0/0 failed after 2 attempts \(HTTP 500"):
        read_on_threads(array, np.empty(array.shape, array.dtype))
    assert server.chunk_hits("/f.zarr/") == 2  # nothing fetched after the failure


def test_a_hanging_chunk_times_out_with_a_clear_error(server, monkeypatch):
    monkeypatch.setenv("BIA_BINDER_HTTP_TIMEOUT", "1")
    monkeypatch.setenv("BIA_BINDER_HTTP_RETRIES", "0")
    write(server.root, "h.zarr", ACCEPTED["v2-blosc-lz4-shuffle"])
    server.faults["/h.zarr/1/3/3"] = [("hang", 3)]
    array = remote(server, "h.zarr")
    with pytest.raises(DataAccessError, match=r"h\.zarr/1/3/3 failed after 1 attempts \(timed out\)"):
        read_on_threads(array, np.empty(array.shape, array.dtype))


def test_a_body_sent_a_byte_at_a_time_times_out_as_a_whole(server, monkeypatch):
    monkeypatch.setenv("BIA_BINDER_HTTP_TIMEOUT", "1")
    monkeypatch.setenv("BIA_BINDER_HTTP_RETRIES", "0")
    write(server.root, "t.zarr", ACCEPTED["v2-blosc-lz4-shuffle"])
    server.faults["/t.zarr/0/1/2"] = [("trickle", (100, 0.2))]  # 20 s in all, each byte well within 1 s
    array = remote(server, "t.zarr")
    started = time.monotonic()
    with pytest.raises(DataAccessError, match=r"t\.zarr/0/1/2 failed after 1 attempts \(timed out\)"):
        read_on_threads(array, np.empty(array.shape, array.dtype))
    assert time.monotonic() - started < 8


@pytest.mark.parametrize("headers_after", [0, 1.0], ids=["body-under-way", "headers-after-the-failure"])
def test_one_failed_chunk_stops_the_others_mid_body(server, monkeypatch, headers_after):
    monkeypatch.setenv("BIA_BINDER_HTTP_TIMEOUT", "60")
    monkeypatch.setenv("BIA_BINDER_HTTP_RETRIES", "0")
    write(server.root, "s.zarr", ACCEPTED["v2-blosc-lz4-shuffle"])
    # would take 20 s; its headers come before or after the other chunk has failed
    server.faults["/s.zarr/0/0/1"] = [("trickle", (100, 0.2, headers_after))]
    server.faults["/s.zarr/1/3/3"] = [("status", 500)]
    array = remote(server, "s.zarr")
    started = time.monotonic()
    with pytest.raises(DataAccessError, match=r"s\.zarr/1/3/3 failed after 1 attempts \(HTTP 500"):
        read_on_threads(array, np.empty(array.shape, array.dtype))
    assert time.monotonic() - started < 10  # the trickling thread stopped instead of reading on


@pytest.mark.parametrize("framing", ["body", "chunked"])
def test_a_body_far_larger_than_a_chunk_is_refused(server, framing):
    write(server.root, "o.zarr", ACCEPTED["v3-zstd"])
    array = remote(server, "o.zarr")
    chunk_bytes = plain_chunks(array).nbytes
    server.faults["/o.zarr/c/0/1/1"] = [(framing, b"\0" * (64 * chunk_bytes + 2**17))]
    with pytest.raises(MalformedResponseError, match=r"o\.zarr/c/0/1/1 (is|sent more than) \d+ bytes, more than any chunk"):
        read_on_threads(array, np.empty(array.shape, array.dtype))


def test_a_chunked_response_of_the_right_size_is_read(server):
    expected = write(server.root, "ch.zarr", ACCEPTED["v3-zstd"])
    for coordinates in ((0, 0, 0), (1, 3, 3)):
        key = f"ch.zarr/{zarr.open_array(server.root / 'ch.zarr').metadata.encode_chunk_key(coordinates)}"
        server.faults[f"/{key}"] = [("chunked", (server.root / key).read_bytes())]
    out = np.empty(expected.shape, expected.dtype)
    assert read_on_threads(remote(server, "ch.zarr"), out)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    ("layout", "body"),
    [
        # a valid blosc frame of a smaller chunk: decoding it into a reused buffer would keep stale bytes
        ("v2-blosc-lz4-shuffle", numcodecs.Blosc().encode(np.arange(10, dtype="<u2"))),
        ("v2-blosc-lz4-shuffle", b"not a blosc frame at all, but long enough"),
        ("v2-blosc-lz4-shuffle", b"\x02"),
        ("v3-zstd", numcodecs.Zstd().encode(np.arange(10, dtype="<u2"))),
        ("v3-zstd", b"\x28\xb5\x2f\xfd garbage"),
        ("v2-zlib-fortran-order", b"zlib? no"),
        ("v2-raw-int8", b"short"),
    ],
    ids=["blosc-wrong-size", "blosc-garbage", "blosc-one-byte", "zstd-wrong-size", "zstd-garbage", "zlib-garbage", "raw-short"],
)
def test_a_corrupt_chunk_is_a_clear_error_not_silent_garbage(server, layout, body):
    write(server.root, layout, ACCEPTED[layout])
    array = remote(server, layout)
    key = array.metadata.encode_chunk_key((1, 2, 1))
    server.faults[f"/{layout}/{key}"] = [("body", body)]
    with pytest.raises(MalformedResponseError) as error:
        read_on_threads(array, np.empty(array.shape, np.dtype(array.dtype).newbyteorder("=")))
    message = str(error.value)
    assert f"{layout}/{key} is not a valid chunk of this array" in message and "\n" not in message


def test_big_chunks_are_read_by_fewer_threads_so_memory_stays_bounded(server, monkeypatch):
    expected = write(server.root, "big.zarr", ACCEPTED["v2-blosc-lz4-shuffle"])
    array = remote(server, "big.zarr")
    chunk_bytes = plain_chunks(array).nbytes
    # room for four chunks: one blosc decode buffer and three bodies, so three threads
    monkeypatch.setattr(_threaded_read, "IN_FLIGHT_BYTES", 4 * chunk_bytes)
    server.most_in_flight = 0  # opening the array sent its metadata requests at once
    out = np.empty(array.shape, array.dtype)
    assert read_on_threads(array, out)
    np.testing.assert_array_equal(out, expected)
    # concurrent, but within the budget (+1: a thread's next request can reach the server before
    # the server thread that answered its last one has counted itself out)
    assert 2 <= server.most_in_flight <= 4


def test_a_forked_child_reads_with_threads_of_its_own(server):
    write(server.root, "parent.zarr", ACCEPTED["v3-zstd"])
    parent = remote(server, "parent.zarr")
    assert read_on_threads(parent, np.empty(parent.shape, parent.dtype))  # 32 chunks: dozens of idle threads now
    small = noisy((2, 20, 30), "<u2", seed=5)
    zarr.create_array(server.root / "child.zarr", data=small, chunks=(1, 20, 30), zarr_format=3)
    array = remote(server, "child.zarr")

    def child(answer):
        out = np.empty(array.shape, array.dtype)
        answer.put(bool(read_on_threads(array, out)) and bool(np.array_equal(out, small)))

    # an inherited thread pool believes its idle threads still exist: a read of fewer chunks
    # than those would wait forever
    context = multiprocessing.get_context("fork")
    answer = context.Queue()
    process = context.Process(target=child, args=(answer,))
    process.start()
    try:
        assert answer.get(timeout=20) is True
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
