"""Size-limited filesystems: one sparse ext4 image per owner, loop-mounted.

The filesystem is the limit: a write past the image's size fails with ``ENOSPC`` for that owner
only (other sessions and the service are on other filesystems). Images are created with no
reserved blocks so that even a root-owned process hits the limit.

:class:`LoopDisks` is the mechanism (create, mount, grow, measure, unmount); two kinds use it:

- :class:`EphemeralDisks` here: the working directory of an anonymous session, made when it
  starts and deleted when it stops;
- :class:`bia_binder.portal.homes.HomeManager`: a logged-in user's persistent home.

Every call needs root (``mkfs.ext4``, ``mount``, ``umount``) and may block for up to seconds:
call them from async code with ``asyncio.to_thread``.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from traitlets import Unicode
from traitlets.config import LoggingConfigurable

IMAGE_SUFFIX = ".img"


class DiskError(RuntimeError):
    """A disk could not be created, mounted or measured; the message says why and what to do."""


def disk_name(owner: str) -> str:
    """A file name for ``owner``: safe characters kept, others as ``_xx`` (hex), so no two owners collide."""
    if not owner:
        raise DiskError("empty user name: cannot make a disk for it")
    return re.sub(r"[^a-z0-9@+.\-]|^[.\-]", lambda m: "".join(f"_{b:02x}" for b in m.group().encode()), owner)


def owner_from_disk_name(name: str) -> str:
    return re.sub(r"((?:_[0-9a-f]{2})+)", lambda m: bytes.fromhex(m.group().replace("_", "")).decode(), name)


@dataclass(frozen=True)
class DiskUsage:
    username: str
    used_bytes: int
    #: usable size of the filesystem (the quota, less ext4's own bookkeeping)
    size_bytes: int
    #: the quota: size of the image
    quota_bytes: int
    last_used: float
    mounted: bool


def run_tool(argv: list[str], what: str) -> str:
    """Run a system tool; ``DiskError`` naming ``what`` and the tool's last line when it fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise DiskError(f"{what}: {argv[0]} is not installed (Debian: apt-get install e2fsprogs mount)") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise DiskError(f"{what}: {argv[0]} failed: {detail[-1] if detail else 'exit ' + str(done.returncode)}")
    return done.stdout


