"""Persistent homes for logged-in users: one sparse ext4 image per user, loop-mounted.

The filesystem is the quota: a write past the image's size fails with ``ENOSPC`` for that user
only (other users and the service are on other filesystems). Images are created with no
reserved blocks so that even a root-owned process hits the limit. Data lives in the image, so it
survives session restarts, culls, unmounts and hub restarts.

Layout under :attr:`HomeManager.root` (default ``/var/lib/bia-binder/homes``)::

    images/<name>.img      the user's filesystem (sparse: uses only what is written)
    mnt/<name>/            where it is mounted while in use
    archive/<name>.img     homes untouched for ``archive_after_days``, kept ``delete_after_days`` more

``<name>`` is the JupyterHub user name, escaped (:func:`home_name`) to be a safe file name.
"Last used" is the image's modification time, which :meth:`HomeManager.ensure_home` and
:meth:`HomeManager.unmount` set, so an idle home's age is exact even if nothing was written.

Used by the spawner (every call needs root: it runs ``mkfs.ext4``, ``mount``, ``umount``;
the calls block for up to seconds, so call them from async code with ``asyncio.to_thread``)::

    homes = HomeManager(parent=self)            # configured from c.HomeManager.*
    path = homes.ensure_home(user.name, uid=uid, gid=gid)   # mounted, quota-enforced
    homes.usage(user.name)                      # HomeUsage(used_bytes, size_bytes, ...)
    homes.unmount(user.name)                    # after the session stopped (optional)

and by operators (``bia-binder users``): :meth:`HomeManager.reclaim_plan` lists what is due for
archiving or deletion; :meth:`HomeManager.reclaim` does it.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from jupyterhub.traitlets import ByteSpecification
from traitlets import Dict, Integer, Unicode
from traitlets.config import LoggingConfigurable

DAY = 24 * 3600
IMAGE_SUFFIX = ".img"


class HomeError(RuntimeError):
    """A home could not be created, mounted or measured; the message says why and what to do."""


def home_name(username: str) -> str:
    """A file name for ``username``: safe characters kept, others as ``_xx`` (hex), so no two users collide."""
    if not username:
        raise HomeError("empty user name: cannot make a home for it")
    return re.sub(r"[^a-z0-9@+.\-]|^[.\-]", lambda m: "".join(f"_{b:02x}" for b in m.group().encode()), username)


def username_from_home_name(name: str) -> str:
    return re.sub(r"((?:_[0-9a-f]{2})+)", lambda m: bytes.fromhex(m.group().replace("_", "")).decode(), name)


@dataclass(frozen=True)
class HomeUsage:
    username: str
    used_bytes: int
    #: usable size of the filesystem (the quota, less ext4's own bookkeeping)
    size_bytes: int
    #: the quota: size of the image
    quota_bytes: int
    last_used: float
    mounted: bool


@dataclass(frozen=True)
class ReclaimAction:
    username: str
    action: str  # "archive" or "delete"
    path: Path
    last_used: float


def _run(argv: list[str], what: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise HomeError(f"{what}: {argv[0]} is not installed (Debian: apt-get install e2fsprogs mount)") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise HomeError(f"{what}: {argv[0]} failed: {detail[-1] if detail else 'exit ' + str(done.returncode)}")
    return done.stdout


class HomeManager(LoggingConfigurable):
    """Creates, mounts, measures, archives and deletes per-user home filesystems."""

    root = Unicode(
        "/var/lib/bia-binder/homes",
        help="Directory holding the home images, their mount points and the archive.",
    ).tag(config=True)

    quota = ByteSpecification(
        10 * 1024**3,
        help="""Size of each home (the hard quota), e.g. '10G', '500M' or bytes.

        Raising it grows existing homes when next mounted; homes are never shrunk.""",
    ).tag(config=True)

    user_quotas = Dict(
        value_trait=ByteSpecification(),
        help="Per-user quotas overriding `quota`, e.g. {'alice@lifescience-ri.eu': '50G'}.",
    ).tag(config=True)

    archive_after_days = Integer(
        365,
        help="Homes not used for this many days are archived (moved out of use) by reclaim().",
    ).tag(config=True)

    delete_after_days = Integer(
        90,
        help="Archived homes are deleted this many days after archiving by reclaim().",
    ).tag(config=True)

    mount_options = Unicode(
        "loop,nosuid,nodev",
        help="Options for mounting a home image (mount -o).",
    ).tag(config=True)

    @property
    def images_dir(self) -> Path:
        return Path(self.root) / "images"

    @property
    def mounts_dir(self) -> Path:
        return Path(self.root) / "mnt"

    @property
    def archive_dir(self) -> Path:
        return Path(self.root) / "archive"

    def image_path(self, username: str) -> Path:
        return self.images_dir / f"{home_name(username)}{IMAGE_SUFFIX}"

    def mount_point(self, username: str) -> Path:
        return self.mounts_dir / home_name(username)

    def archived_path(self, username: str) -> Path:
        return self.archive_dir / f"{home_name(username)}{IMAGE_SUFFIX}"

    def is_mounted(self, username: str) -> bool:
        return os.path.ismount(self.mount_point(username))

    def ensure_home(self, username: str, uid: int | None = None, gid: int | None = None) -> Path:
        """The user's home, created if new, mounted if not yet: returns its mount point.

        ``uid``/``gid`` own the home's top directory (the session's user); a home archived by
        :meth:`reclaim` is brought back first.
        """
        with self._locked(username):
            return self._ensure_home_locked(username, uid, gid)

    @contextmanager
    def _locked(self, username: str) -> Iterator[None]:
        """One operation at a time on a user's home: two sessions starting, or a start and a reclaim."""
        self.images_dir.mkdir(parents=True, exist_ok=True)
        with open(self.images_dir / f".{home_name(username)}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _ensure_home_locked(self, username: str, uid: int | None, gid: int | None) -> Path:
        image = self.image_path(username)
        if not image.exists() and self.archived_path(username).exists():
            self.log.info("Restoring archived home of %s", username)
            os.replace(self.archived_path(username), image)
        if not image.exists():
            self._create_image(username, image)
        mount_point = self.mount_point(username)
        if not self.is_mounted(username):
            self._grow_if_quota_raised(username, image)
            mount_point.mkdir(parents=True, exist_ok=True)
            _run(["mount", "-o", self.mount_options, str(image), str(mount_point)], f"mounting the home of {username}")
        if uid is not None:
            os.chown(mount_point, uid, gid if gid is not None else uid)
        self._touch(image)
        return mount_point

    def quota_for(self, username: str) -> int:
        return self.user_quotas.get(username, self.quota)

    def _create_image(self, username: str, image: Path) -> None:
        partial = image.with_suffix(".partial")
        with open(partial, "wb") as f:
            f.truncate(self.quota_for(username))  # sparse: no disk used until written
        # -m 0: no blocks reserved for root, so the limit holds for every writer
        _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-L", "home", str(partial)], f"creating the home of {username}")
        os.replace(partial, image)  # never leave a half-made image under the real name
        self.log.info("Created a %d-byte home for %s at %s", self.quota_for(username), username, image)

    def _grow_if_quota_raised(self, username: str, image: Path) -> None:
        """Grow an unmounted home to a raised quota (offline: resize2fs wants a checked filesystem)."""
        quota = self.quota_for(username)
        if image.stat().st_size >= quota:
            return
        with open(image, "r+b") as f:
            f.truncate(quota)
        _run(["e2fsck", "-f", "-p", str(image)], f"checking the home of {username} before growing it")
        _run(["resize2fs", str(image)], f"growing the home of {username}")
        self.log.info("Grew the home of %s to %d bytes", username, quota)

    def unmount(self, username: str) -> None:
        """Unmount the user's home if mounted (data stays in the image)."""
        if self.is_mounted(username):
            _run(["umount", str(self.mount_point(username))], f"unmounting the home of {username}")
        image = self.image_path(username)
        if image.exists():
            self._touch(image)

    @staticmethod
    def _touch(image: Path) -> None:
        os.utime(image)

    def usage(self, username: str) -> HomeUsage | None:
        """Space used and available in the user's home, or ``None`` if they have none."""
        image = self.image_path(username)
        if not image.exists():
            return None
        last_used = image.stat().st_mtime
        quota_bytes = image.stat().st_size
        if self.is_mounted(username):
            st = os.statvfs(self.mount_point(username))
            size, free = st.f_blocks * st.f_frsize, st.f_bfree * st.f_frsize
            return HomeUsage(username, size - free, size, quota_bytes, last_used, True)
        size, free = self._unmounted_space(image)
        return HomeUsage(username, size - free, size, quota_bytes, last_used, False)

    @staticmethod
    def _unmounted_space(image: Path) -> tuple[int, int]:
        """(size, free) bytes from the ext4 superblock, which is exact for an unmounted image."""
        header = _run(["dumpe2fs", "-h", str(image)], f"reading {image}")
        fields = dict(line.split(":", 1) for line in header.splitlines() if ":" in line)
        block_size = int(fields["Block size"])
        overhead = int(fields.get("Overhead clusters", "0").strip() or 0)
        blocks = int(fields["Block count"]) - overhead
        return blocks * block_size, int(fields["Free blocks"]) * block_size

    def usernames(self) -> list[str]:
        """Users who have a home (in use or archived)."""
        images = [*self.images_dir.glob(f"*{IMAGE_SUFFIX}"), *self.archive_dir.glob(f"*{IMAGE_SUFFIX}")]
        names = {image.name.removesuffix(IMAGE_SUFFIX) for image in images}
        return sorted(username_from_home_name(n) for n in names)

    def reclaim_plan(self, now: float | None = None) -> list[ReclaimAction]:
        """What :meth:`reclaim` would do now: homes to archive and archives to delete (none mounted)."""
        now = time.time() if now is None else now
        plan = []
        for username in self.usernames():
            image, archived = self.image_path(username), self.archived_path(username)
            if image.exists() and not self.is_mounted(username):
                last_used = image.stat().st_mtime
                if now - last_used > self.archive_after_days * DAY:
                    plan.append(ReclaimAction(username, "archive", image, last_used))
            if archived.exists():
                archived_at = archived.stat().st_mtime
                if now - archived_at > self.delete_after_days * DAY:
                    plan.append(ReclaimAction(username, "delete", archived, archived_at))
        return plan

    def reclaim(self, plan: list[ReclaimAction]) -> list[ReclaimAction]:
        """Carry out a plan from :meth:`reclaim_plan`; homes mounted since are skipped."""
        return [item for item in plan if self._reclaim_one(item)]

    def _reclaim_one(self, item: ReclaimAction) -> bool:
        with self._locked(item.username):
            if self.is_mounted(item.username):
                self.log.warning("Not reclaiming the home of %s: it is in use", item.username)
                return False
            if item.action == "archive":
                self.archive_dir.mkdir(parents=True, exist_ok=True)
                target = self.archived_path(item.username)
                os.replace(item.path, target)
                os.utime(target)  # the archive's mtime is when it was archived
            else:
                item.path.unlink(missing_ok=True)
            mount_point = self.mount_point(item.username)
            if mount_point.is_dir() and not any(mount_point.iterdir()):
                mount_point.rmdir()
            return True

    def delete_home(self, username: str) -> None:
        """Remove the user's home and any archive of it for good (JupyterHub ``delete_forever``)."""
        self.unmount(username)
        for path in (self.image_path(username), self.archived_path(username)):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.mount_point(username), ignore_errors=True)


