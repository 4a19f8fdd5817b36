"""A read-only zarr 3 store over HTTP(S): concurrent, retrying, with an optional on-disk cache.

Written here rather than taken from fsspec's ``HTTPFileSystem`` because reads from public
archives need what that one lacks: retries with backoff on 5xx and timeouts, and an on-disk
cache that also keeps byte ranges (every read of a sharded array is a range; zarr's
experimental ``CacheStore`` keeps those in memory only). aiohttp rather than httpx: on
multi-megabyte chunks it reads several times faster (measured by ``bench/bench_data.py``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import aiohttp
from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype

from ._http import RETRY_STATUSES, USER_AGENT, DataAccessError, HTTPSettings, Retries

#: an anonymous S3 bucket without list permission answers 403 for a key that does not exist
MISSING_STATUSES = frozenset({403, 404})

# aiohttp sessions belong to the event loop that made them (zarr's sync API runs its own loop, a
# notebook's ``await`` another): one session per loop, shared by every store so connections are reused
_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
#: how much of a response aiohttp buffers before it stops reading the socket. Its default (64 KiB)
#: pauses and resumes every connection dozens of times per 2 MiB chunk; at 1 MiB a level of 2 MiB
#: chunks read ~1.5x faster (``bench/bench_data.py``), and memory stays bounded by connections x 2 MiB
READ_BUFFER_BYTES = 2**20


def session_for_this_loop() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        session = _sessions[loop] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=HTTPSettings.from_env().max_connections),
            headers={"User-Agent": USER_AGENT},
            read_bufsize=READ_BUFFER_BYTES,
        )
    return session


@atexit.register
def _close_sessions() -> None:
    """Close sessions whose loop still runs (zarr's does until its own exit hook, which runs after ours)."""
    for loop, session in list(_sessions.items()):
        if loop.is_running() and not session.closed:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(session.close(), loop).result(timeout=2)
    _sessions.clear()


def is_missing(url: str, status: int) -> bool:
    """Whether the object at ``url`` does not exist (zarr fills it in); any other error status raises."""
    if status in MISSING_STATUSES or status == 416:  # 416: a range past the end of the object
        return True
    if status >= 400:
        raise DataAccessError(f"reading {url}: HTTP {status}")
    return False


def range_header(byte_range: ByteRequest | None) -> dict[str, str]:
    match byte_range:
        case None:
            return {}
        case RangeByteRequest(start, end):
            return {"Range": f"bytes={start}-{end - 1}"}
        case OffsetByteRequest(offset):
            return {"Range": f"bytes={offset}-"}
        case SuffixByteRequest(suffix):
            return {"Range": f"bytes=-{suffix}"}
    raise TypeError(f"unsupported byte range {byte_range!r}")


def requested_part(body: bytes, byte_range: ByteRequest) -> bytes:
    """The bytes ``byte_range`` asks for, cut from a whole object."""
    match byte_range:
        case RangeByteRequest(start, end):
            return body[start:end]
        case OffsetByteRequest(offset):
            return body[offset:]
        case SuffixByteRequest(suffix):
            return body[-suffix:] if suffix else b""
    raise TypeError(f"unsupported byte range {byte_range!r}")


class HTTPStore(Store):
    """Keys are paths under ``base_url``; only ``get`` and ``exists`` are meaningful."""

    supports_writes = False
    supports_deletes = False
    supports_partial_writes = False
    supports_listing = False

    def __init__(self, base_url: str, *, cache_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__(read_only=True)
        self.base_url = base_url.rstrip("/")
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.settings = HTTPSettings.from_env()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HTTPStore) and other.base_url == self.base_url

    def __repr__(self) -> str:
        return f"HTTPStore({self.base_url!r})"

    async def _fetch(self, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """GET with the shared retry rules; returns the final status and body."""
        retries = Retries(self.settings, url)
        for _ in retries:
            try:
                timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
                async with session_for_this_loop().get(url, headers=headers, timeout=timeout) as response:
                    status = response.status
                    body = await response.read() if status not in RETRY_STATUSES else b""
                    problem = f"HTTP {status} {response.reason or ''}".rstrip()
            except TimeoutError:
                status, problem = 0, "timed out"
            except aiohttp.ClientError as e:
                status, problem = 0, f"{type(e).__name__}: {e}"
            if status and status not in RETRY_STATUSES:
                return status, body
            await asyncio.sleep(retries.pause_after(problem))
        raise AssertionError("unreachable")  # pragma: no cover - Retries ends by raising

    def url(self, key: str) -> str:
        return f"{self.base_url}/{key}"

    def _cache_path(self, key: str, byte_range: ByteRequest | None) -> Path | None:
        if self.cache_dir is None:
            return None
        name = hashlib.sha256(f"{self.url(key)} {byte_range!r}".encode()).hexdigest()
        return self.cache_dir / name[:2] / name

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        cached = self._cache_path(key, byte_range)
        if cached is not None:
            if cached.exists():
                return prototype.buffer.from_bytes(await asyncio.to_thread(cached.read_bytes))
            if _missing_marker(cached).exists():
                return None
        status, body = await self._fetch(self.url(key), range_header(byte_range))
        if is_missing(self.url(key), status):
            if cached is not None:  # archived data is immutable: what is missing stays missing
                await asyncio.to_thread(_write_atomically, _missing_marker(cached), b"")
            return None
        if byte_range is not None and status != 206:
            body = requested_part(body, byte_range)  # a server that ignores Range sends the whole object
        if cached is not None:
            await asyncio.to_thread(_write_atomically, cached, body)
        return prototype.buffer.from_bytes(body)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return list(await asyncio.gather(*(self.get(key, prototype, rng) for key, rng in key_ranges)))

    async def exists(self, key: str) -> bool:
        async with session_for_this_loop().head(self.url(key)) as response:
            return response.status < 400

    async def set(self, key: str, value: Buffer) -> None:
        raise DataAccessError(f"{self.base_url} is read-only")

    async def delete(self, key: str) -> None:
        raise DataAccessError(f"{self.base_url} is read-only")

    async def list(self) -> AsyncIterator[str]:
        raise DataAccessError(f"{self.base_url}: HTTP stores cannot be listed; OME-Zarr metadata names every path")
        yield ""  # pragma: no cover - makes this an async generator

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        async for key in self.list():
            yield key  # pragma: no cover

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        async for key in self.list():
            yield key  # pragma: no cover


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    partial.write_bytes(data)
    partial.replace(path)


def _missing_marker(cached: Path) -> Path:
    return cached.with_name(cached.name + ".missing")