class LoopDisks(LoggingConfigurable):
    """Sparse ext4 images under ``<root>/images``, mounted at :meth:`mount_point` while in use."""

    root = Unicode(help="Directory holding the images and (by default) their mount points.").tag(config=True)

    mount_options = Unicode(
        "loop,nosuid,nodev,discard",
        help="Options for mounting an image (mount -o). `discard`: a file deleted inside gives its space back to "
        "the host at once (the loop device punches a hole into the sparse image).",
    ).tag(config=True)

    @property
    def images_dir(self) -> Path:
        return Path(self.root) / "images"

    @property
    def mounts_dir(self) -> Path:
        return Path(self.root) / "mnt"

    def image_path(self, owner: str) -> Path:
        return self.images_dir / f"{disk_name(owner)}{IMAGE_SUFFIX}"

    def mount_point(self, owner: str) -> Path:
        return self.mounts_dir / disk_name(owner)

    def is_mounted(self, owner: str) -> bool:
        return os.path.ismount(self.mount_point(owner))

    def size_for(self, owner: str) -> int:
        """Bytes of ``owner``'s filesystem."""
        raise NotImplementedError

    def mkfs_features(self, owner: str) -> list[str]:
        """Extra ext4 features of a new disk (``mkfs.ext4 -O``), e.g. ``encrypt``."""
        return []

    @contextmanager
    def _locked(self, owner: str) -> Iterator[None]:
        """One operation at a time on an owner's disk: two sessions starting, or a start and a reclaim."""
        self.images_dir.mkdir(parents=True, exist_ok=True)
        with open(self.images_dir / f".{disk_name(owner)}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _mount_locked(self, owner: str, uid: int | None = None, gid: int | None = None) -> Path:
        """``owner``'s filesystem, created if new, grown if its size was raised, mounted: its mount point."""
        image = self.image_path(owner)
        if not image.exists():
            self._create_image(owner, image)
        mount_point = self.mount_point(owner)
        if not self.is_mounted(owner):
            self._grow_if_raised(owner, image)
            mount_point.mkdir(parents=True, exist_ok=True)
            run_tool(["mount", "-o", self.mount_options, str(image), str(mount_point)], f"mounting the disk of {owner}")
        if uid is not None:
            os.chown(mount_point, uid, gid if gid is not None else uid)
        self._touch(image)
        return mount_point

    def _create_image(self, owner: str, image: Path) -> None:
        partial = image.with_suffix(".partial")
        with open(partial, "wb") as f:
            f.truncate(self.size_for(owner))  # sparse: no disk used until written
        # -m 0: no blocks reserved for root, so the limit holds for every writer
        features = ["-O", ",".join(self.mkfs_features(owner))] if self.mkfs_features(owner) else []
        run_tool(["mkfs.ext4", "-q", "-F", "-m", "0", *features, "-L", "home", str(partial)], f"creating the disk of {owner}")
        os.replace(partial, image)  # never leave a half-made image under the real name
        self.log.info("Created a %d-byte disk for %s at %s", self.size_for(owner), owner, image)

    def _grow_if_raised(self, owner: str, image: Path) -> None:
        """Grow an unmounted image to a raised size (offline: resize2fs wants a checked filesystem)."""
        size = self.size_for(owner)
        if image.stat().st_size >= size:
            return
        with open(image, "r+b") as f:
            f.truncate(size)
        run_tool(["e2fsck", "-f", "-p", str(image)], f"checking the disk of {owner} before growing it")
        run_tool(["resize2fs", str(image)], f"growing the disk of {owner}")
        self.log.info("Grew the disk of %s to %d bytes", owner, size)

    def unmount(self, owner: str) -> None:
        """Unmount ``owner``'s disk if mounted (data stays in the image)."""
        if self.is_mounted(owner):
            run_tool(["umount", str(self.mount_point(owner))], f"unmounting the disk of {owner}")
        image = self.image_path(owner)
        if image.exists():
            self._touch(image)

    @staticmethod
    def _touch(image: Path) -> None:
        os.utime(image)

    def usage(self, owner: str) -> DiskUsage | None:
        """Space used and available on ``owner``'s disk, or ``None`` if they have none."""
        image = self.image_path(owner)
        if not image.exists():
            return None
        last_used = image.stat().st_mtime
        quota_bytes = image.stat().st_size
        if self.is_mounted(owner):
            st = os.statvfs(self.mount_point(owner))
            size, free = st.f_blocks * st.f_frsize, st.f_bfree * st.f_frsize
            return DiskUsage(owner, size - free, size, quota_bytes, last_used, True)
        size, free = self._unmounted_space(image)
        return DiskUsage(owner, size - free, size, quota_bytes, last_used, False)

    @staticmethod
    def _unmounted_space(image: Path) -> tuple[int, int]:
        """(size, free) bytes from the ext4 superblock, which is exact for an unmounted image."""
        header = run_tool(["dumpe2fs", "-h", str(image)], f"reading {image}")
        fields = dict(line.split(":", 1) for line in header.splitlines() if ":" in line)
        block_size = int(fields["Block size"])
        overhead = int(fields.get("Overhead clusters", "0").strip() or 0)
        blocks = int(fields["Block count"]) - overhead
        return blocks * block_size, int(fields["Free blocks"]) * block_size


class EphemeralDisks(LoopDisks):
    """Disk-limited working directories of anonymous sessions.

    A sparse ext4 image per session, mounted at the session's own directory under
    ``sessions_dir`` and deleted with the session. A loop mount rather than a size-limited
    tmpfs: tmpfs pages would count against the session's memory, and bubblewrap 0.8 (Debian 12)
    cannot size its tmpfs.
    """

    sessions_dir = Unicode(help="Directory of the sessions' working directories (the mount points).").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._sizes: dict[str, int] = {}

    @property
    def mounts_dir(self) -> Path:
        return Path(self.sessions_dir)

    def mount_point(self, owner: str) -> Path:
        return Path(self.sessions_dir) / owner

    def size_for(self, owner: str) -> int:
        return self._sizes[owner]

    @staticmethod
    def available() -> str | None:
        """Why disk limits cannot be made on this host, or None when they can."""
        if os.geteuid() != 0:
            return "not root: loop-mounting needs root"
        if not shutil.which("mkfs.ext4"):
            return "mkfs.ext4 not found: install e2fsprogs"
        if not Path("/dev/loop-control").exists():
            return "no /dev/loop-control: this host (container) offers no loop devices"
        return None

    def create(self, owner: str, size: int) -> Path:
        """A fresh, empty, mounted filesystem of ``size`` bytes for the session ``owner``."""
        self._sizes[owner] = size
        with self._locked(owner):
            mount_point = self._mount_locked(owner)
        (mount_point / "lost+found").rmdir()  # ext4's, of no use in a throw-away filesystem; noise in JupyterLab
        return mount_point

    def unmount(self, owner: str) -> None:
        # lazily: a process of the stopped session that has not quite gone must not keep the disk
        if self.is_mounted(owner):
            run_tool(["umount", "--lazy", str(self.mount_point(owner))], f"unmounting the disk of {owner}")

    def delete(self, owner: str) -> None:
        """Unmount and remove the session's disk and its mount point."""
        self.unmount(owner)
        self.image_path(owner).unlink(missing_ok=True)
        shutil.rmtree(self.mount_point(owner), ignore_errors=True)