class EphemeralDisks(HomeManager):
    """Disk-limited working directories of anonymous sessions.

    Like a home, a sparse ext4 image per session (the filesystem is the limit: ``ENOSPC`` for that
    session only), but mounted at the session's own directory under ``sessions_dir`` and deleted
    with the session. A loop mount rather than a size-limited tmpfs: tmpfs pages would count
    against the session's memory, and bubblewrap 0.8 (Debian 12) cannot size its tmpfs.
    """

    sessions_dir = Unicode(help="Directory of the sessions' working directories (the mount points).").tag(config=True)

    @property
    def mounts_dir(self) -> Path:
        return Path(self.sessions_dir)

    def mount_point(self, username: str) -> Path:
        return Path(self.sessions_dir) / username

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

    def create(self, username: str, size: int) -> Path:
        """A fresh, empty, mounted filesystem of ``size`` bytes for the session ``username``."""
        self.user_quotas = {**self.user_quotas, username: size}
        mount_point = self.ensure_home(username)
        (mount_point / "lost+found").rmdir()  # ext4's, of no use in a throw-away filesystem; noise in JupyterLab
        return mount_point

    def unmount(self, username: str) -> None:
        # lazily: a process of the stopped session that has not quite gone must not keep the disk
        if self.is_mounted(username):
            _run(["umount", "--lazy", str(self.mount_point(username))], f"unmounting the disk of {username}")
