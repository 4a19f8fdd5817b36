"""The environment cache: content-addressed entries, atomic publication, pins and LRU eviction.

Layout under ``root``::

    <key>/                  a published entry (see base.py); only ever appears by rename
    <key>/last-used         its mtime is the entry's last use (LRU order)
    .tmp/<key>.<pid>.<rnd>  builds in progress; a dead builder's leftovers are removed, never looked up
                            (sandboxed builders build beside uv's cache instead: see EnvBuilder._build_area)
    .pins/<key>/<holder>    one file per session using the entry: pinned entries are never evicted
    .locks/<key>.lock       flock held while a process builds <key> (the hub and the binder service share the cache)

Everything is plain files so that a restarted service (or ``bia-binder cache``) sees the same state.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from .base import Environment

METADATA = "environment.json"
_HOLDER_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]")


@dataclass
class CacheEntry:
    key: str
    path: Path
    buildpack: str
    last_used: float
    own_bytes: int  # disk only this entry uses (files not hardlinked from uv's cache or elsewhere)
    pinned_by: list[str]


class EnvCache:
    def __init__(self, root: Path, tmp_dir: Path | None = None):
        """``tmp_dir``: where builds happen instead of ``root/.tmp``; on ``root``'s filesystem (publishing is a rename)."""
        self.root = root
        self.tmp_dir = tmp_dir or root / ".tmp"
        self.pins_dir = root / ".pins"
        for directory in (self.root, self.tmp_dir, self.pins_dir):
            directory.mkdir(parents=True, exist_ok=True)

    def entry_dir(self, key: str) -> Path:
        return self.root / key

    @contextlib.asynccontextmanager
    async def exclusive_build(self, key: str, on_wait: Callable[[], None], poll: float = 0.25) -> AsyncIterator[None]:
        """Hold the cross-process build lock of ``key``; ``on_wait`` is called once if another process holds it.

        Within one process builds of a key are joined; this keeps two processes (the hub's spawner and
        the binder service) from building the same environment twice at once. An ``flock``, so a
        crashed holder releases it.
        """
        locks = self.root / ".locks"
        locks.mkdir(exist_ok=True)
        with open(locks / f"{key}.lock", "a") as lock:
            waiting = False
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not waiting:
                        on_wait()
                        waiting = True
                    await asyncio.sleep(poll)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def lookup(self, key: str) -> Environment | None:
        root = self.entry_dir(key)
        if not (root / METADATA).is_file():
            return None
        self.touch(key)
        return Environment.load(root)

    def touch(self, key: str) -> None:
        (self.entry_dir(key) / "last-used").touch()

    def new_build_dir(self, key: str) -> Path:
        """A fresh directory for building ``key``, on the cache's filesystem so publishing is a rename."""
        path = Path(tempfile.mkdtemp(prefix=f"{key}.{os.getpid()}.", dir=self.tmp_dir))
        path.chmod(0o755)  # sessions run as other users and must read the published entry
        return path

    def publish(self, build_dir: Path, key: str) -> Environment:
        """Move a finished build into place atomically; if another builder won the race, keep theirs."""
        target = self.entry_dir(key)
        (build_dir / "last-used").touch()
        try:
            os.rename(build_dir, target)
        except OSError:
            if not (target / METADATA).is_file():
                raise
            shutil.rmtree(build_dir, ignore_errors=True)
        return Environment.load(target)

    def discard(self, build_dir: Path) -> None:
        shutil.rmtree(build_dir, ignore_errors=True)

    def remove_stale_builds(self) -> list[Path]:
        """Remove the temporary directories of builders that no longer run (crashed or killed)."""
        removed = []
        for path in self.tmp_dir.iterdir():
            pid = _pid_from_build_dir(path)
            if pid is None or not _process_alive(pid):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        return removed

    # pins ---------------------------------------------------------------------------------------
    def pin(self, key: str, holder: str) -> None:
        pin_dir = self.pins_dir / key
        pin_dir.mkdir(parents=True, exist_ok=True)
        (pin_dir / _holder_file(holder)).touch()

    def unpin(self, key: str, holder: str) -> None:
        (self.pins_dir / key / _holder_file(holder)).unlink(missing_ok=True)

    def unpin_everywhere(self, holder: str) -> None:
        """Drop every pin of ``holder``: a session that ended without its state (a hub restarted in between)
        must not keep its environment from eviction for ever."""
        for pin in self.pins_dir.glob(f"*/{_holder_file(holder)}"):
            pin.unlink(missing_ok=True)

    def pinned_by(self, key: str) -> list[str]:
        pin_dir = self.pins_dir / key
        return sorted(p.name for p in pin_dir.iterdir()) if pin_dir.is_dir() else []

    # listing and eviction ---------------------------------------------------------------------------
    def keys(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and (p / METADATA).is_file())

    def entry(self, key: str) -> CacheEntry:
        path = self.entry_dir(key)
        meta = json.loads((path / METADATA).read_text())
        own_bytes = meta.get("own_bytes")
        return CacheEntry(
            key=key,
            path=path,
            buildpack=meta.get("buildpack", "python"),
            last_used=_mtime(path / "last-used"),
            # measured once by the builder; files unique to an entry stay unique, so it does not go stale
            own_bytes=own_bytes if isinstance(own_bytes, int) else own_disk_usage(path),
            pinned_by=self.pinned_by(key),
        )

    def entries(self) -> list[CacheEntry]:
        return [self.entry(key) for key in self.keys()]

    def remove(self, key: str) -> None:
        """Take an entry out of the cache: renamed away first, so no lookup ever sees it half-deleted."""
        trash = Path(tempfile.mkdtemp(prefix=f"removed-{key}.{os.getpid()}.", dir=self.tmp_dir))
        os.rename(self.entry_dir(key), trash / key)
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(self.pins_dir / key, ignore_errors=True)

    def evict(self, budget_bytes: int, keep: frozenset[str] = frozenset()) -> list[str]:
        """Remove least-recently-used unpinned entries until the cache's own disk use fits ``budget_bytes``."""
        entries = sorted(self.entries(), key=lambda e: e.last_used)
        total = sum(e.own_bytes for e in entries)
        removed: list[str] = []
        for entry in entries:
            if total <= budget_bytes:
                break
            if entry.pinned_by or entry.key in keep:
                continue
            self.remove(entry.key)
            total -= entry.own_bytes
            removed.append(entry.key)
        return removed


def own_disk_usage(path: Path) -> int:
    """Bytes on disk used by files under ``path`` that have no other hard link (what removing it frees)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if st.st_nlink == 1 or name in dirnames:
                total += st.st_blocks * 512
    return total


def _holder_file(holder: str) -> str:
    safe = _HOLDER_UNSAFE.sub("_", holder)
    if not safe.strip("._"):
        raise ValueError(f"pin holder {holder!r} has no usable characters")
    return safe


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _pid_from_build_dir(path: Path) -> int | None:
    parts = path.name.split(".")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
